"""e-prop: online learning of a recurrent LIF/ALIF network without backpropagation through time.

:class:`EpropLearner` runs a :class:`~snn5.models.recurrent.RecurrentSNN` forward, one step at a
time, and updates per step the eligibility traces of the input and recurrent synapses, the
learning signals and the running weight gradients (:mod:`snn5.core.eprop` has the equations).
Memory is ``O(batch x synapses)`` and does not grow with the sequence length: nothing is stored
over time except the readout values returned for monitoring. At the end of the sequence the
summed estimate ``g`` is written into ``.grad`` as ``-dw`` with ``dw = -g`` (the update with a
unit learning rate), so ``torch.optim.Adam`` (the paper's optimizer) or any optimizer that
minimises the loss applies it, exactly as it would apply an autograd gradient.

The loss (shared with BPTT through :func:`sequence_loss` and :func:`rate_regularization`):

    E     = 1/B sum_b sum_t w_t l(y^t_b, y*^t_b)  +  c_reg / 2 sum_j (f_j - f_target)^2

with ``l`` the cross-entropy of ``softmax(y)`` or ``1/2 |y - y*|^2``, per-step weights ``w_t``
(default ``1/T``) and ``f_j`` neuron j's firing rate (spikes per step) over the batch and the
sequence. The regulariser's gradient is e-prop's ``c_reg (f_j - f_target) 1/(T B) sum_t e_ji^t``
(Bellec et al. 2020, Methods); ``e`` is summed online and scaled by the rate at the end.

Example:
    >>> net = RecurrentSNN(28, 128, 10, n_adaptive=64, v_th=0.1)
    >>> learner = EpropLearner(net, feedback=Feedback.SYMMETRIC,
    ...                        rate_reg=RateRegularization(c_reg=1.0, target_rate=10.0))
    >>> opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
    >>> opt.zero_grad(); result = learner.step(x_seq, labels); opt.step()
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn5.core import eprop as E
from snn5.core.options import Option
from snn5.models.recurrent import RecurrentSNN


class Feedback(Option):
    """How output errors reach the neurons as learning signals ``L_j = sum_k B_jk err_k``.

    SYMMETRIC: ``B = W_out^T`` (symmetric e-prop).
    RANDOM:    a fixed random ``B`` drawn once from the learner's seed (random e-prop).
    """

    SYMMETRIC = "symmetric"
    RANDOM = "random"


class TaskLoss(Option):
    """Per-step loss of the readout ``y^t``: CROSS_ENTROPY of ``softmax(y)`` against a class
    (``pi - pi*`` as error) or MSE, ``1/2 |y - y*|^2`` (``y - y*``)."""

    CROSS_ENTROPY = "cross_entropy"
    MSE = "mse"


@dataclass(frozen=True)
class RateRegularization:
    """The paper's firing-rate regulariser ``c_reg / 2 sum_j (f_j - f_target)^2``.

    Rates are spikes per step averaged over batch and time; ``target_rate`` is given in Hz and
    converted with the model's ``dt`` (10 Hz at dt = 1 ms is 0.01 spikes per step).
    """

    c_reg: float
    target_rate: float = 10.0                    # Hz

    def __post_init__(self) -> None:
        if not (isinstance(self.c_reg, (int, float)) and math.isfinite(self.c_reg)
                and self.c_reg >= 0):
            raise ValueError(f"RateRegularization.c_reg must be a number >= 0, got {self.c_reg!r}")
        if not (isinstance(self.target_rate, (int, float)) and math.isfinite(self.target_rate)
                and self.target_rate >= 0):
            raise ValueError(f"RateRegularization.target_rate is a rate in Hz >= 0, got "
                             f"{self.target_rate!r} (the paper uses 10 Hz)")


@dataclass
class EpropResult:
    """What :meth:`EpropLearner.step` computed for one batch of sequences."""

    loss: float                                  # task + rate loss
    task_loss: float
    rate_loss: float
    y_seq: Tensor                                # [T, B, K] readout, for monitoring
    rates: Tensor                                # [N] firing rates in Hz
    dw: dict[str, Tensor] = field(default_factory=dict)   # parameter name -> -gradient


# ----------------------------------------------------------------------------- losses

def time_weights_for(T: int, time_weights: Tensor | Sequence[float] | None, *,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """The per-step loss weights ``w [T]``: ``1/T`` each by default, else checked."""
    if time_weights is None:
        return torch.full((T,), 1.0 / T, dtype=dtype)
    w = torch.as_tensor(time_weights, dtype=dtype).detach().cpu()
    if w.shape != (T,):
        raise ValueError(f"time_weights must hold one weight per step, shape ({T},), got "
                         f"{tuple(w.shape)}; e.g. torch.arange(T) == T - 1 for the last step only")
    if not torch.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
        raise ValueError("time_weights must be finite, >= 0 and not all zero")
    return w


def _targets(target: Tensor, loss: TaskLoss, T: int, B: int, K: int) -> Tensor:
    """The target as ``[T, B]`` class indices (cross-entropy) or ``[T, B, K]`` values (MSE)."""
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a tensor, got {type(target).__name__}")
    if loss is TaskLoss.CROSS_ENTROPY:
        if target.dtype != torch.int64:
            raise TypeError(f"cross-entropy targets are int64 class indices, got {target.dtype}; "
                            "pass target.long() (or loss=TaskLoss.MSE for values)")
        if target.shape == (B,):
            target = target.expand(T, B)
        if target.shape != (T, B):
            raise ValueError(f"cross-entropy target must be [B={B}] (one class per sequence) or "
                             f"[T={T}, B={B}] (one per step), got {tuple(target.shape)}")
        if (target < 0).any() or (target >= K).any():
            raise ValueError(f"class indices must be in [0, {K}) for {K} readout neurons, got "
                             f"values in [{int(target.min())}, {int(target.max())}]")
        return target
    if not target.is_floating_point():
        raise TypeError(f"MSE targets are float values, got {target.dtype}; pass target.float()")
    if target.shape == (B, K):
        target = target.expand(T, B, K)
    if target.shape != (T, B, K):
        raise ValueError(f"MSE target must be [B={B}, K={K}] or [T={T}, B={B}, K={K}], got "
                         f"{tuple(target.shape)}")
    if not torch.isfinite(target).all():
        raise ValueError("the MSE target holds NaN/Inf; check the data")
    return target


def _step_loss(y: Tensor, target: Tensor, loss: TaskLoss) -> Tensor:
    """Summed over the batch: ``sum_b l(y_b, y*_b)``."""
    if loss is TaskLoss.CROSS_ENTROPY:
        return F.cross_entropy(y, target, reduction="sum")
    return 0.5 * ((y - target) ** 2).sum()


def sequence_loss(y_seq: Tensor, target: Tensor, *, loss: TaskLoss | str = TaskLoss.CROSS_ENTROPY,
                  time_weights: Tensor | Sequence[float] | None = None) -> Tensor:
    """``1/B sum_b sum_t w_t l(y^t_b, y*^t_b)`` (differentiable; what BPTT minimises).

    Args:
        y_seq: readout ``[T, B, K]``.
        target: classes ``[B]`` / ``[T, B]`` (cross-entropy) or values ``[B, K]`` / ``[T, B, K]``.
        loss: the per-step loss.
        time_weights: ``w [T]``; default ``1/T`` at every step.
    """
    loss = TaskLoss.parse(loss)
    if y_seq.ndim != 3:
        raise ValueError(f"y_seq must be [T, B, K], got shape {tuple(y_seq.shape)}")
    T, B, K = y_seq.shape
    target = _targets(target, loss, T, B, K).to(y_seq.device)
    w = time_weights_for(T, time_weights, dtype=y_seq.dtype).to(y_seq.device)
    per_step = torch.stack([_step_loss(y_seq[t], target[t], loss) for t in range(T)])
    return (w * per_step).sum() / B


def rate_regularization(z_seq: Tensor, reg: RateRegularization, *, dt: float) -> Tensor:
    """``c_reg / 2 sum_j (f_j - f_target)^2`` with ``f_j = mean_{t,b} z_j`` (spikes per step).
    ``z_seq: [T, B, N]``."""
    rate = z_seq.mean((0, 1))                                        # [N]
    return 0.5 * reg.c_reg * ((rate - reg.target_rate * dt) ** 2).sum()


# ----------------------------------------------------------------------------- learner

class EpropLearner:
    """Online e-prop for a :class:`~snn5.models.recurrent.RecurrentSNN`.

    Args:
        model: the network; its ``w_in``, ``w_rec``, ``w_out``, ``b_out`` are learned.
        loss: per-step task loss of the readout.
        feedback: symmetric (``B = W_out^T``) or random (fixed ``B ~ N(0, 1 / n_rec)``) e-prop.
        rate_reg: the firing-rate regulariser, or None.
        seed: seed of the random feedback matrix (unused for symmetric feedback).
    """

    def __init__(self, model: RecurrentSNN, *, loss: TaskLoss | str = TaskLoss.CROSS_ENTROPY,
                 feedback: Feedback | str = Feedback.SYMMETRIC,
                 rate_reg: RateRegularization | None = None, seed: int = 0) -> None:
        if not isinstance(model, RecurrentSNN):
            raise TypeError(f"EpropLearner trains a snn5.models.recurrent.RecurrentSNN, got "
                            f"{type(model).__name__}")
        if rate_reg is not None and not isinstance(rate_reg, RateRegularization):
            raise TypeError(f"rate_reg must be a RateRegularization(c_reg=..., target_rate=...) "
                            f"or None, got {rate_reg!r}")
        self.model = model
        self.loss = TaskLoss.parse(loss)
        self.feedback = Feedback.parse(feedback)
        self.rate_reg = rate_reg
        self.seed = int(seed)
        self.random_feedback: Tensor | None = None
        if self.feedback is Feedback.RANDOM:
            g = torch.Generator().manual_seed(self.seed)
            b = torch.randn(model.n_rec, model.n_out, generator=g) / math.sqrt(model.n_rec)
            self.random_feedback = b.to(model.w_out.dtype).to(model.w_out.device)

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        m = self.model
        for name in ("w_in", "w_rec", "w_out", "b_out"):
            p = getattr(m, name)
            if p is not None:
                yield name, p

    def parameters(self) -> Iterator[nn.Parameter]:
        """The learned weights (what the optimizer should update)."""
        for _, p in self.named_parameters():
            yield p

    def feedback_matrix(self) -> Tensor:
        """``B [n_rec, n_out]``: ``W_out^T`` (symmetric) or the fixed random matrix."""
        if self.random_feedback is not None:
            return self.random_feedback
        return self.model.w_out.detach().t()

    @torch.no_grad()
    def step(self, x_seq: Tensor, target: Tensor, *,
             time_weights: Tensor | Sequence[float] | None = None) -> EpropResult:
        """Run ``x_seq`` online, computing e-prop's gradient estimate, and add it to ``.grad``
        (gradients accumulate as in autograd; zero them between updates).

        Args:
            x_seq: inputs ``[T, B, n_in]``.
            target: classes ``[B]`` / ``[T, B]`` (cross-entropy) or values ``[B, K]`` /
                ``[T, B, K]`` (MSE).
            time_weights: loss weight of each step ``[T]`` (default ``1/T``); steps with weight
                0 skip the gradient work.
        """
        m = self.model
        m.check_input(x_seq)
        if not torch.isfinite(x_seq).all():
            raise ValueError("x_seq holds NaN/Inf; check the data")
        T, B, _ = x_seq.shape
        N, K, n_in = m.n_rec, m.n_out, m.n_in
        dtype, device = m.w_in.dtype, m.w_in.device
        target = _targets(target, self.loss, T, B, K).to(device)
        weights = time_weights_for(T, time_weights, dtype=torch.float64).tolist()
        error_fn = E.cross_entropy_error if self.loss is TaskLoss.CROSS_ENTROPY else E.mse_error
        feedback = self.feedback_matrix()                            # [N, K]
        n_pre = n_in + (N if m.recurrent else 0)                     # sources: [x, z_prev]
        alpha, rho, kappa = m.alpha, m.rho, m.kappa
        zeros = dict(dtype=dtype, device=device)
        beta = m.beta_adapt.to(dtype)
        # LIF neurons (the first n_rec - n_adaptive) keep a presynaptic trace, ALIF neurons
        # two-component eligibility vectors per synapse; both are updated in place.
        groups = []
        n_lif = N - m.n_adaptive
        if n_lif:
            groups.append((slice(0, n_lif), E.lif_traces(B, n_lif, n_pre, **zeros), None))
        if m.n_adaptive:
            work = torch.empty(B, m.n_adaptive, n_pre, **zeros)
            groups.append((slice(n_lif, N), E.alif_traces(B, m.n_adaptive, n_pre, **zeros), work))

        state = m.init_state(B, **zeros)
        g_syn = torch.zeros(N, n_pre, **zeros)                       # [N, I] input | recurrent
        g_out = torch.zeros(K, N, **zeros)
        g_bias = torch.zeros(K, **zeros)
        zbar_out = torch.zeros(B, N, **zeros)                        # readout's presynaptic trace
        bias_trace = 0.0                                             # F_kappa of the constant 1
        e_sum = torch.zeros(N, n_pre, **zeros) if self.rate_reg is not None else None
        spikes = torch.zeros(N, **zeros)
        task = torch.zeros((), dtype=torch.float64, device=device)
        ys = []
        for t, x in enumerate(x_seq.unbind(0)):                      # x: [B, n_in]
            pre = torch.cat([x, state.z], dim=1) if m.recurrent else x   # [B, I]: x^t, z^{t-1}
            out, state = m.step(x, state)
            psi = m.surrogate.grad(out.v_rel)                        # [B, N]
            for k, (sl, traces, work) in enumerate(groups):
                if work is None:
                    traces = E.lif_eligibility_step_(pre, psi[:, sl], traces, alpha=alpha,
                                                     kappa=kappa)
                    if e_sum is not None:                            # sum_b psi_bj zbar_bi
                        e_sum[sl] += psi[:, sl].t() @ traces.zbar
                else:
                    e, traces = E.alif_eligibility_step_(pre, psi[:, sl], out.z[:, sl], traces,
                                                         alpha=alpha, rho=rho, beta=beta[sl],
                                                         kappa=kappa, out=work)
                    if e_sum is not None:
                        e_sum[sl] += e.sum(0)
                groups[k] = (sl, traces, work)
            zbar_out = E.low_pass(zbar_out, out.z, kappa)
            bias_trace = kappa * bias_trace + (1.0 - kappa)
            spikes += out.z.sum(0)
            ys.append(out.y)
            w = weights[t]
            if w == 0.0:
                continue
            err = error_fn(out.y, target[t]) * (w / B)               # [B, K] dE/dy^t
            signal = E.learning_signal(err, feedback)                # [B, N]
            for sl, traces, _ in groups:
                g_syn[sl] += E.eprop_gradient(signal[:, sl], traces.ebar)
            g_out += err.t() @ zbar_out
            g_bias += err.sum(0) * bias_trace
            task += w * _step_loss(out.y, target[t], self.loss).double() / B

        rates = spikes / (T * B)                                     # [N] spikes per step
        rate_loss = 0.0
        if self.rate_reg is not None:
            gap = rates - self.rate_reg.target_rate * m.dt
            g_syn += self.rate_reg.c_reg * gap.unsqueeze(1) * e_sum / (T * B)
            rate_loss = float(0.5 * self.rate_reg.c_reg * (gap ** 2).sum())
        grads = {"w_in": g_syn[:, :n_in], "w_out": g_out}
        if m.recurrent:
            grads["w_rec"] = g_syn[:, n_in:] * m.rec_mask
        if m.b_out is not None:
            grads["b_out"] = g_bias
        dw = {}
        for name, p in self.named_parameters():
            g = grads[name]
            if not torch.isfinite(g).all():
                raise FloatingPointError(f"the e-prop gradient of {name} is not finite; lower the "
                                         "learning rate or the input scale")
            p.grad = g.clone() if p.grad is None else p.grad + g
            dw[name] = -g
        task_loss = float(task)
        return EpropResult(task_loss + rate_loss, task_loss, rate_loss, torch.stack(ys),
                           rates / m.dt, dw)


__all__ = [
    "EpropLearner", "EpropResult", "Feedback", "RateRegularization", "TaskLoss",
    "rate_regularization", "sequence_loss", "time_weights_for",
]
