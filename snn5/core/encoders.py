"""Spike encoders as pure functions. Static input ``x: [B, *F]`` -> ``[T, B, *F]`` sequences.

- direct: the analog value is injected as a current at every step (the first layer encodes).
- Poisson rate: a Bernoulli spike with probability ``x`` at every step (``x`` in [0, 1]).
- latency (time-to-first-spike): one spike per input, earlier for larger values.
- delta: a sequence ``[T, B, *F]`` -> spikes where it changed by at least a threshold.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_timesteps(timesteps: int) -> None:
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")


def _check_unit_range(x: Tensor, what: str) -> None:
    lo, hi = torch.aminmax(x.detach())
    if not (lo >= 0 and hi <= 1):                 # also false for NaN
        raise ValueError(f"{what} needs inputs in [0, 1], got values in "
                         f"[{lo.item():.3g}, {hi.item():.3g}]; rescale the data first "
                         "(e.g. pixels / 255).")


def encode_direct(x: Tensor, timesteps: int) -> Tensor:
    """Repeat ``x: [B, *F]`` over time -> ``[T, B, *F]`` (a view; no copy)."""
    _check_timesteps(timesteps)
    return x.unsqueeze(0).expand(timesteps, *x.shape)


def encode_poisson(x: Tensor, timesteps: int, *, max_rate: float = 1.0,
                   generator: torch.Generator | None = None) -> Tensor:
    """Bernoulli (discrete-time Poisson) rate code: ``P(z[t] = 1) = max_rate * x``.

    Args:
        x: intensities in [0, 1], ``[B, *F]``.
        timesteps: T.
        max_rate: spike probability per step of an input of 1.
        generator: optional RNG (the global one otherwise).

    Returns:
        ``[T, B, *F]`` spikes in ``x``'s dtype.
    """
    _check_timesteps(timesteps)
    if not 0.0 < max_rate <= 1.0:
        raise ValueError(f"max_rate is a probability per step in (0, 1], got {max_rate}")
    _check_unit_range(x, "Poisson encoding")
    p = (x * max_rate).unsqueeze(0).expand(timesteps, *x.shape)
    return torch.bernoulli(p, generator=generator).to(x.dtype)


def encode_latency(x: Tensor, timesteps: int, *, threshold: float = 0.0) -> Tensor:
    """Time-to-first-spike code with a linear map: one spike at ``t = round((1 - x) (T - 1))``.

    An input of 1 fires at t = 0, an input just above ``threshold`` near t = T - 1; inputs at or
    below ``threshold`` never fire (they carry no information).

    Returns:
        ``[T, B, *F]`` with at most one spike per input.
    """
    _check_timesteps(timesteps)
    _check_unit_range(x, "latency encoding")
    t_fire = torch.round((1.0 - x) * (timesteps - 1)).long()            # [B, *F]
    steps = torch.arange(timesteps, device=x.device).view(-1, *([1] * x.ndim))
    z = (steps == t_fire.unsqueeze(0)) & (x > threshold).unsqueeze(0)   # [T, B, *F]
    return z.to(x.dtype)


def encode_delta(x_seq: Tensor, threshold: float, *, off_spikes: bool = False,
                 initial: Tensor | None = None) -> Tensor:
    """Delta modulation of a sequence ``[T, B, *F]``: spike where ``x[t] - x[t-1] >= threshold``.

    ``x[-1]`` is ``initial`` (zeros by default, so a large first sample fires). With
    ``off_spikes`` a decrease of at least ``threshold`` gives -1.

    Returns:
        ``[T, B, *F]`` in {0, 1} (or {-1, 0, 1} with ``off_spikes``).
    """
    if threshold <= 0:
        raise ValueError(f"delta threshold must be > 0, got {threshold}")
    if x_seq.ndim < 2:
        raise ValueError(f"expected a sequence [T, B, ...], got shape {tuple(x_seq.shape)}")
    prev = torch.zeros_like(x_seq[:1]) if initial is None else initial.unsqueeze(0)
    d = torch.diff(x_seq, dim=0, prepend=prev)                           # [T, B, *F]
    z = (d >= threshold).to(x_seq.dtype)
    if off_spikes:
        z = z - (d <= -threshold).to(x_seq.dtype)
    return z


# ------------------------------------------------- retina-like front end of the STDP conv networks

def dog_kernel(size: int, sigma_center: float, sigma_surround: float) -> Tensor:
    """Difference-of-Gaussians kernel ``[size, size]`` (zero mean, peak 1).

    ``g(s) = exp(-r^2 / (2 s^2)) / (2 pi s^2)``; the kernel is ``g(sigma_center) -
    g(sigma_surround)`` minus its mean, divided by its maximum (the normalisation of the
    authors' SpykeTorch). ``sigma_center < sigma_surround`` gives an ON-centre cell,
    ``sigma_center > sigma_surround`` an OFF-centre one. The entries sum to 0 (up to rounding),
    so a uniform patch gives no response. Kheradpisheh et al. (2018) and Mozafari et al. (2019)
    filter MNIST with such cells before latency coding.

    Args:
        size: odd window width.
        sigma_center, sigma_surround: widths of the two Gaussians, in pixels.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"DoG window size must be a positive odd int, got {size}")
    if sigma_center <= 0 or sigma_surround <= 0 or sigma_center == sigma_surround:
        raise ValueError("DoG sigmas must be positive and different, got "
                         f"{sigma_center} and {sigma_surround}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    r2 = r.view(-1, 1) ** 2 + r.view(1, -1) ** 2                          # [size, size]

    def gauss(s: float) -> Tensor:
        return torch.exp(-r2 / (2 * s * s)) / (2 * torch.pi * s * s)

    dog = gauss(sigma_center) - gauss(sigma_surround)
    dog = dog - dog.mean()
    return (dog / dog.max()).float()


def dog_bank(scales: tuple[tuple[int, float, float], ...]) -> Tensor:
    """ON and OFF DoG kernels for each ``(size, sigma_center, sigma_surround)`` scale, zero
    padded to the largest size: ``[2 * len(scales), 1, k, k]`` (ON, OFF, ON, OFF, ...)."""
    k = max(s[0] for s in scales)
    kernels = []
    for size, s1, s2 in scales:
        p = (k - size) // 2
        for a, b in ((s1, s2), (s2, s1)):
            kernels.append(torch.nn.functional.pad(dog_kernel(size, a, b), (p, p, p, p)))
    return torch.stack(kernels).unsqueeze(1)


def dog_filter(images: Tensor, kernels: Tensor, *, threshold: float = 0.0,
               norm_radius: int | None = None, eps: float = 1e-12) -> Tensor:
    """Filter grey images with a DoG bank and keep the strong responses.

    ``y = conv(images, kernels)`` (same size), responses ``<= threshold`` set to 0, then, if
    ``norm_radius`` is given, every map divided by its local mean over a ``2 r + 1`` window
    (the local normalisation of SpykeTorch's MNIST pipeline).

    Args:
        images: ``[B, 1, H, W]`` (any intensity scale; the threshold is in the same units).
        kernels: ``[K, 1, k, k]`` from :func:`dog_bank`.

    Returns:
        ``[B, K, H, W]`` non-negative responses.
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grey images [B, 1, H, W], got {tuple(images.shape)}")
    k = kernels.shape[-1]
    y = torch.nn.functional.conv2d(images, kernels.to(images), padding=k // 2)   # [B, K, H, W]
    y = torch.where(y > threshold, y, torch.zeros_like(y))
    if norm_radius is not None:
        w = 2 * norm_radius + 1
        mean = torch.nn.functional.avg_pool2d(y, w, stride=1, padding=norm_radius,
                                              count_include_pad=True)
        y = y / (mean + eps)
    return y


def rank_order_times(x: Tensor, timesteps: int) -> Tensor:
    """Intensity-to-latency code with equal-count bins: first-spike step of every value.

    Per sample, the non-zero values of ``x [B, *F]`` are sorted in decreasing order and cut
    into ``timesteps`` bins of ``n_nonzero // timesteps`` values each; bin ``t`` fires at step
    ``t`` (the strongest first). Zeros never fire, nor do the ``n_nonzero mod timesteps``
    weakest values left over (SpykeTorch's ``Intensity2Latency``, used by Mozafari et al. 2019).

    Returns:
        Spike steps ``[B, *F]`` as floats, ``inf`` for no spike.
    """
    _check_timesteps(timesteps)
    flat = x.flatten(1)                                                   # [B, F]
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1], device=x.device).expand_as(order))
    nnz = (flat > 0).sum(1, keepdim=True)                                 # [B, 1]
    bin_size = (nnz // timesteps).clamp_min(1)
    t = (rank // bin_size).to(x.dtype if x.is_floating_point() else torch.float32)
    silent = (flat <= 0) | (t >= timesteps)
    t = torch.where(silent, torch.full_like(t, float("inf")), t)
    return t.view(x.shape)


def spike_wave(times: Tensor, timesteps: int) -> Tensor:
    """Cumulative spike wave of one-spike neurons: ``z[t] = 1`` from the first spike on.

    Args:
        times: first-spike steps ``[B, *F]`` (``inf``: silent).

    Returns:
        ``[T, B, *F]`` in {0, 1} (``times``' dtype).
    """
    _check_timesteps(timesteps)
    steps = torch.arange(timesteps, device=times.device, dtype=times.dtype)
    return (times.unsqueeze(0) <= steps.view(-1, *([1] * times.ndim))).to(times.dtype)
