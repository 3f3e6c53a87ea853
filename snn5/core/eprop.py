"""e-prop: eligibility propagation (Bellec et al., Nat. Commun. 11:3625, 2020) as pure updates.

The network is snn5's recurrent LIF/ALIF network (:func:`snn5.core.neurons.alif_step`; LIF is
ALIF with ``beta = 0``) with a leaky readout (:func:`snn5.core.neurons.li_step`). Per step t,
neuron j, presynaptic source i (an input ``x_i^t`` or a recurrent spike ``z_i^{t-1}``):

    I_j^t = sum_i W^in_ji x_i^t + sum_{i != j} W^rec_ji z_i^{t-1}
    v_j^t = alpha (v_j^{t-1} - z_j^{t-1} A_j^{t-1}) + (1 - alpha) I_j^t     alpha = exp(-dt/tau_mem)
    A_j^t = v_th + beta_j a_j^{t-1}                                          (adaptive threshold)
    z_j^t = H(v_j^t - A_j^t)
    a_j^t = rho a_j^{t-1} + (1 - rho) z_j^t                                  rho = exp(-dt/tau_adapt)
    y_k^t = kappa y_k^{t-1} + (1 - kappa) (sum_j W^out_kj z_j^t + b_k)       kappa = exp(-dt/tau_out)

The spike in the reset is not differentiated (``detach_reset``), as in the paper's derivation.
e-prop estimates ``dE/dW_ji`` by ``sum_t L_j^t ebar_ji^t`` (the paper's Eq. (1) with the readout
filter moved onto the trace), from quantities that are all available at time t:

    psi_j^t   = surrogate.grad(v_j^t - A_j^t)                           (pseudo-derivative)
    eps^v_t   = alpha eps^v_{t-1} - alpha beta_j z_j^{t-1} eps^a_{t-1} + (1 - alpha) pre_i^t
    eps^a_t   = (1 - rho) psi_j^{t-1} eps^v_{t-1} + (rho - (1 - rho) psi_j^{t-1} beta_j) eps^a_{t-1}
    e_ji^t    = psi_j^t (eps^v_t - beta_j eps^a_t)                      (eligibility trace)
    ebar_ji^t = kappa ebar_ji^{t-1} + (1 - kappa) e_ji^t                (filtered by the readout)
    L_j^t     = sum_k B_jk dE/dy_k^t                                     (learning signal)

``(eps^v, eps^a) = d(v_j^t, a_j^{t-1}) / dW_ji`` along neuron j's own dynamics is the eligibility
vector; ``B = W_out^T`` is symmetric e-prop, a fixed random ``B`` random e-prop. For LIF neurons
(``beta = 0``) ``eps^v`` is the presynaptic trace ``zbar_i^t = alpha zbar_i^{t-1} + (1 - alpha)
pre_i^t`` and ``e_ji^t = psi_j^t zbar_i^t``. Output weights learn exactly:
``dE/dW^out_kj = sum_t dE/dy_k^t zbar^out_j^t`` with ``zbar^out = F_kappa(z)``.

Compared with the paper's Methods (whose ALIF has ``a^t = rho a^{t-1} + z^{t-1}``, resets by
``v_th`` and adds the input without ``1 - alpha``): the paper's ``beta`` is ``(1 - rho) beta``
here, the input scale ``1 - alpha`` is the ``zeta = 1 - alpha`` variant (also the authors'
code), and since ``alif_step`` resets by the adaptive threshold ``A`` the eligibility vector has
the extra term ``-alpha beta z^{t-1} eps^a`` (the derivative of the reset through ``A``); it
vanishes for LIF neurons and where the neuron did not spike.

Shapes: traces are ``[B, N, I]`` (batch, postsynaptic neurons, presynaptic sources), the LIF
presynaptic trace ``[B, I]``; per-neuron parameters (``beta``, ``rho``) are floats or ``[N]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from snn5.core.surrogate import Surrogate

Scalar = float | Tensor


# ----------------------------------------------------------------------------- pseudo-derivative

@dataclass(frozen=True, kw_only=True)
class DampenedTriangle(Surrogate):
    """The pseudo-derivative of e-prop (Bellec et al. 2018, 2020): a dampened triangle.

    ``psi(x) = gamma / width * max(0, 1 - |x| / width)`` with ``x = v - A``; the paper uses
    ``width = v_th`` and the dampening factor ``gamma = 0.3``. The primitive is ``gamma`` times
    :class:`~snn5.core.surrogate.Triangle`'s (it rises from 0 to ``gamma``, not to 1), so the
    spike's backward pass gives exactly ``psi``. Not registered under a name: build it in code.
    """

    width: float = 1.0
    gamma: float = 0.3
    param: ClassVar[str] = "width"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma < float("inf")):
            raise ValueError(f"DampenedTriangle.gamma (the dampening factor) must be a positive "
                             f"number, got {self.gamma!r}; the paper uses 0.3")

    def primitive(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        u = (x / self._p(width)).clamp(-1.0, 1.0)
        return self.gamma * (0.5 + u - 0.5 * u * u.abs())

    def grad(self, x: Tensor, width: Tensor | None = None) -> Tensor:
        w = self._p(width)
        return self.gamma * (1.0 - x.abs() / w).clamp_min(0.0) / w


# ----------------------------------------------------------------------------- traces

class LIFTraces(NamedTuple):
    """e-prop state of a weight matrix onto LIF neurons."""

    zbar: Tensor                                 # [B, I] presynaptic trace (= eps^v)
    ebar: Tensor                                 # [B, N, I] eligibility trace filtered by kappa


class ALIFTraces(NamedTuple):
    """e-prop state of a weight matrix onto ALIF neurons (any ``beta``, 0 included)."""

    eps_v: Tensor                                # [B, N, I] d v_j^t / d W_ji
    eps_a: Tensor                                # [B, N, I] d a_j^{t-1} / d W_ji
    psi: Tensor                                  # [B, N] pseudo-derivative of the last step
    z: Tensor                                    # [B, N] spikes of the last step
    ebar: Tensor                                 # [B, N, I] eligibility trace filtered by kappa


def lif_traces(batch: int, n_post: int, n_pre: int, *, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> LIFTraces:
    """Traces at rest (all zero) for ``n_pre -> n_post`` weights and ``batch`` sequences."""
    return LIFTraces(torch.zeros(batch, n_pre, dtype=dtype, device=device),
                     torch.zeros(batch, n_post, n_pre, dtype=dtype, device=device))


def alif_traces(batch: int, n_post: int, n_pre: int, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None) -> ALIFTraces:
    """Traces at rest (all zero) for ``n_pre -> n_post`` weights and ``batch`` sequences."""
    syn = torch.zeros(batch, n_post, n_pre, dtype=dtype, device=device)
    cell = torch.zeros(batch, n_post, dtype=dtype, device=device)
    return ALIFTraces(syn, syn.clone(), cell, cell.clone(), syn.clone())


def low_pass(trace: Tensor, x: Tensor, decay: Scalar) -> Tensor:
    """One step of the filter ``F_decay``: ``decay * trace + (1 - decay) * x``."""
    return decay * trace + (1.0 - decay) * x


def _col(p: Scalar) -> Scalar:
    """A per-neuron parameter ``[N]`` as ``[N, 1]`` so it broadcasts over ``[B, N, I]``."""
    return p.unsqueeze(-1) if isinstance(p, Tensor) and p.ndim > 0 else p


def lif_eligibility_step(pre: Tensor, psi: Tensor, traces: LIFTraces, *, alpha: float,
                         kappa: float) -> tuple[Tensor, LIFTraces]:
    """Advance the traces of LIF neurons by one step.

    Args:
        pre: what each source sends at step t: ``x^t`` (inputs) or ``z^{t-1}`` (recurrent), ``[B, I]``.
        psi: pseudo-derivative of the postsynaptic neurons at step t, ``[B, N]``.
        traces: the traces after step t-1.
        alpha: membrane decay ``exp(-dt / tau_mem)`` (one value for all neurons).
        kappa: readout decay ``exp(-dt / tau_out)``.

    Returns:
        ``(e [B, N, I], traces)``: the eligibility trace ``e^t = psi^t zbar^t`` and the new traces.
    """
    zbar = low_pass(traces.zbar, pre, alpha)                         # [B, I]
    e = psi.unsqueeze(-1) * zbar.unsqueeze(-2)                       # [B, N, I]
    return e, LIFTraces(zbar, low_pass(traces.ebar, e, kappa))


def alif_eligibility_step(pre: Tensor, psi: Tensor, z: Tensor, traces: ALIFTraces, *,
                          alpha: float, rho: Scalar, beta: Scalar, kappa: float
                          ) -> tuple[Tensor, ALIFTraces]:
    """Advance the two-component eligibility vectors of ALIF neurons by one step.

    Args:
        pre: what each source sends at step t, ``[B, I]``.
        psi: pseudo-derivative of the postsynaptic neurons at step t, ``[B, N]``.
        z: their spikes at step t, ``[B, N]`` (kept for the next step's reset term).
        traces: the traces after step t-1.
        alpha: membrane decay ``exp(-dt / tau_mem)`` (one value for all neurons).
        rho: adaptation decay ``exp(-dt / tau_adapt)``, float or ``[N]``.
        beta: threshold increase per unit of adaptation (``beta_adapt``), float or ``[N]``.
        kappa: readout decay ``exp(-dt / tau_out)``.

    Returns:
        ``(e [B, N, I], traces)``: ``e^t = psi^t (eps^v_t - beta eps^a_t)`` and the new traces.
    """
    rho_, beta_ = _col(rho), _col(beta)
    psi_prev = traces.psi.unsqueeze(-1)                              # [B, N, 1]
    eps_v = (alpha * traces.eps_v - alpha * beta_ * traces.z.unsqueeze(-1) * traces.eps_a
             + (1.0 - alpha) * pre.unsqueeze(-2))                   # [B, N, I]
    eps_a = ((1.0 - rho_) * psi_prev * traces.eps_v
             + (rho_ - (1.0 - rho_) * beta_ * psi_prev) * traces.eps_a)
    e = psi.unsqueeze(-1) * (eps_v - beta_ * eps_a)                  # [B, N, I]
    return e, ALIFTraces(eps_v, eps_a, psi, z, low_pass(traces.ebar, e, kappa))


def lif_eligibility_step_(pre: Tensor, psi: Tensor, traces: LIFTraces, *, alpha: float,
                          kappa: float) -> LIFTraces:
    """In-place :func:`lif_eligibility_step` for hot loops: updates ``traces`` and returns them.

    The eligibility trace itself is not formed (``e^t = psi^t zbar^t``; its batch sum is
    ``psi^T @ zbar``)."""
    zbar = traces.zbar.mul_(alpha).add_(pre, alpha=1.0 - alpha)
    traces.ebar.mul_(kappa).addcmul_(psi.unsqueeze(-1), zbar.unsqueeze(-2), value=1.0 - kappa)
    return traces


def alif_eligibility_step_(pre: Tensor, psi: Tensor, z: Tensor, traces: ALIFTraces, *,
                           alpha: float, rho: Scalar, beta: Scalar, kappa: float, out: Tensor
                           ) -> tuple[Tensor, ALIFTraces]:
    """In-place :func:`alif_eligibility_step` for hot loops (same equations, about half the
    memory traffic): updates the ``[B, N, I]`` traces in place and writes ``e^t`` into ``out``
    (a ``[B, N, I]`` work buffer, overwritten at every call). Returns ``(out, traces)``."""
    rho_, beta_ = _col(rho), _col(beta)
    psi_prev = traces.psi.unsqueeze(-1)                              # [B, N, 1]
    eps_v, eps_a = traces.eps_v, traces.eps_a
    torch.mul(eps_v, (1.0 - rho_) * psi_prev, out=out)               # out = new eps^a
    out.addcmul_(eps_a, rho_ - (1.0 - rho_) * beta_ * psi_prev)
    eps_v.addcmul_(eps_a, -(beta_ * traces.z.unsqueeze(-1)))         # new eps^v
    eps_v.mul_(alpha).add_(pre.unsqueeze(-2), alpha=1.0 - alpha)
    eps_a.copy_(out)
    neg_beta = -beta_ if isinstance(beta_, Tensor) else torch.tensor(-beta_, dtype=out.dtype)
    torch.addcmul(eps_v, eps_a, neg_beta.to(out.dtype), out=out).mul_(psi.unsqueeze(-1))   # e
    traces.ebar.mul_(kappa).add_(out, alpha=1.0 - kappa)
    return out, ALIFTraces(eps_v, eps_a, psi, z, traces.ebar)


# ----------------------------------------------------------------------------- learning signals

def cross_entropy_error(y: Tensor, target: Tensor) -> Tensor:
    """``dE/dy`` of the cross-entropy of ``softmax(y)``: ``pi - pi*``. ``y: [B, K]``,
    ``target: [B]`` class indices. Returns ``[B, K]``."""
    return torch.softmax(y, dim=-1) - F.one_hot(target, y.shape[-1]).to(y.dtype)


def mse_error(y: Tensor, target: Tensor) -> Tensor:
    """``dE/dy`` of ``E = 1/2 sum_k (y_k - y*_k)^2``: ``y - y*``. Both ``[B, K]``."""
    return y - target


def learning_signal(error: Tensor, feedback: Tensor) -> Tensor:
    """``L_j = sum_k B_jk error_k``. ``error: [B, K]``, ``feedback B: [N, K]``; returns ``[B, N]``.

    Symmetric e-prop passes ``W_out^T``; random e-prop a fixed random matrix."""
    return error @ feedback.transpose(0, 1)


def eprop_gradient(signal: Tensor, ebar: Tensor) -> Tensor:
    """This step's term ``sum_b L_j^t ebar_ji^t`` of the gradient estimate: ``[B, N] x [B, N, I]
    -> [N, I]``."""
    return torch.einsum("bn,bni->ni", signal, ebar)


__all__ = [
    "ALIFTraces", "DampenedTriangle", "LIFTraces", "alif_eligibility_step",
    "alif_eligibility_step_", "alif_traces", "cross_entropy_error", "eprop_gradient",
    "learning_signal", "lif_eligibility_step", "lif_eligibility_step_", "lif_traces", "low_pass",
    "mse_error",
]
