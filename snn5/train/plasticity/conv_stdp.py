"""An STDP-learned convolutional spiking feature extractor (Kheradpisheh et al. 2018,
Mozafari et al. 2019), trained layer by layer without labels.

Kheradpisheh, Ganjtabesh, Thorpe & Masquelier, "STDP-based spiking deep convolutional neural
networks for object recognition", Neural Networks 99, 2018; Mozafari, Ganjtabesh,
Nowzari-Dalini, Thorpe & Masquelier, "Bio-inspired digit recognition using reward-modulated
spike-timing-dependent plasticity in deep convolutional networks", Pattern Recognit. 94, 2019.

Pipeline (defaults: the MNIST network of the 2019 paper as the authors' SpykeTorch sets it):

1. **Retina**: ON and OFF difference-of-Gaussians cells at three scales (6 maps), responses
   below a threshold dropped, local normalisation, then an intensity-to-latency code with
   ``timesteps`` equal-count bins (:func:`snn5.core.encoders.rank_order_times`).
2. **S1**: 30 convolutional non-leaky IF maps, 5x5, threshold 15, one spike per neuron
   (:mod:`snn5.core.conv_stdp`); **C1**: spike-time max pooling 2x2.
3. **S2**: 250 maps 3x3, threshold 10; **C2**: pooling 3x3. C2's spike times are the features
   handed to the reward-trained decision layer (:mod:`snn5.train.plasticity.rstdp`).

Learning of a layer (Kheradpisheh's rule, Mozafari's competition): pointwise inhibition keeps
the earliest feature per position, ``k`` winners are picked with feature-wide and
``radius``-wide lateral inhibition, and only the winners' kernels change by the soft-bounded
STDP ``dw = +-a w (1 - w)`` (sign by pre-before-post). As in SpykeTorch, ``a_plus`` starts at
0.004, doubles every ``double_every`` samples up to ``a_plus_max`` = 0.15, and ``a_minus``
keeps its ratio to it (0.75). The update is written as ``-dw`` into each kernel's ``.grad``
and applied by an optimizer (SGD, lr 1: the rule's rates are the step), then clipped to
``[w_min, w_max]``. At inference there is no inhibition: every neuron whose potential exceeds
its threshold fires (the authors' test path).

Differences from the papers: the layers learn from ``samples`` images each instead of full
epochs (Mozafari: 2 epochs of 60,000 for S1, 4 for S2); the weights have converged
(Kheradpisheh's ``C`` below 0.01) after about 4,000, see ``docs/rstdp.md``. ``batch_size > 1``
sums the updates of several images computed with the same weights (``batch_size=1``, the
default, is the papers' schedule). Weights within 1e-6 of a bound are set to it
(:func:`snap_to_bounds_`). Time is discrete: a neuron fires at the first of ``timesteps``
steps at which its potential exceeds the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from snn5.core import conv_stdp as C
from snn5.core.encoders import dog_bank, dog_filter, rank_order_times

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvLayerConfig:
    """One STDP convolutional layer and the pooling after it.

    Args:
        channels: output feature maps.
        kernel: square kernel width.
        threshold: firing threshold of the IF neurons.
        k: winners per image during learning.
        radius: lateral-inhibition radius of the winners (positions).
        padding: silent border added to the input before the convolution.
        pool: pooling window and stride after the layer (1: none).
    """

    channels: int
    kernel: int
    threshold: float
    k: int
    radius: int
    padding: int
    pool: int

    def __post_init__(self) -> None:
        if min(self.channels, self.kernel, self.k, self.pool) < 1 or min(self.padding,
                                                                          self.radius) < 0:
            raise ValueError(f"invalid conv layer {self}: channels, kernel, k, pool must be "
                             ">= 1 and padding, radius >= 0")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")


MOZAFARI_LAYERS = (ConvLayerConfig(30, 5, 15.0, k=5, radius=3, padding=2, pool=2),
                   ConvLayerConfig(250, 3, 10.0, k=8, radius=1, padding=1, pool=3))
"""S1/C1 and S2/C2 of Mozafari et al. (2019) for MNIST (SpykeTorch's values)."""

MOZAFARI_DOG = ((3, 3 / 9, 6 / 9), (7, 7 / 9, 14 / 9), (13, 13 / 9, 26 / 9))
"""(size, sigma_center, sigma_surround) of the three DoG scales (ON and OFF each)."""


@dataclass(frozen=True)
class ConvSTDPConfig:
    """Hyper-parameters of the feature extractor and of its STDP learning."""

    layers: tuple[ConvLayerConfig, ...] = MOZAFARI_LAYERS
    timesteps: int = 15
    dog_scales: tuple[tuple[int, float, float], ...] = MOZAFARI_DOG
    dog_threshold: float = 50 / 255          # SpykeTorch: 50 on the 0..255 scale
    norm_radius: int | None = 8
    w_mean: float = 0.8
    w_std: float = 0.05
    stdp: C.ConvSTDPParams = field(default_factory=C.ConvSTDPParams)
    a_plus_max: float = 0.15
    double_every: int = 500

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("need at least one conv layer")
        if self.timesteps < 1 or self.double_every < 1:
            raise ValueError(f"timesteps and double_every must be >= 1, got {self.timesteps}, "
                             f"{self.double_every}")


class ConvSTDPNetwork(nn.Module):
    """DoG retina + STDP convolutional layers; images ``[B, 1, H, W]`` in [0, 1] -> spike
    times. Kernels are ``weights[i]``: ``[C_out, C_in, k, k]`` (initialised N(w_mean, w_std)).
    """

    def __init__(self, cfg: ConvSTDPConfig = ConvSTDPConfig(), *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("dog", dog_bank(cfg.dog_scales))
        c_in, weights = self.dog.shape[0], []
        for layer in cfg.layers:
            w = torch.empty(layer.channels, c_in, layer.kernel, layer.kernel)
            weights.append(nn.Parameter(w.normal_(cfg.w_mean, cfg.w_std, generator=generator)))
            c_in = layer.channels
        self.weights = nn.ParameterList(weights)

    def encode(self, images: Tensor) -> Tensor:
        """Retina: ``[B, 1, H, W]`` -> first-spike steps of the DoG maps ``[B, 2 S, H, W]``."""
        y = dog_filter(images, self.dog, threshold=self.cfg.dog_threshold,
                       norm_radius=self.cfg.norm_radius)
        return rank_order_times(y, self.cfg.timesteps)

    def layer(self, i: int, in_times: Tensor) -> tuple[Tensor, Tensor]:
        """Layer ``i`` without pooling: ``(spike times, potential at the spike)`` of
        ``[B, C_i, H', W']``."""
        spec = self.cfg.layers[i]
        v = C.conv_potentials(in_times, self.weights[i].detach(), self.cfg.timesteps,
                              padding=spec.padding)
        return C.fire_first(v, spec.threshold)

    def layer_final(self, i: int, in_times: Tensor) -> Tensor:
        """Layer ``i`` integrated over the whole presentation only: ``T - 1`` where the final
        potential exceeds the threshold, ``inf`` elsewhere. Whether a neuron fires at all
        depends only on which inputs fired at all (non-leaky, no inhibition at inference),
        so this is exact for spike *presence* at ``1 / T`` of the cost."""
        spec = self.cfg.layers[i]
        x = torch.isfinite(C.pad_times(in_times, spec.padding)).to(self.weights[i].dtype)
        fired = torch.nn.functional.conv2d(x, self.weights[i].detach()) > spec.threshold
        return torch.where(fired, float(self.cfg.timesteps - 1), float("inf"))

    def pool(self, i: int, times: Tensor) -> Tensor:
        spec = self.cfg.layers[i]
        return times if spec.pool == 1 else C.pool_times(times, spec.pool)

    @torch.no_grad()
    def forward(self, images: Tensor, upto: int | None = None, *, timing: bool = True
                ) -> Tensor:
        """Pooled spike times after layer ``upto`` (default: the last); ``upto=0`` returns
        the retina's output. No inhibition at inference: every neuron that reaches its
        threshold fires. ``timing=False`` computes only which neurons fire by the end
        (:meth:`layer_final`; spike steps set to ``T - 1``), all a final-potential decision
        layer reads."""
        n = len(self.cfg.layers) if upto is None else upto
        times = self.encode(images)
        for i in range(n):
            times = self.pool(i, self.layer(i, times)[0] if timing
                              else self.layer_final(i, times))
        return times

    @torch.no_grad()
    def features(self, images: Tensor, *, batch_size: int = 256, timing: bool = True
                 ) -> Tensor:
        """Flattened pooled spike times of the last layer ``[N, F]`` (``inf``: silent),
        computed in batches (see :meth:`forward` for ``timing``)."""
        out = [self(images[s:s + batch_size], timing=timing).flatten(1)
               for s in range(0, len(images), batch_size)]
        return torch.cat(out)


def snap_to_bounds_(w: Tensor, w_min: float, w_max: float, eps: float = 1e-6) -> Tensor:
    """Clip ``w`` to ``[w_min, w_max]`` and set weights within ``eps`` of a bound to it.

    The soft bound ``(w - w_min)(w_max - w)`` makes a depressed weight decay geometrically
    towards ``w_min`` without reaching it; left alone it ends in the denormal range, where
    CPU arithmetic slows down by orders of magnitude. Snapping changes a weight by at most
    ``eps``, and a weight that close to its bound has (almost) stopped learning anyway.
    """
    w.clamp_(w_min, w_max)
    w.masked_fill_(w < w_min + eps, w_min)
    return w.masked_fill_(w > w_max - eps, w_max)


def train_conv_layer(net: ConvSTDPNetwork, images: Tensor, layer: int, *, samples: int,
                     seed: int = 0, batch_size: int = 1, chunk: int = 256,
                     optimizer: torch.optim.Optimizer | None = None,
                     callback: Callable[[int], None] | None = None) -> dict[str, float]:
    """Train kernel ``layer`` by STDP on ``samples`` images drawn (with reshuffling) from
    ``images``; the layers below are frozen and run without inhibition.

    ``callback(samples_seen)`` is called after every ``chunk`` of images (progress, logging).

    Returns:
        ``{"samples", "a_plus", "winners_per_image", "convergence"}`` where convergence is
        Kheradpisheh's ``C = mean w (1 - w)`` of the kernels (0: binary weights).
    """
    cfg, spec = net.cfg, net.cfg.layers[layer]
    weight = net.weights[layer]
    opt = optimizer or torch.optim.SGD([weight], lr=1.0)
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(images), generator=g)
                       for _ in range(-(-samples // len(images)))])[:samples]
    scale, seen, n_winners = 1.0, 0, 0
    scale_max = cfg.a_plus_max / cfg.stdp.a_plus
    for start in range(0, samples, chunk):
        with torch.no_grad():
            in_times = net.encode(images[order[start:start + chunk]])
            for i in range(layer):
                in_times = net.pool(i, net.layer(i, in_times)[0])
        for s in range(0, len(in_times), batch_size):
            x = in_times[s:s + batch_size]
            with torch.no_grad():
                times, v = net.layer(layer, x)
                times = C.pointwise_inhibition(times, v)
                winners = C.conv_kwta(times, v, spec.k, spec.radius)
                ok = winners[..., 0] >= 0
                idx = winners.clamp_min(0)
                b = torch.arange(len(x)).view(-1, 1).expand_as(ok)
                t_win = times[b, idx[..., 0], idx[..., 1], idx[..., 2]]       # [b, k]
                p = cfg.stdp._replace(a_plus=cfg.stdp.a_plus * scale,
                                      a_minus=cfg.stdp.a_minus * scale)
                dw = C.conv_stdp(x, winners, t_win, weight.detach(), p, padding=spec.padding)
            weight.grad = -dw
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                snap_to_bounds_(weight, cfg.stdp.w_min, cfg.stdp.w_max)
            n_winners += int(ok.sum())
            before = seen // cfg.double_every
            seen += len(x)
            if seen // cfg.double_every > before:             # SpykeTorch's rate schedule
                scale = min(2 * scale, scale_max)
        if callback is not None:
            callback(seen)
    a_plus = cfg.stdp.a_plus * scale
    w = weight.detach()
    conv = float((w * (1 - w)).mean())
    log.info("conv STDP layer %d: %d samples, a+ %.3f, %.2f winners/image, C = %.4f",
             layer + 1, samples, a_plus, n_winners / max(samples, 1), conv)
    return {"samples": samples, "a_plus": a_plus, "winners_per_image": n_winners / max(samples, 1),
            "convergence": conv}
