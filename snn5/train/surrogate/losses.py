"""Training objectives: cross-entropy on the readout, the spike-rate penalty, the TET loss
(per-step cross-entropy, Deng et al. ICLR 2022), temporal regularisation training (Zhang, Xu &
Tao, arXiv:2506.19256) and the spike-entropy (information maximisation) regulariser.

Every objective can be evaluated on a chunk of steps ``[t0, t0 + K)`` of a ``T``-step sequence
(truncated BPTT, :mod:`snn5.train.surrogate.tbptt`): :func:`chunk_loss` returns the chunk's
share, and for the per-step losses (TET, TRT) the shares of the chunks add up to the loss of the
whole sequence exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snn5.train.surrogate.config import CELoss, LossConfig, RatePenaltyConfig, TETLoss


def layer_rates(spikes: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mean spikes per neuron per step of each layer (``z: [T, B, *F]``)."""
    return {name: z.float().mean() for name, z in spikes.items()}


def mean_rate(spikes: dict[str, Tensor]) -> float:
    """Total spikes / total neuron-steps over all layers (a float; for logging)."""
    if not spikes:
        return 0.0
    total = sum(float(z.detach().float().sum()) for z in spikes.values())
    return total / sum(z.numel() for z in spikes.values())


def spike_entropy(spikes: dict[str, Tensor], weight: float) -> Tensor | None:
    """Information-maximisation regulariser ``-weight * mean_l H(r_l)``, or None at weight 0.

    ``r_l`` is layer ``l``'s firing probability (mean spikes per neuron per step) and
    ``H(r) = -r log2 r - (1 - r) log2 (1 - r)`` the entropy in bits of a binary spike with that
    probability: 0 for a silent or saturated layer, 1 bit at ``r = 0.5``. Minimising the
    regulariser maximises the information the spikes can carry, the objective of IM-Loss (Guo
    et al., "IM-Loss: Information Maximization Loss for Spiking Neural Networks", NeurIPS 2022),
    which maximises the entropy of each layer's spike output. IM-Loss estimates the firing
    probability from the membrane potential's distribution; snn5's neurons return spikes, so
    here it is estimated from the spikes themselves and its gradient flows through the
    surrogate. It pushes rates towards 0.5 (against ``rate_penalty``, which pushes them down).

    Args:
        spikes: per layer ``z: [T, B, *F]`` (with their graph).
        weight: the regulariser's weight (>= 0).
    """
    if weight == 0 or not spikes:
        return None
    rates = torch.stack(list(layer_rates(spikes).values()))                # [L]
    eps = 1e-6
    r = eps + (1 - 2 * eps) * rates             # squeezed into (0, 1): finite log, and a silent
                                                # layer still gets a (finite) gradient
    entropy = -(r * torch.log2(r) + (1 - r) * torch.log2(1 - r))             # [L] bits
    return -weight * entropy.mean()


def rate_penalty(spikes: dict[str, Tensor], cfg: RatePenaltyConfig) -> Tensor | None:
    """``weight * sum_l max(0, rate_l - target)``, or None when the weight is 0."""
    if cfg.weight == 0 or not spikes:
        return None
    rates = torch.stack(list(layer_rates(spikes).values()))
    return cfg.weight * (rates - cfg.target).clamp_min(0).sum()


def tet_loss(outputs: Tensor, y: Tensor, *, lam: float = 1e-3, phi: float = 1.0,
             label_smoothing: float = 0.0) -> Tensor:
    """Temporal efficient training loss (Deng, Li, Zhang & Gu, ICLR 2022, Eq. 8-10).

    ``(1 - lam) * mean_t CE(O(t), y) + lam * mean((O - phi)^2)``: the cross-entropy is taken
    at every step's output instead of on the time-averaged output, and the MSE term pulls the
    outputs towards ``phi``. Defaults as the authors' code (``lamb = 1e-3``, ``means = 1.0``).

    Args:
        outputs: per-step logits ``[T, B, C]``.
        y: labels ``[B]``.
        lam: weight of the MSE regulariser, in [0, 1].
        phi: its target value.
        label_smoothing: as in ``F.cross_entropy``.
    """
    if outputs.ndim != 3:
        raise ValueError(f"tet_loss needs per-step outputs [T, B, C], got shape "
                         f"{tuple(outputs.shape)}; pass the readout's input, not its mean")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    T, B, C = outputs.shape
    if y.shape != (B,):
        raise ValueError(f"labels must be [B] = [{B}], got shape {tuple(y.shape)}")
    ce = torch.nn.functional.cross_entropy(outputs.reshape(T * B, C).float(), y.repeat(T),
                                           label_smoothing=label_smoothing)  # mean over t and b
    if lam == 0:
        return ce
    mse = (outputs.float() - phi).pow(2).mean()
    return (1.0 - lam) * ce + lam * mse


