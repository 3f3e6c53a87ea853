"""A spiking decision layer trained by reward alone (Mozafari et al. 2018/2019).

Mozafari, Kheradpisheh, Masquelier, Nowzari-Dalini & Ganjtabesh, "First-spike-based visual
categorization using reward-modulated STDP", IEEE TNNLS 2018; Mozafari, Ganjtabesh,
Nowzari-Dalini, Thorpe & Masquelier, "Bio-inspired digit recognition using reward-modulated
spike-timing-dependent plasticity in deep convolutional networks", Pattern Recognit. 94, 2019.

Each input feature is latency coded (one spike at most: the larger the value, the earlier; zero
never fires). Decision neurons (``n_per_class`` per class) are non-leaky integrate-and-fire
units, ``V_j(t) = sum_{i: t_i <= t} w_ji``. The winner is the first neuron to reach
``threshold`` (ties: the larger potential); with ``threshold=None`` no neuron fires before the
end and the winner is the one with the largest final potential (the paper's decision layer,
whose threshold is infinite). The decision is the winner's class; the layer is rewarded when it
is right and punished when it is wrong, and only the winner's afferents change
(:func:`snn5.core.plasticity.first_spike_rstdp`), with the authors' adaptive learning rates
(reward rates scaled by the miss rate of the previous ``adapt_every`` samples, punishment rates
by their hit rate).

Inputs are either values to latency code (:func:`latency_times`) or, with ``spike_times=True``,
the first-spike steps of a spiking feature extractor such as the STDP convolutional network of
:mod:`snn5.train.plasticity.conv_stdp` (the 2019 paper's S1-C2). The rule's rates and bounds
default to the authors' SpykeTorch MNIST network (see :class:`RSTDPConfig`).

Differences from the papers: samples are processed in batches whose updates are summed (the
papers update after every sample; ``batch_size=1``, the default, is the papers' schedule). The
2019 network's decision layer is convolutional (5x5 windows at 4x4 positions of the padded C2
map, the winner taken over neurons and positions); this one is fully connected to the
flattened C2 map (one position; a position-shared version learnt slower on MNIST, see
``docs/rstdp.md``). Optional ``dropout`` switches decision neurons off during training as in
Mozafari et al. 2018, with a fresh mask for every batch instead of every epoch (masks held for
a whole epoch destabilised learning on MNIST).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from snn5.core import plasticity as P

log = logging.getLogger(__name__)


def latency_times(x: Tensor, timesteps: int) -> Tensor:
    """First-spike step of each feature of ``x [B, F]`` (values >= 0): the largest value of a
    sample fires at step 0, values spread linearly over ``timesteps`` steps by rank of
    magnitude relative to that maximum; zeros never fire (``inf``)."""
    if x.ndim != 2:
        raise ValueError(f"expected features [B, F], got {tuple(x.shape)}")
    if (x < 0).any():
        raise ValueError("latency coding needs non-negative features (rates, counts, "
                         "intensities); shift or rectify them first")
    peak = x.amax(1, keepdim=True).clamp_min(1e-12)
    t = torch.floor((1 - x / peak) * timesteps).clamp_max(timesteps - 1)
    return torch.where(x > 0, t, torch.full_like(t, math.inf))


@dataclass(frozen=True)
class RSTDPConfig:
    """Hyper-parameters of the decision layer (defaults: the MNIST network of the 2019 paper as
    the authors' SpykeTorch reimplementation sets its last layer)."""

    n_per_class: int = 20
    timesteps: int = 15
    threshold: float | None = None
    w_mean: float = 0.8
    w_std: float = 0.05
    w_min: float = 0.2
    w_max: float = 0.8
    rates: P.FirstSpikeRSTDPParams = P.FirstSpikeRSTDPParams()
    adaptive: bool = True
    adapt_every: int = 1000
    batch_size: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if min(self.n_per_class, self.timesteps, self.batch_size, self.adapt_every) < 1:
            raise ValueError("n_per_class, timesteps, batch_size and adapt_every must be >= 1, "
                             f"got {self.n_per_class}, {self.timesteps}, {self.batch_size}, "
                             f"{self.adapt_every}")
        if not self.w_min < self.w_max:
            raise ValueError(f"need w_min < w_max, got {self.w_min} and {self.w_max}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout}")
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f"threshold must be positive or None, got {self.threshold}")


