"""The fused Diehl & Cook kernel against the core reference: identical spike counts on the same
input spikes (given trains and the seeded hash), the weights (changed at every spike event and
clipped), dw and theta bitwise, the retry rule, determinism, errors, the reference fallback."""

import logging

import pytest
import torch

import snn5.kernels.diehl_cook as dck
from snn5.core.diehl_cook import (
    DiehlCookParams, diehl_cook_present, diehl_cook_run, init_delays, init_weight, poisson_spikes,
)
from snn5.kernels import load_cpu_kernels
from snn5.kernels.diehl_cook import present_diehl_cook

pytestmark = pytest.mark.skipif(load_cpu_kernels() is None, reason="CPU kernels not built")

F64 = torch.float64
P = DiehlCookParams()


def setup(n_e, n_in, B, steps, seed, *, rate=0.05, scale=0.6):
    """Weights, delays, thresholds and dense random trains that make every population fire;
    some weights start above w_max and some just above 0, so that clipping is exercised."""
    g = torch.Generator().manual_seed(seed)
    weight = (torch.rand(n_e, n_in, generator=g) + 0.01) * scale
    weight[:, :3] = 1.5
    weight[:, 3:6] = 2e-5
    theta = P.theta_init + 4e-3 * torch.rand(n_e, generator=g, dtype=F64)
    spikes = torch.rand(steps, B, n_in, generator=g) < rate
    p = P._replace(t_present=steps * P.dt)
    return weight, theta, spikes, p, init_delays(n_e, n_in, p, g)


@pytest.mark.parametrize("n_e", [1, 7, 20])
@pytest.mark.parametrize("B, learn", [(1, False), (3, False), (1, True)])
@pytest.mark.parametrize("delayed", [True, False])
def test_kernel_equals_reference_on_given_spikes(n_e, B, learn, delayed):
    weight, theta, spikes, p, delays = setup(n_e, 50, B, 200, seed=n_e * 10 + B, rate=0.1)
    delays = delays if delayed else None
    ref = diehl_cook_present(spikes, weight, theta, p, delays=delays, learn=learn)
    out = present_diehl_cook(weight, theta, p, spikes=spikes, delays=delays, learn=learn,
                             backend="cpu")
    assert (ref.counts.sum(1) >= 6).all(), "the test needs spikes"
    assert torch.equal(out.counts, ref.counts)
    assert torch.equal(out.attempts, ref.attempts)
    if not learn:
        assert out.dw is None and out.dtheta is None and out.weight is None
        return
    assert (ref.dw != 0).sum() >= 50, "the test needs weight changes"
    assert out.dw.dtype == torch.float32 and out.dtheta.dtype == F64
    # same float64 operations in the same order: bitwise
    assert torch.equal(out.weight, ref.weight)
    assert torch.equal(out.dw, ref.dw) and torch.equal(out.dw, out.weight - weight)
    assert torch.equal(out.dtheta, ref.dtheta)
    # every update was clipped: the weights of 1.5 came down to w_max as spikes arrived (all
    # inputs fired); test_core_diehl_cook checks the clipping by hand
    assert (out.weight >= p.w_min).all() and (out.weight <= p.w_max).all()


def test_learning_changes_the_weights_that_later_spikes_carry():
    """Immediate updates: the same trains give other responses than with the weights frozen
    (the kernel's learn=False path with theta held would not change)."""
    weight, theta, spikes, p, delays = setup(20, 50, 1, 200, seed=4, rate=0.1)
    learned = present_diehl_cook(weight, theta, p, spikes=spikes, delays=delays, learn=True,
                                 backend="cpu")
    frozen = present_diehl_cook(weight, theta, p._replace(nu_pre=0.0, nu_post=0.0, w_max=10.0),
                                spikes=spikes, delays=delays, learn=True, backend="cpu")
    assert torch.equal(frozen.weight, weight)            # no STDP, nothing above w_max: no change
    assert not torch.equal(learned.counts, frozen.counts)


