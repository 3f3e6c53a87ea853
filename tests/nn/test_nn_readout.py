"""Readouts ``[T, B, C] -> [B, C]`` and the encoder modules."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.nn import (
    DirectEncoder, Encoding, LatencyEncoder, MembraneReadout, PoissonEncoder, Readout,
    SpikeCount, TimeMean, build_encoder, build_readout, readout_is_spiking,
)


def li_trace(x_seq: torch.Tensor, tau: float, dt: float) -> torch.Tensor:
    """Leaky integrator v[t] = beta v[t-1] + (1 - beta) x[t] in python floats, per element."""
    beta = math.exp(-dt / tau)
    T = x_seq.shape[0]
    flat = x_seq.reshape(T, -1).tolist()
    out, v = [], [0.0] * len(flat[0])
    for row in flat:
        v = [beta * vi + (1 - beta) * xi for vi, xi in zip(v, row)]
        out.append(v)
    return torch.tensor(out, dtype=torch.float64).reshape(x_seq.shape)


def test_spike_count_counts_spikes() -> None:
    z = (torch.rand(9, 4, 3) > 0.6).float()
    counts = SpikeCount()(z)
    assert counts.shape == (4, 3)
    assert counts.tolist() == [[sum(z[t, b, c].item() for t in range(9)) for c in range(3)]
                               for b in range(4)]


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_membrane_readout_reduces_the_li_trace(reduce: str) -> None:
    x = torch.randn(12, 2, 5, dtype=torch.float64)
    ro = MembraneReadout(8e-3, dt=1e-3, reduce=reduce)
    v = li_trace(x, 8e-3, 1e-3)
    expected = v.mean(0) if reduce == "mean" else v.max(0).values
    torch.testing.assert_close(ro(x), expected, rtol=1e-12, atol=1e-14)
    assert ro(x).shape == (2, 5)


def test_membrane_readout_rejects_unknown_reduction_and_bad_tau() -> None:
    with pytest.raises(ValueError, match="mean.*max"):
        MembraneReadout(reduce="sum")
    with pytest.raises(ValueError, match="milliseconds"):
        MembraneReadout(tau_mem=1e-3, dt=1e-3)


def test_time_mean() -> None:
    x = torch.randn(7, 3, 2)
    torch.testing.assert_close(TimeMean()(x), sum(x[t] for t in range(7)) / 7)


def test_build_readout() -> None:
    assert isinstance(build_readout(Readout.SPIKE_COUNT, tau_mem=20e-3, dt=1e-3), SpikeCount)
    mean = build_readout("mean_membrane", tau_mem=10e-3, dt=1e-3)
    mx = build_readout(Readout.MAX_MEMBRANE, tau_mem=10e-3, dt=1e-3)
    assert (mean.reduce, mx.reduce) == ("mean", "max") and mean.li.tau_mem == 10e-3
    assert readout_is_spiking("spike_count") and not readout_is_spiking(Readout.MAX_MEMBRANE)


def test_unknown_readout_or_encoding_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="spike_count.*mean_membrane.*max_membrane"):
        build_readout("softmax", tau_mem=20e-3, dt=1e-3)
    with pytest.raises(ValueError, match="direct.*poisson.*latency"):
        build_encoder("rate", 4)


# ----------------------------------------------------------------------------- encoder modules

def test_direct_encoder_repeats() -> None:
    x = torch.randn(3, 4)
    out = DirectEncoder(5)(x)
    assert out.shape == (5, 3, 4) and all(torch.equal(out[t], x) for t in range(5))


def test_poisson_encoder_uses_the_global_rng_and_max_rate() -> None:
    x = torch.full((500, 4), 0.5)
    torch.manual_seed(11)
    a = PoissonEncoder(40, max_rate=0.5)(x)
    torch.manual_seed(11)
    b = PoissonEncoder(40, max_rate=0.5)(x)
    assert torch.equal(a, b) and set(a.unique().tolist()) == {0.0, 1.0}
    p, n = 0.25, a.numel()
    assert abs(a.mean().item() - p) < 6 * math.sqrt(p * (1 - p) / n)


def test_latency_encoder() -> None:
    x = torch.tensor([[1.0, 0.5, 0.0, 0.25]])
    z = LatencyEncoder(5, threshold=0.25)(x)
    assert z.shape == (5, 1, 4)
    assert z[:, 0].t().tolist() == [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0] * 5, [0] * 5]


def test_build_encoder() -> None:
    for kind, cls in [(Encoding.DIRECT, DirectEncoder), ("poisson", PoissonEncoder),
                      (Encoding.LATENCY, LatencyEncoder)]:
        enc = build_encoder(kind, 6)
        assert type(enc) is cls and enc.timesteps == 6


@pytest.mark.parametrize("readout, time_mean", [
    (SpikeCount(), False), (TimeMean(), True), (MembraneReadout(8e-3, dt=1e-3), True),
    (MembraneReadout(8e-3, dt=1e-3, reduce="max"), False)])
def test_per_step_scores_reduce_to_the_logits(readout, time_mean) -> None:
    x = (torch.rand(9, 3, 4) > 0.5).double() if isinstance(readout, SpikeCount) \
        else torch.randn(9, 3, 4, dtype=torch.float64)
    scores, _ = readout.steps(x)
    assert scores.shape == (9, 3, 4)
    torch.testing.assert_close(readout.reduce_steps(scores), readout(x), rtol=0, atol=0)
    assert readout.time_mean is time_mean
    if time_mean:
        torch.testing.assert_close(scores.mean(0), readout(x), rtol=0, atol=0)
    if isinstance(readout, SpikeCount):                # spikes; the count is T x their mean
        assert torch.equal(scores, x)
        torch.testing.assert_close(readout(x), 9 * scores.mean(0))
    if isinstance(readout, MembraneReadout):           # the LI membrane trace
        torch.testing.assert_close(scores, li_trace(x, 8e-3, 1e-3), rtol=1e-12, atol=1e-14)


def test_membrane_readout_continues_from_its_state() -> None:
    ro = MembraneReadout(8e-3, dt=1e-3)
    x = torch.randn(10, 2, 3, dtype=torch.float64)
    whole, _ = ro.steps(x)
    first, state = ro.steps(x[:4])
    rest, _ = ro.steps(x[4:], state)
    torch.testing.assert_close(torch.cat([first, rest]), whole, rtol=0, atol=0)
    restarted, _ = ro.steps(x[4:])                     # without the state: a fresh integrator
    assert not torch.allclose(restarted, whole[4:])
