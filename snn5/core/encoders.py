"""Spike encoders as pure functions. Static input ``x: [B, *F]`` -> ``[T, B, *F]`` sequences.

- direct: the analog value is injected as a current at every step (the first layer encodes).
- Poisson rate: a Bernoulli spike with probability ``x`` at every step (``x`` in [0, 1]).
- latency (time-to-first-spike): one spike per input, earlier for larger values.
- delta: a sequence ``[T, B, *F]`` -> spikes where it changed by at least a threshold.
- population: Gaussian receptive fields, N neurons per value, as rate or latency spikes.
- frequency (FE of FEEL-SNN): a different frequency-domain mask of the image per step.
"""

from __future__ import annotations

import math

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


# ------------------------------------------------------------------ population and frequency codes

def population_responses(x: Tensor, neurons: int, *, lo: float = 0.0, hi: float = 1.0,
                         beta: float = 1.5) -> Tensor:
    """Gaussian receptive fields of a population code (Bohte, Kok & La Poutré, "Error-
    backpropagation in temporally encoded networks of spiking neurons", Neurocomputing 2002).

    ``N`` neurons per input value, neuron ``i = 1..N`` centred at ``mu_i = lo + (2 i - 3) / 2 *
    (hi - lo) / (N - 2)`` with width ``sigma = (hi - lo) / (beta (N - 2))``; its response is
    ``exp(-(x - mu_i)^2 / (2 sigma^2))`` in (0, 1]. (The two outer centres lie half a spacing
    outside ``[lo, hi]``, as in the paper, so the range ends are covered like its middle.)

    Args:
        x: values ``[B, *F]`` (nominally in ``[lo, hi]``).
        neurons: N >= 3.

    Returns:
        ``[B, *F, N]`` responses in ``x``'s dtype.
    """
    if isinstance(neurons, bool) or not isinstance(neurons, int) or neurons < 3:
        raise ValueError(f"a population code needs neurons >= 3 per value, got {neurons!r}")
    if not hi > lo:
        raise ValueError(f"population range needs hi > lo, got lo={lo}, hi={hi}")
    if not beta > 0:
        raise ValueError(f"population beta (width factor) must be > 0, got {beta}")
    spacing = (hi - lo) / (neurons - 2)
    i = torch.arange(1, neurons + 1, device=x.device, dtype=torch.float64)
    mu = (lo + (2 * i - 3) / 2 * spacing).to(x.dtype)                     # [N]
    sigma = spacing / beta
    return torch.exp(-((x.unsqueeze(-1) - mu) ** 2) / (2 * sigma * sigma))


def population_shape(input_shape: tuple[int, ...], neurons: int) -> tuple[int, ...]:
    """Per-sample shape after a population code: the first axis (features or channels) grows
    N-fold, ``[C, *rest] -> [C * N, *rest]``."""
    if len(input_shape) < 1:
        raise ValueError("a population code needs per-sample input with at least one axis")
    return (input_shape[0] * neurons, *input_shape[1:])


def encode_population(x: Tensor, timesteps: int, *, neurons: int = 5, lo: float = 0.0,
                      hi: float = 1.0, beta: float = 1.5, latency: bool = False,
                      threshold: float = 0.1, generator: torch.Generator | None = None) -> Tensor:
    """Population code: Gaussian receptive fields (:func:`population_responses`) turned into
    spikes, Bernoulli rate spikes with probability = response (default), or with ``latency``
    one spike per neuron at ``round((1 - r) (T - 1))`` (responses ``<= threshold`` silent).

    Args:
        x: ``[B, C, *rest]`` (``[B, F]`` features or ``[B, C, H, W]`` images).

    Returns:
        ``[T, B, C * N, *rest]`` spikes; the N neurons of channel ``c`` are channels
        ``c * N ... c * N + N - 1`` (see :func:`population_shape`).
    """
    _check_timesteps(timesteps)
    if x.ndim < 2:
        raise ValueError(f"population encoding expects [B, C, ...], got shape {tuple(x.shape)}")
    r = population_responses(x, neurons, lo=lo, hi=hi, beta=beta)       # [B, C, *rest, N]
    r = r.movedim(-1, 2).flatten(1, 2)                                    # [B, C*N, *rest]
    if latency:
        return encode_latency(r, timesteps, threshold=threshold)
    return encode_poisson(r, timesteps, generator=generator)


def frequency_masks(height: int, width: int, timesteps: int, *, band: bool = False,
                    device: torch.device | None = None) -> Tensor:
    """Radial masks of the 2-D spectrum, one per time step: ``[T, H, W]`` of 0/1 (float32).

    The frequency radius ``rho = sqrt(fy^2 + fx^2) / sqrt(1/2)`` (``fy, fx`` from ``fftfreq``,
    so ``rho`` is 0 at DC and 1 at the corner Nyquist frequency) is cut into T equal rings.
    Low-pass (default): step ``t`` keeps ``rho <= (t + 1) / T``, nested masks, the last one the
    whole spectrum. Band: step ``t`` keeps ``t / T < rho <= (t + 1) / T`` (DC in step 0): the T
    masks partition the spectrum. Masks depend on ``|f|`` only, so filtered real images stay
    real.
    """
    _check_timesteps(timesteps)
    fy = torch.fft.fftfreq(height, device=device, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(width, device=device, dtype=torch.float64).view(1, -1)
    rho = torch.sqrt(fy * fy + fx * fx) / math.sqrt(0.5)                   # [H, W] in [0, 1]
    edges = torch.arange(1, timesteps + 1, device=device, dtype=torch.float64) / timesteps
    upper = rho.unsqueeze(0) <= edges.view(-1, 1, 1) + 1e-12               # [T, H, W]
    if not band:
        return upper.float()
    lower = torch.cat([torch.zeros_like(upper[:1]), upper[:-1]])           # previous ring edge
    return (upper & ~lower).float()


def encode_frequency(x: Tensor, timesteps: int, *, band: bool = False) -> Tensor:
    """Frequency-filtered direct input (the frequency encoding, FE, of FEEL-SNN: Xu et al.,
    "FEEL-SNN: Robust Spiking Neural Networks with Frequency Encoding and Evolutionary Leak
    Factor", NeurIPS 2024): step ``t`` sees the image filtered in the frequency domain by its
    own mask, ``x_t = Re(IFFT2(FFT2(x) * M_t))``, with the masks of :func:`frequency_masks`
    (low-pass of growing radius by default, so early steps see the coarse image and the last
    one the full image; ``band`` gives disjoint rings whose images sum to ``x``).

    The paper's idea is that different steps see different frequency bands, so a perturbation
    concentrated in some band reaches only some steps; the exact radius schedule is ours
    (equal radial steps).

    Args:
        x: images ``[B, *C, H, W]`` (the last two axes are filtered).
        timesteps: T.
        band: disjoint ring masks instead of nested low-pass masks.

    Returns:
        ``[T, B, *C, H, W]`` analog input in ``x``'s dtype.
    """
    _check_timesteps(timesteps)
    if x.ndim < 3:
        raise ValueError(f"frequency encoding filters images [B, ..., H, W], got shape "
                         f"{tuple(x.shape)}; use encoding 'direct' for flat features")
    h, w = x.shape[-2:]
    masks = frequency_masks(h, w, timesteps, band=band, device=x.device)  # [T, H, W]
    spec = torch.fft.fft2(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x)
    masks = masks.view(timesteps, *([1] * (x.ndim - 2)), h, w)            # [T, 1.., H, W]
    return torch.fft.ifft2(spec.unsqueeze(0) * masks).real.to(x.dtype)    # [T, B, *C, H, W]