def test_learning_takes_one_sample_per_call():
    weight, theta, spikes, p, delays = setup(4, 20, 2, 40, seed=0)
    for backend in ("cpu", "reference"):
        with pytest.raises(ValueError, match="one sample at a time.*B=2"):
            present_diehl_cook(weight, theta, p, spikes=spikes, delays=delays, learn=True,
                               backend=backend)
    with pytest.raises(ValueError, match="one sample at a time"):
        diehl_cook_present(spikes, weight, theta, p, delays=delays, learn=True)


@pytest.mark.parametrize("learn", [False, True])
def test_seeded_kernel_draws_the_reference_spikes(learn):
    g = torch.Generator().manual_seed(3)
    n_e, n_in, B = 12, 100, 4
    p = P._replace(t_present=0.08, min_spikes=6, max_retries=4)
    weight = init_weight(n_e, n_in, p, g) * 2
    delays = init_delays(n_e, n_in, p, g)
    theta = torch.full((n_e,), p.theta_init, dtype=F64)
    rates = (torch.rand(B, n_in, generator=g) < 0.4).double() * p.input_rate
    seeds = torch.randint(0, 2**62, (B,), generator=g)
    if learn:                                            # one sample per call
        for b in range(B):
            ref = diehl_cook_run(rates[b:b + 1], seeds[b:b + 1], weight, theta, p, delays=delays,
                                 learn=True, attempt=1)
            out = present_diehl_cook(weight, theta, p, rates=rates[b:b + 1],
                                     seeds=seeds[b:b + 1], delays=delays, learn=True, attempt=1,
                                     backend="cpu")
            assert torch.equal(out.counts, ref.counts) and torch.equal(out.attempts, ref.attempts)
            assert (out.attempts == 1).all()             # learning: one attempt per call
            assert torch.equal(out.weight, ref.weight) and torch.equal(out.dw, ref.dw)
        assert ref.counts.sum() > 0
    else:
        ref = diehl_cook_run(rates, seeds, weight, theta, p, delays=delays, attempt=1)
        out = present_diehl_cook(weight, theta, p, rates=rates, seeds=seeds, delays=delays,
                                 attempt=1, backend="cpu")
        assert torch.equal(out.counts, ref.counts)
        assert torch.equal(out.attempts, ref.attempts)
        assert (out.attempts > 1).any(), "the test needs repeated samples"
    one = present_diehl_cook(weight, theta, p, rates=rates[:1], seeds=seeds[:1], delays=delays,
                             learn=True, backend="cpu")
    spikes = poisson_spikes(rates[:1], seeds[:1], p)
    ref_one = diehl_cook_present(spikes, weight, theta, p, delays=delays, learn=True)
    assert torch.equal(one.dw, ref_one.dw) and torch.equal(one.counts, ref_one.counts)


def test_first_presentation_offset_and_retry_switch():
    weight, theta, spikes, p, delays = setup(6, 40, 1, 100, seed=5)
    for v_offset in (0.0, p.v_init_offset):
        ref = diehl_cook_present(spikes, weight, theta, p, delays=delays, learn=True,
                                 v_offset=v_offset)
        out = present_diehl_cook(weight, theta, p, spikes=spikes, delays=delays, learn=True,
                                 v_offset=v_offset, backend="cpu")
        assert torch.equal(out.counts, ref.counts)
    rates = torch.zeros(3, 40, dtype=F64)                # nothing fires: every repeat is used
    seeds = torch.arange(3)
    p = p._replace(max_retries=5)
    out = present_diehl_cook(weight, theta, p, rates=rates, seeds=seeds, backend="cpu")
    assert out.attempts.tolist() == [5, 5, 5] and out.counts.sum() == 0
    once = present_diehl_cook(weight, theta, p, rates=rates, seeds=seeds, retry=False,
                              backend="cpu")
    assert once.attempts.tolist() == [0, 0, 0]