class RSTDPReadout(nn.Module):
    """Decision layer ``[B, F]`` latency-coded features -> class of the first-firing neuron.

    Args:
        n_features: F.
        num_classes: C (``C * n_per_class`` decision neurons, neuron ``j`` votes for
            ``j // n_per_class``).
        cfg: the layer's hyper-parameters.
    """

    def __init__(self, n_features: int, num_classes: int, cfg: RSTDPConfig = RSTDPConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        n_out = num_classes * cfg.n_per_class
        w = torch.empty(n_out, n_features).normal_(cfg.w_mean, cfg.w_std)
        self.weight = nn.Parameter(w.clamp(cfg.w_min, cfg.w_max))
        self.register_buffer("neuron_class", torch.arange(n_out) // cfg.n_per_class)

    def decide(self, pre_time: Tensor, active: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Winner neuron ``[B]`` (``-1``: none fired) and its firing step ``[B]``.

        ``active [out]`` (bool) switches neurons off (dropout during training): they cannot
        win."""
        T = self.cfg.timesteps
        if self.cfg.threshold is None:                   # only the final potential matters
            arrived = torch.isfinite(pre_time).to(self.weight.dtype)            # [B, F]
            potential = arrived @ self.weight.T                                  # [B, out]
            if active is not None:
                potential = potential.masked_fill(~active, -math.inf)
            winner = potential.argmax(1)                                         # [B]
            silent = arrived.sum(1) == 0                                         # no input spike
            winner = torch.where(silent, torch.full_like(winner, -1), winner)
            return winner, torch.full_like(winner, T - 1)
        steps = torch.arange(T, dtype=pre_time.dtype, device=pre_time.device)
        arrived = (pre_time.unsqueeze(1) <= steps.view(1, T, 1)).to(self.weight.dtype)  # [B,T,F]
        potential = arrived @ self.weight.T                                      # [B, T, out]
        crossed = potential >= self.cfg.threshold                                # [B, T, out]
        if active is not None:
            crossed = crossed & active
        fired_any = crossed.any(1)                                               # [B, out]
        first = torch.where(fired_any, crossed.float().argmax(1).float(),
                            torch.full(fired_any.shape, math.inf, device=crossed.device))
        t_win = first.amin(1)                                                    # [B]
        at_t = potential.gather(1, t_win.clamp_max(T - 1).long().view(-1, 1, 1)
                                .expand(-1, 1, potential.shape[2])).squeeze(1)
        score = torch.where(first == t_win.unsqueeze(1), at_t, torch.full_like(at_t, -math.inf))
        winner = score.argmax(1)
        winner = torch.where(torch.isinf(t_win), torch.full_like(winner, -1), winner)
        return winner, torch.where(torch.isinf(t_win), torch.zeros_like(t_win), t_win).long()

    @torch.no_grad()
    def forward(self, features: Tensor, *, spike_times: bool = False) -> Tensor:
        """Predicted class ``[B]`` (``-1`` where no decision neuron fired). ``features`` are
        values to latency code, or with ``spike_times=True`` already first-spike steps
        ``[B, F]`` in ``[0, T)`` (``inf``: silent), e.g. from a spiking feature extractor."""
        winner, _ = self.decide(self.pre_times(features, spike_times))
        return torch.where(winner >= 0, self.neuron_class[winner.clamp_min(0)], winner)

    def pre_times(self, features: Tensor, spike_times: bool) -> Tensor:
        """First-spike steps of the inputs: ``features`` themselves or their latency code."""
        if not spike_times:
            return latency_times(features, self.cfg.timesteps)
        if features.ndim != 2:
            raise ValueError(f"expected spike times [B, F], got {tuple(features.shape)}")
        return features


@torch.no_grad()
def train_rstdp(readout: RSTDPReadout, features: Tensor, labels: Tensor, *, epochs: int = 1,
                seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
                spike_times: bool = False,
                callback: Callable[[dict[str, float]], None] | None = None
                ) -> list[dict[str, float]]:
    """Train the decision layer by reward and punishment only.

    Each batch: decide, reward the right decisions and punish the wrong ones
    (:func:`snn5.core.plasticity.first_spike_rstdp`), apply ``dw``, clip to
    ``[w_min, w_max]``. With an ``optimizer``, ``-dw`` is written into ``weight.grad`` and the
    optimizer steps. Without one, the winners' rows are updated in place: the same result as
    SGD with lr 1 (the rule's rates are the step) at the cost of the rows that change, not of
    the whole matrix.

    Args:
        features: ``[N, F]`` values to latency code, or first-spike steps with
            ``spike_times=True`` (any float dtype, ``inf``: silent; converted batch by batch,
            so a compact float16 array works).
        callback: called with each epoch's record after the epoch (validation, logging,
            checkpoints); the adaptive rates carry over from epoch to epoch.

    Returns:
        Per epoch: ``hit``, ``miss`` and ``silent`` fractions during training.
    """
    cfg = readout.cfg
    weight = readout.weight
    g = torch.Generator().manual_seed(seed)
    history = []
    hit_rate, miss_rate = 0.1, 0.9                 # the authors' initial adaptive scales
    window = [0, 0, 0]                             # hits, misses, samples since the last update
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=g)
        active = None
        hits = misses = silent = 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            t_pre = readout.pre_times(features[idx].to(weight.dtype), spike_times)
            y = labels[idx]
            if cfg.dropout > 0:                     # a fresh mask for every batch
                active = torch.rand(weight.shape[0], generator=g) >= cfg.dropout
            winner, t_win = readout.decide(t_pre, active)
            fired = winner >= 0
            correct = fired & (readout.neuron_class[winner.clamp_min(0)] == y)
            scales = {"reward_scale": miss_rate if cfg.adaptive else 1.0,
                      "punish_scale": hit_rate if cfg.adaptive else 1.0}
            if optimizer is None:                   # in place, only the winners' rows
                rows = winner[fired]
                n_fired = len(rows)
                delta = P.first_spike_rstdp(t_pre[fired], torch.arange(n_fired), t_win[fired],
                                            correct[fired], n_fired, cfg.rates, **scales)
                weight.index_add_(0, rows, delta)
                weight[rows] = weight[rows].clamp(cfg.w_min, cfg.w_max)
            else:
                dw = P.first_spike_rstdp(t_pre, winner, t_win, correct, weight.shape[0],
                                         cfg.rates, **scales)
                weight.grad = -dw
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                weight.clamp_(cfg.w_min, cfg.w_max)
            n, n_hit, n_fired = len(idx), int(correct.sum()), int(fired.sum())
            hits += n_hit
            misses += n_fired - n_hit
            silent += n - n_fired
            window[0] += n_hit
            window[1] += n_fired - n_hit
            window[2] += n
            if window[2] >= cfg.adapt_every:           # rates of the last window of samples
                hit_rate, miss_rate = window[0] / window[2], window[1] / window[2]
                window = [0, 0, 0]
        total = len(order)
        history.append({"epoch": epoch, "hit": hits / total, "miss": misses / total,
                        "silent": silent / total})
        log.info("R-STDP epoch %d: hit %.4f miss %.4f silent %.4f", epoch + 1,
                 hits / total, misses / total, silent / total)
        if callback is not None:
            callback(history[-1])
    return history


@torch.no_grad()
def rstdp_accuracy(readout: RSTDPReadout, features: Tensor, labels: Tensor, *,
                   spike_times: bool = False) -> float:
    """Fraction of samples whose decision is the label (a silent layer counts as wrong)."""
    return float((readout(features, spike_times=spike_times) == labels).float().mean())