def trt_weights(model: nn.Module) -> list[Tensor]:
    """The parameters temporal regularisation penalises: synaptic weights (``ndim >= 2``:
    Linear and Conv kernels) that are trained. Biases, normalisation scales and the neurons'
    physical parameters (time constants, thresholds, surrogate widths) are left alone."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]


def trt_loss(outputs: Tensor, y: Tensor, weights: Sequence[Tensor], *, decay: float = 0.5,
             lam: float = 1e-5, epsilon: float = 1e-5, eta: float = 0.05,
             label_smoothing: float = 0.0, first_step: int = 0,
             total_steps: int | None = None) -> Tensor:
    """Temporal regularisation training (TRT) loss (Zhang, Xu & Tao, "Enhancing Generalization
    of Spiking Neural Networks Through Temporal Regularization", arXiv:2506.19256, 2025).

    ``(1 / T) sum_t [(1 - eta) CE(O_t, y) + eta MSE(O_t, onehot(y)) + R_t(W)]`` with the
    time-decaying weight penalty

        R_t(W) = sum_w lam * w^2 / (1 + (exp(decay * t) - 1) * (|w| + epsilon)),

    ``t = 0, 1, ..., T - 1``: plain L2 of weight ``lam`` at the first step, weaker at later
    steps, so the early steps (where the paper finds the Fisher information concentrates) are
    constrained most. Defaults as the authors' code (``decay 0.5, lambda 1e-5, epsilon 1e-5,
    eta 0.05``). The authors penalise every non-bias parameter; here ``weights`` (see
    :func:`trt_weights`: synaptic weights) are passed in.

    On a chunk (truncated BPTT) ``outputs`` holds steps ``first_step .. first_step + K - 1`` of
    a ``total_steps``-step sequence, and the result is the chunk's terms of the sum divided by
    ``total_steps``: the chunks' values add up to the loss of the whole sequence.

    Args:
        outputs: per-step logits ``[K, B, C]``.
        y: labels ``[B]``.
        weights: the penalised tensors.
        decay, lam, epsilon, eta: as in the equation.
        label_smoothing: as in ``F.cross_entropy``.
        first_step: index of ``outputs[0]`` in the sequence.
        total_steps: T (None: ``K``, the whole sequence).
    """
    if outputs.ndim != 3:
        raise ValueError(f"trt_loss needs per-step outputs [T, B, C], got shape "
                         f"{tuple(outputs.shape)}; pass the readout's per-step scores")
    K, B, C = outputs.shape
    total = K if total_steps is None else total_steps
    if y.shape != (B,):
        raise ValueError(f"labels must be [B] = [{B}], got shape {tuple(y.shape)}")
    if first_step < 0 or first_step + K > total:
        raise ValueError(f"steps {first_step}..{first_step + K - 1} lie outside a sequence of "
                         f"total_steps={total}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    dtype = torch.promote_types(outputs.dtype, torch.float32)     # bf16 -> fp32, fp64 kept
    out = outputs.to(dtype)
    ce = F.cross_entropy(out.reshape(K * B, C), y.repeat(K), reduction="none",
                         label_smoothing=label_smoothing).view(K, B).mean(1)      # [K]
    onehot = F.one_hot(y, C).to(out.dtype)                                        # [B, C]
    mse = (out - onehot).pow(2).mean(dim=(1, 2))                                  # [K]
    per_step = (1.0 - eta) * ce + eta * mse                                       # [K]
    if lam != 0 and weights:
        squares = [(w.to(dtype).pow(2), w.to(dtype).abs() + epsilon) for w in weights]
        penalty = []
        for t in range(first_step, first_step + K):
            c = math.expm1(decay * t)                    # exp(decay t) - 1, 0 at t = 0
            penalty.append(sum((lam * w2 / (1.0 + c * a)).sum() for w2, a in squares))
        per_step = per_step + torch.stack(penalty)                                # [K]
    return per_step.sum() / total


def chunk_loss(cfg: LossConfig, scores: Tensor, y: Tensor, *,
               reduce_steps: Callable[[Tensor], Tensor], weights: Sequence[Tensor] = (),
               first_step: int = 0, total_steps: int | None = None,
               label_smoothing: float = 0.0) -> Tensor:
    """The loss ``cfg`` carried by the per-step scores ``scores: [K, B, C]``, steps
    ``first_step ..`` of a ``total_steps``-step sequence (None: the whole sequence).

    * ``ce``: ``(K / T) * CE(reduce_steps(scores), y)``: the cross-entropy of the chunk's own
      readout, weighted by the chunk's share of time. On the whole sequence this is the
      cross-entropy of the model's logits; on chunks each chunk learns to classify from its
      own window (the cross-entropy of the whole readout is not a sum over chunks).
    * ``tet``: ``(K / T) * tet_loss(scores, y)``; exact share of the whole-sequence TET.
    * ``trt``: :func:`trt_loss` on the chunk; exact share of the whole-sequence TRT.

    Args:
        cfg: the loss (``train.loss``).
        scores: per-step class scores of the chunk.
        y: labels ``[B]``.
        reduce_steps: the readout's reduction over time (``[K, B, C] -> [B, C]``).
        weights: what TRT penalises (:func:`trt_weights`).
        first_step, total_steps: where the chunk lies.
        label_smoothing: as in ``F.cross_entropy``.
    """
    K = scores.shape[0]
    total = K if total_steps is None else total_steps
    share = K / total
    if isinstance(cfg, CELoss):
        return share * F.cross_entropy(reduce_steps(scores).float(), y,
                                       label_smoothing=label_smoothing)
    if isinstance(cfg, TETLoss):
        return share * tet_loss(scores, y, lam=cfg.lam, phi=cfg.phi,
                                label_smoothing=label_smoothing)
    return trt_loss(scores, y, weights, decay=cfg.decay, lam=cfg.lam, epsilon=cfg.epsilon,
                    eta=cfg.eta, label_smoothing=label_smoothing, first_step=first_step,
                    total_steps=total)