def test_deterministic_and_independent_of_threads():
    g = torch.Generator().manual_seed(1)
    n_e, n_in, B = 30, 784, 16
    p = P._replace(t_present=0.1)
    weight = init_weight(n_e, n_in, p, g)
    kw = {"delays": init_delays(n_e, n_in, p, g), "backend": "cpu"}
    theta = torch.full((n_e,), p.theta_init, dtype=F64)
    rates = torch.rand(B, n_in, generator=g).double() * p.input_rate
    seeds = torch.randint(0, 2**62, (B,), generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = present_diehl_cook(weight, theta, p, rates=rates, seeds=seeds, **kw)
        torch.set_num_threads(2)
        two = present_diehl_cook(weight, theta, p, rates=rates, seeds=seeds, **kw)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.counts, two.counts) and torch.equal(one.attempts, two.attempts)
    assert one.counts.sum() > 0
    # a sample's response does not depend on the other samples of the call
    alone = present_diehl_cook(weight, theta, p, rates=rates[5:6], seeds=seeds[5:6], **kw)
    assert torch.equal(alone.counts[0], one.counts[5])


def test_registered_op_has_schema_and_fake_kernel():
    weight, theta, spikes, p, delays = setup(4, 20, 2, 40, seed=0)
    consts, sizes = dck.kernel_arguments(p, 0)
    assert len(consts) == len(dck.CONSTS) and len(sizes) == len(dck.SIZES)
    for learn, B in ((False, 2), (True, 1)):
        args = (weight.t().contiguous(), theta, torch.zeros(B, 20, dtype=F64),
                torch.zeros(B, dtype=torch.int64), None, delays.t().contiguous(), consts, sizes,
                learn, True, 0.0)
        torch.library.opcheck(dck.diehl_cook_op, args,
                              test_utils=("test_schema", "test_faketensor"))


def test_reference_fallback_with_one_warning(monkeypatch, caplog):
    weight, theta, spikes, p, delays = setup(5, 30, 1, 60, seed=2)
    fused = present_diehl_cook(weight, theta, p, spikes=spikes, delays=delays, learn=True)
    monkeypatch.setattr(dck, "load_cpu_kernels", lambda: None)
    monkeypatch.setattr(dck, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="snn5.kernels.diehl_cook"):
        for _ in range(2):
            ref = present_diehl_cook(weight, theta, p, spikes=spikes, delays=delays, learn=True)
            assert torch.equal(ref.counts, fused.counts)
    assert sum("not available" in r.message for r in caplog.records) == 1
    assert torch.equal(ref.dw, fused.dw) and torch.equal(ref.weight, fused.weight)


@pytest.mark.parametrize("kwargs, message", [
    ({"theta": torch.zeros(3, dtype=F64)}, r"theta must be \[n_e=4\]"),
    ({"rates": -torch.ones(2, 10, dtype=F64)}, "rates must be finite and >= 0"),
    ({"rates": torch.ones(2, 9, dtype=F64)}, r"rates must be \[B, n_in=10\]"),
    ({"seeds": torch.zeros(2, dtype=torch.int32)}, "seeds must be int64"),
    ({"spikes": torch.zeros(5, 2, 10, dtype=torch.bool), "rates": None, "seeds": None},
     r"spikes must be \[T=40, B, n_in=10\]"),
    ({"spikes": torch.zeros(40, 2, 10, dtype=torch.bool)}, "either spikes .* or rates"),
    ({"spikes": torch.full((40, 2, 10), 0.5), "rates": None, "seeds": None}, "0 and 1 only"),
    ({"rates": None}, "pass rates"),
    ({"backend": "triton"}, "no Triton kernel"),
    ({"attempt": -1}, "attempt must be >= 0"),
    ({"delays": torch.zeros(4, 10, dtype=torch.int64)}, "delays must be uint8 steps"),
    ({"delays": torch.zeros(10, 4, dtype=torch.uint8)}, r"delays must be uint8 steps \[n_e=4"),
])
def test_bad_inputs_say_what_to_fix(kwargs, message):
    p = P._replace(t_present=40 * P.dt)
    args = {"theta": torch.full((4,), 0.02, dtype=F64), "rates": torch.ones(2, 10, dtype=F64),
            "seeds": torch.zeros(2, dtype=torch.int64), **kwargs}
    theta = args.pop("theta")
    with pytest.raises(ValueError, match=message):
        present_diehl_cook(torch.rand(4, 10), theta, p, **args)
