"""Spike encoders (snn5.core.encode_*): direct, Poisson rate, latency, delta."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core import encode_delta, encode_direct, encode_latency, encode_poisson

NAN = float("nan")


# ----------------------------------------------------------------------------- direct

@pytest.mark.parametrize("shape", [(3,), (2, 5), (2, 3, 4, 4)])
def test_direct_repeats_the_input_exactly(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    out = encode_direct(x, 6)
    assert out.shape == (6, *shape) and out.dtype == x.dtype
    for t in range(6):
        assert torch.equal(out[t], x)


def test_direct_is_differentiable() -> None:
    x = torch.randn(2, 3, requires_grad=True)
    encode_direct(x, 4).sum().backward()
    assert torch.equal(x.grad, torch.full((2, 3), 4.0))


@pytest.mark.parametrize("encode", [encode_direct, encode_poisson, encode_latency])
@pytest.mark.parametrize("timesteps", [0, -1, 2.0, None])
def test_bad_timesteps_raise(encode, timesteps) -> None:
    with pytest.raises(ValueError, match="timesteps"):
        encode(torch.rand(2, 3), timesteps)


# ----------------------------------------------------------------------------- Poisson

def test_poisson_is_binary_with_rate_equal_to_intensity() -> None:
    values = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
    x = values.repeat(200, 1)                              # [B=200, 6]
    T = 100
    z = encode_poisson(x, T, generator=torch.Generator().manual_seed(1234))
    assert z.shape == (T, 200, 6) and z.dtype == x.dtype
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    n = T * 200                                            # Bernoulli trials per intensity
    rate = z.mean((0, 1))
    # 6 standard deviations of a binomial proportion: a seeded draw this far off means a bug
    tol = 6 * torch.sqrt(values * (1 - values) / n)
    assert (rate - values).abs().le(tol).all(), (rate, values)
    assert rate[0] == 0 and rate[-1] == 1                  # exact at the ends


def test_poisson_max_rate_scales_the_rate() -> None:
    x = torch.full((400, 5), 0.8)
    z = encode_poisson(x, 100, max_rate=0.25, generator=torch.Generator().manual_seed(7))
    p, n = 0.2, z.numel()
    assert abs(z.mean().item() - p) < 6 * math.sqrt(p * (1 - p) / n)


def test_poisson_is_reproducible_with_a_seeded_generator() -> None:
    x = torch.rand(8, 16)
    a = encode_poisson(x, 20, generator=torch.Generator().manual_seed(3))
    b = encode_poisson(x, 20, generator=torch.Generator().manual_seed(3))
    c = encode_poisson(x, 20, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_poisson_is_independent_across_time() -> None:
    """Steps are fresh draws (not one draw repeated)."""
    z = encode_poisson(torch.full((1, 1000), 0.5), 2, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(z[0], z[1])


@pytest.mark.parametrize("bad", [[-0.1, 0.5], [0.5, 1.01], [NAN, 0.5], [math.inf, 0.5]])
def test_poisson_rejects_inputs_outside_unit_range(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_poisson(torch.tensor(bad), 5)


@pytest.mark.parametrize("max_rate", [0.0, -0.5, 1.5, NAN])
def test_poisson_rejects_bad_max_rate(max_rate: float) -> None:
    with pytest.raises(ValueError, match="max_rate"):
        encode_poisson(torch.rand(3), 5, max_rate=max_rate)


# ----------------------------------------------------------------------------- latency

def test_latency_fires_once_at_the_documented_time() -> None:
    T = 11
    x = torch.tensor([[1.0, 0.9, 0.62, 0.5, 0.33, 0.1, 0.04]])
    z = encode_latency(x, T)
    assert z.shape == (T, 1, 7) and z.dtype == x.dtype
    assert z.sum(0).tolist() == [[1.0] * 7]
    # t = round((1 - x) * (T - 1)) computed in python: 0, 1, 4 (3.8), 5, 7 (6.7), 9, 10 (9.6)
    expected = [round((1 - v) * (T - 1)) for v in x[0].tolist()]
    assert expected == [0, 1, 4, 5, 7, 9, 10]
    assert z[:, 0].argmax(0).tolist() == expected


@pytest.mark.parametrize("threshold", [0.0, 0.25])
def test_latency_is_silent_at_or_below_threshold(threshold: float) -> None:
    x = torch.tensor([0.0, 0.25, 0.125, 0.375, 0.75])     # binary fractions: exact comparisons
    z = encode_latency(x, 8, threshold=threshold)
    fired = z.sum(0)
    assert fired.tolist() == [float(v > threshold) for v in x.tolist()]
    assert set(z.unique().tolist()) <= {0.0, 1.0}


def test_latency_single_step_fires_everything_above_threshold_at_t0() -> None:
    x = torch.tensor([0.0, 0.01, 1.0])
    assert encode_latency(x, 1).tolist() == [[0.0, 1.0, 1.0]]


@pytest.mark.parametrize("bad", [[-0.1, 0.5], [0.5, 1.5], [NAN, 0.5]])
def test_latency_rejects_inputs_outside_unit_range(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_latency(torch.tensor(bad), 5)


# ----------------------------------------------------------------------------- delta

def test_delta_spikes_where_the_change_reaches_the_threshold() -> None:
    # exact binary fractions; one feature per column
    x = torch.tensor([[0.0, 1.0], [0.5, 1.0], [0.5, 0.25], [0.25, 0.75], [1.0, 0.75]])
    x_seq = x.unsqueeze(1)                                 # [T=5, B=1, F=2]
    # differences from a zero start: col0 0, .5, 0, -.25, .75 ; col1 1, 0, -.75, .5, 0
    on = encode_delta(x_seq, 0.5)
    assert on[:, 0].tolist() == [[0, 1], [1, 0], [0, 0], [0, 1], [1, 0]]
    both = encode_delta(x_seq, 0.5, off_spikes=True)
    assert both[:, 0].tolist() == [[0, 1], [1, 0], [0, -1], [0, 1], [1, 0]]
    assert on.dtype == x_seq.dtype


def test_delta_uses_the_initial_value() -> None:
    x_seq = torch.tensor([[1.0], [1.0], [2.0]]).unsqueeze(1)       # [3, 1, 1]
    assert encode_delta(x_seq, 0.5).flatten().tolist() == [1, 0, 1]
    assert encode_delta(x_seq, 0.5, initial=torch.ones(1, 1)).flatten().tolist() == [0, 0, 1]
    assert encode_delta(x_seq, 0.5, off_spikes=True,
                        initial=torch.full((1, 1), 3.0)).flatten().tolist() == [-1, 0, 1]


def test_delta_matches_a_loop_over_differences() -> None:
    x_seq = torch.randn(40, 3, 4)
    th = 0.7
    z = encode_delta(x_seq, th, off_spikes=True)
    prev = torch.zeros(3, 4)
    for t in range(40):
        d = x_seq[t] - prev
        assert torch.equal(z[t], (d >= th).float() - (d <= -th).float())
        prev = x_seq[t]


@pytest.mark.parametrize("threshold", [0.0, -1.0])
def test_delta_rejects_non_positive_threshold(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        encode_delta(torch.rand(4, 2), threshold)


def test_delta_rejects_non_sequences() -> None:
    with pytest.raises(ValueError, match=r"\[T, B"):
        encode_delta(torch.rand(4), 0.1)
