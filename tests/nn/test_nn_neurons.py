"""The neuron contract, run over every registered neuron (snn5.nn.NEURONS) and surrogate.

A neuron added to the registry is picked up here automatically; the only hand-written table is
``CORE`` (its pure reference in snn5.core), and a test fails when a registered neuron lacks one.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
import torch
from torch import nn

import snn5.nn as snn
from snn5.core import (
    SURROGATES, ALIFParams, ALIFState, ATan, ELLIFParams, GLIFParams, IFParams, IFState,
    IntLIFParams, LIFParams, LIFState, LIParams, LIState, PLIFParams, RefractoryLIFParams,
    RefractoryLIFState, Reset, Surrogate, TCLIFParams, TCLIFState, alif_scan, el_lif_scan,
    glif_scan, if_scan, int_lif_scan, li_scan, lif_scan, plif_raw, plif_scan, refractory_lif_scan,
    tclif_scan,
)
from snn5.core.neurons_ext import ELLIFState, GLIFState
from snn5.nn import NEURONS, Neuron, NeuronCell

NAMES = NEURONS.names()
SPIKING = [n for n in NAMES if NEURONS.get(n).spiking]
SURROGATE_NAMES = SURROGATES.names()
RESETS = list(Reset)
T, B, F = 12, 3, 5


def cell_of(cls: type[Neuron]) -> type[NeuronCell]:
    """The Cell twin of a sequence neuron, found by name (``LIF`` -> ``LIFCell``)."""
    return getattr(snn, cls.__name__ + "Cell")


def tau_args(cls: type) -> list[str]:
    """Constructor arguments that are time constants (``tau_*``)."""
    return [p for p in inspect.signature(cls.__init__).parameters if p.startswith("tau")]


def make(name: str, *, cell: bool = False, learnable: bool = False,
         surrogate: Surrogate | None = None, **kw: Any) -> snn.NeuronBase:
    """A neuron; spiking ones take NeuronBase's options (reset, surrogate, learn_v_th, ...).

    ``learnable`` switches on every learnable option: learned threshold and surrogate width
    (PLIF's tau is always learned). Time constants default to 5 ms so that short inputs
    make the neurons fire.
    """
    cls = NEURONS.get(name)
    cls = cell_of(cls) if cell else cls
    if "tau_mem" in tau_args(cls):
        kw.setdefault("tau_mem", 5e-3)
    if cls.spiking:
        if learnable:
            kw["learn_v_th"] = True
            surrogate = surrogate or ATan()
            surrogate = type(surrogate)(**{surrogate.param: surrogate.param_value}, learnable=True)
        if surrogate is not None:
            kw["surrogate"] = surrogate
    return cls(**kw)


def drive(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Input currents that make every default neuron fire some of the time."""
    return (torch.rand(*shape) * 4.0 - 0.5).to(dtype)


def membrane(s: tuple) -> torch.Tensor:
    """The membrane that drives the spikes (``v``; the soma ``v_s`` of two-compartment cells)."""
    return s.v if "v" in s._fields else s.v_s


def spike_values(m: snn.NeuronBase) -> set[float]:
    """The values a neuron's spikes may take: {0, 1}, or 0..D for integer-spike neurons."""
    return {float(k) for k in range(m.max_spike + 1)}


def perturb_parameters(m: nn.Module) -> None:
    """Move every parameter off its initial value, so copying a state_dict means something."""
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)


# ----------------------------------------------------------------------------- registry

def test_public_names_import() -> None:
    for public in snn.__all__:
        assert hasattr(snn, public), public


def test_registry_holds_the_documented_neurons() -> None:
    spiking = ("if", "lif", "plif", "alif", "glif", "tc_lif", "el_lif", "int_lif",
               "refractory_lif")
    assert {*spiking, "li"} <= set(NAMES)
    assert NEURONS.get("li").spiking is False
    assert all(NEURONS.get(n).spiking for n in spiking)
    with pytest.raises(ValueError, match=", ".join(sorted(NAMES))):
        NEURONS.get("hodgkin_huxley")


@pytest.mark.parametrize("name", NAMES)
def test_every_neuron_has_a_cell_twin(name: str) -> None:
    cls = NEURONS.get(name)
    twin = cell_of(cls)
    assert issubclass(cls, Neuron) and issubclass(twin, NeuronCell)
    assert twin.spiking is cls.spiking
    assert cls.__name__ in repr(make(name)) and twin.__name__ in repr(make(name, cell=True))


# ----------------------------------------------------------------------------- core reference

def _logit(p: float) -> torch.Tensor:
    """``log(p / (1 - p))`` in float64, stored as float32 (as the modules store their raws)."""
    return torch.tensor(math.log(p / (1 - p)))


# name -> (constructor kwargs, core scan, core params, state type) with the same non-default
# physics written twice: once as module arguments, once as core parameters.
CORE: dict[str, tuple[dict, Any, Any, type]] = {
    "if": (dict(v_th=0.8, reset=Reset.ZERO, dt=0.5e-3),
           if_scan, IFParams(v_th=0.8, reset=Reset.ZERO), IFState),
    "lif": (dict(tau_mem=7e-3, v_th=0.9, reset="none", dt=0.5e-3),
            lif_scan, LIFParams(tau_mem=7e-3, v_th=0.9, reset=Reset.NONE), LIFState),
    "plif": (dict(tau_mem=6e-3, v_th=1.1, dt=0.5e-3), plif_scan,
             PLIFParams(tau_raw=plif_raw(6e-3, 0.5e-3), v_th=1.1), LIFState),
    "alif": (dict(tau_mem=7e-3, tau_adapt=40e-3, beta_adapt=0.7, v_th=0.9, dt=0.5e-3), alif_scan,
             ALIFParams(tau_mem=7e-3, tau_adapt=40e-3, beta_adapt=0.7, v_th=0.9), ALIFState),
    "li": (dict(tau_mem=7e-3, dt=0.5e-3), li_scan, LIParams(tau_mem=7e-3), LIState),
    "glif": (dict(tau_mem=6e-3, v_th=1.1, dt=0.5e-3, gate_init=0.3, linear_leak=0.01,
                  reset_potential=0.7, conductance=0.6), glif_scan,
             GLIFParams(tau_raw=_logit(math.exp(-0.5e-3 / 6e-3)),
                        leak_gate=_logit(0.3),
                        integ_gate=_logit(0.3),
                        reset_gate=_logit(0.3),
                        linear_leak=_logit(0.01),
                        reset_potential=_logit(0.7),
                        conductance=_logit(0.6), v_th=1.1), GLIFState),
    "tc_lif": (dict(coupling_sd=0.3, coupling_ds=0.6, dendrite_reset=0.4, v_th=1.2,
                    reset=Reset.ZERO, dt=0.5e-3), tclif_scan,
               TCLIFParams(coupling_sd_raw=torch.logit(torch.tensor(0.3)),
                           coupling_ds_raw=torch.logit(torch.tensor(0.6)), dendrite_reset=0.4,
                           v_th=1.2, reset=Reset.ZERO), TCLIFState),
    "el_lif": (dict(tau_mem=7e-3, v_th=0.9, dt=0.5e-3, leak_steps=4), el_lif_scan,
               ELLIFParams(leak=torch.full((4,), math.exp(-0.5e-3 / 7e-3)), v_th=0.9,
                           reset=Reset.ZERO), ELLIFState),
    "int_lif": (dict(tau_mem=2e-3, max_spike=3, v_th=0.5, dt=0.5e-3), int_lif_scan,
                IntLIFParams(tau_mem=2e-3, max_spike=3, v_th=0.5), LIFState),
    "refractory_lif": (dict(tau_mem=7e-3, t_ref=1e-3, ref_gain=2.0, tau_adapt=20e-3, v_th=0.9,
                            dt=0.5e-3), refractory_lif_scan,
                       RefractoryLIFParams(tau_mem=7e-3, t_ref=1e-3, ref_gain=2.0, tau_adapt=20e-3,
                                           v_th=0.9), RefractoryLIFState),
}


def test_every_registered_neuron_has_a_core_reference() -> None:
    missing = set(NAMES) - set(CORE)
    assert not missing, f"add the core reference of {missing} to CORE in this file"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cell", [False, True], ids=["seq", "cell"])
def test_module_equals_core_scan(name: str, cell: bool) -> None:
    kwargs, scan, params, state_type = CORE[name]
    m = NEURONS.get(name)(**kwargs) if not cell else cell_of(NEURONS.get(name))(**kwargs)
    x = drive(T, B, F)
    state0 = state_type(*[torch.zeros(B, F)] * len(state_type._fields))
    z_ref, s_ref = scan(x, state0, params, dt=0.5e-3)
    if cell:
        outs, s = [], None
        for xt in x:
            out, s = m(xt, s)
            outs.append(out)
        out = torch.stack(outs)
    else:
        out, s = m(x)
    if m.spiking:
        assert 0 < (out > 0).sum() < out.numel(), "the check needs spikes and silence"
    assert torch.equal(out, z_ref)
    assert type(s) is state_type and all(torch.equal(a, b) for a, b in zip(s, s_ref))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_sequence_equals_repeated_cell_bitwise(name: str, learnable: bool) -> None:
    m = make(name, learnable=learnable)
    perturb_parameters(m)
    c = make(name, cell=True, learnable=learnable)
    c.load_state_dict(m.state_dict())
    x = drive(T, B, F)
    x_m, x_c = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out, s = m(x_m)
    outs, sc = [], None
    for xt in x_c:
        o, sc = c(xt, sc)
        outs.append(o)
    assert torch.equal(out, torch.stack(outs))
    assert all(torch.equal(a, b) for a, b in zip(s, sc))
    # and the same gradients (summed over steps in another order: allclose, not bitwise)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (torch.stack(outs) * w).sum().backward()
    torch.testing.assert_close(x_m.grad, x_c.grad, rtol=1e-5, atol=1e-6)
    for (pname, p), q in zip(m.named_parameters(), c.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, pname
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- spikes

@pytest.mark.parametrize("name", SPIKING)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("sname", SURROGATE_NAMES)
def test_spikes_are_zero_or_one(name: str, reset: Reset, sname: str) -> None:
    m = make(name, reset=reset, surrogate=SURROGATES.get(sname)())
    x = drive(T, B, F).requires_grad_(True)
    z, s = m(x)
    assert z.shape == x.shape
    values = set(z.unique().tolist())
    assert {0.0, 1.0} <= values <= spike_values(m), \
        "spikes must be exactly 0 and 1 (0..max_spike for integer spikes), and 0 and 1 occur"
    assert all(torch.isfinite(t).all() for t in s)
    (z * torch.randn_like(z)).sum().backward()
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- state

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("features", [(F,), (2, 3, 4)])
def test_state_is_the_family_namedtuple_of_shape_batch_features(name: str, features) -> None:
    state_type = CORE[name][3]
    for m, x in [(make(name), drive(T, B, *features)), (make(name, cell=True), drive(B, *features))]:
        _, s = m(x)
        assert type(s) is state_type
        assert all(t.shape == (B, *features) for t in s), [t.shape for t in s]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", [1, 5, T - 1])
def test_two_chunks_with_state_equal_one_call(name: str, split: int) -> None:
    m = make(name)
    x = drive(T, B, F)
    out, s = m(x)
    out1, s1 = m(x[:split])
    out2, s2 = m(x[split:], s1)
    assert torch.equal(torch.cat([out1, out2]), out)
    assert all(torch.equal(a, b) for a, b in zip(s2, s))


@pytest.mark.parametrize("name", NAMES)
def test_no_state_leaks_between_calls(name: str) -> None:
    m = make(name)
    x, other = drive(T, B, F), drive(T, B, F) * 2
    out1, s1 = m(x)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    out2, s2 = m(x)                                        # the same input twice
    m(other)
    out3, s3 = m(x)                                        # after a different input
    m(drive(3, 1, F))
    out4, s4 = m(x)                                        # after another batch size
    for out, s in [(out2, s2), (out3, s3), (out4, s4)]:
        assert torch.equal(out1, out) and all(torch.equal(a, b) for a, b in zip(s1, s))
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())
    c = make(name, cell=True)
    o1, _ = c(x[0])
    c(other[0])
    assert torch.equal(c(x[0])[0], o1)


@pytest.mark.parametrize("name", NAMES)
def test_given_state_is_not_modified_in_place(name: str) -> None:
    m = make(name)
    x = drive(T, B, F)
    _, s = m(x)
    before = [t.clone() for t in s]
    m(x, s)
    c = make(name, cell=True)
    c(x[0], s)
    assert all(torch.equal(a, b) for a, b in zip(s, before))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_the_initial_state(name: str) -> None:
    m = make(name)
    _, s = m(drive(T, B, F))
    s = type(s)(*[t.detach().clone().requires_grad_(True) for t in s])
    out, s_new = m(drive(T, B, F), s)
    (out * torch.randn_like(out)).sum().add(membrane(s_new).sum()).backward()
    v0 = membrane(s)
    assert v0.grad is not None and torch.isfinite(v0.grad).all() and v0.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- dtype

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("learnable", [False, True], ids=["fixed", "learnable"])
def test_dtype_is_kept_and_parameters_stay_float32(name: str, dtype: torch.dtype,
                                                   learnable: bool) -> None:
    for m, x in [(make(name, learnable=learnable), drive(T, B, F, dtype=dtype)),
                 (make(name, cell=True, learnable=learnable), drive(B, F, dtype=dtype))]:
        x.requires_grad_(True)
        out, s = m(x)
        assert out.dtype == dtype and all(t.dtype == dtype for t in s)
        if m.spiking:
            assert set(out.float().unique().tolist()) <= spike_values(m)
        out2, s2 = m(x, s)                                 # streaming keeps it too
        assert out2.dtype == dtype and all(t.dtype == dtype for t in s2)
        (out2.float() * torch.randn(out2.shape)).sum().backward()
        assert x.grad.dtype == dtype
        for pname, p in m.named_parameters():
            assert p.dtype == torch.float32, pname
            assert p.grad is not None and p.grad.dtype == torch.float32, pname


# ----------------------------------------------------------------------------- gradients

GRAD_CASES = [(n, s) for n in SPIKING for s in SURROGATE_NAMES] + \
    [(n, None) for n in NAMES if n not in SPIKING]          # non-spiking: no surrogate


@pytest.mark.parametrize("name, sname", GRAD_CASES)
def test_gradients_reach_every_parameter_and_the_input(name: str, sname: str | None) -> None:
    m = make(name, learnable=True, surrogate=SURROGATES.get(sname)() if sname else None)
    if m.spiking:
        assert m.v_th_log is not None and m.surrogate_log_width is not None
    x = drive(20, 4, 8).requires_grad_(True)
    out, s = m(x)
    if m.spiking:
        rate = (out > 0).float().mean().item()
        assert 0.02 < rate < 0.98, f"drive the neuron so that it spikes, rate={rate}"
    v = membrane(s)
    loss = (out * torch.randn_like(out)).sum() + (v * torch.randn_like(v)).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    params = dict(m.named_parameters())
    if name == "plif":
        assert "tau_raw" in params
    for pname, p in params.items():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} has a zero gradient"


@pytest.mark.parametrize("name", SPIKING)
def test_learnable_options_initialise_to_the_given_values(name: str) -> None:
    m = make(name, learnable=True, surrogate=ATan(alpha=3.0), v_th=0.7)
    assert m.v_th.item() == pytest.approx(0.7, rel=1e-6)
    assert m.surrogate_width().item() == pytest.approx(3.0, rel=1e-6)
    with torch.no_grad():                                  # log-parametrised: always positive
        m.v_th_log.fill_(-30.0)
        m.surrogate_log_width.fill_(-30.0)
    assert m.v_th.item() > 0 and m.surrogate_width().item() > 0


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("name", NAMES)
def test_single_step_and_single_sample(name: str) -> None:
    m = make(name)
    x = drive(1, 1, F)
    out, s = m(x)
    assert out.shape == (1, 1, F) and all(t.shape == (1, F) for t in s)
    out_c, s_c = make(name, cell=True)(x[0])
    assert torch.equal(out_c, out[0])


@pytest.mark.parametrize("name", NAMES)
def test_image_features_equal_flat_features(name: str) -> None:
    m = make(name)
    x = drive(T, 2, 3, 4, 5)                               # [T, B, C, H, W]
    out, s = m(x)
    assert out.shape == x.shape and all(t.shape == (2, 3, 4, 5) for t in s)
    out_flat, s_flat = m(x.flatten(2))                     # [T, B, C*H*W]
    assert torch.equal(out.flatten(2), out_flat)
    assert all(torch.equal(a.flatten(1), b) for a, b in zip(s, s_flat))


@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_input_equals_contiguous(name: str) -> None:
    m = make(name)
    x_bt = drive(B, T, F)                                   # batch-major storage
    x = x_bt.transpose(0, 1)                               # [T, B, F] view, non-contiguous
    assert not x.is_contiguous()
    out, s = m(x)
    out_c, s_c = m(x.contiguous())
    assert torch.equal(out, out_c) and all(torch.equal(a, b) for a, b in zip(s, s_c))
    x_img = drive(T, B, 4, 6).transpose(2, 3)              # non-contiguous features
    assert torch.equal(m(x_img)[0], m(x_img.contiguous())[0])


def test_plif_per_channel_time_constants_broadcast() -> None:
    m = NEURONS.get("plif")(tau_mem=5e-3, shape=(3, 1, 1))
    assert m.tau_raw.shape == (3, 1, 1)
    with torch.no_grad():
        m.tau_raw.copy_(torch.tensor([-2.0, 0.0, 2.0]).view(3, 1, 1))
    x = drive(T, 2, 3, 4, 4)
    out, _ = m(x)
    for c in range(3):                                     # channel c behaves as a scalar PLIF
        single = NEURONS.get("plif")(tau_mem=5e-3)
        with torch.no_grad():
            single.tau_raw.fill_(m.tau_raw[c].item())
        assert torch.equal(out[:, :, c], single(x[:, :, c])[0])
    assert len(set(out.sum((0, 1, 3, 4)).tolist())) > 1


@pytest.mark.parametrize("tau", [1.5e-3, 2e-3, 20e-3, 0.3])
def test_plif_tau_init_round_trips_and_stays_above_dt(tau: float) -> None:
    m = NEURONS.get("plif")(tau_mem=tau, dt=1e-3)
    assert m.tau_mem.item() == pytest.approx(tau, rel=1e-6)
    for raw in (-15.0, 0.0, 15.0):
        with torch.no_grad():
            m.tau_raw.fill_(raw)
        assert m.tau_mem.item() > m.dt
    for raw in (-1e4, 1e4):                                # saturated sigmoid: tau >= dt, finite run
        with torch.no_grad():
            m.tau_raw.fill_(raw)
        assert m.tau_mem.item() >= m.dt
        z, s = m(drive(T, B, F))
        assert torch.isfinite(s.v).all() and set(z.unique().tolist()) <= spike_values(m)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(5,), ()])
def test_sequence_module_rejects_missing_time_axis(name: str, shape) -> None:
    with pytest.raises(ValueError, match=r"\[T, B.*Cell"):
        make(name)(torch.rand(shape))


@pytest.mark.parametrize("name", NAMES)
def test_empty_sequence_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"T >= 1|empty|\(0, 3, 5\)"):
        make(name)(torch.rand(0, B, F))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cell", [False, True], ids=["seq", "cell"])
def test_wrong_state_shape_or_type_is_rejected(name: str, cell: bool) -> None:
    m = make(name, cell=cell)
    x = drive(T, B, F) if not cell else drive(B, F)
    state_type = CORE[name][3]
    n = len(state_type._fields)
    with pytest.raises(ValueError, match="shape"):
        m(x, state_type(*[torch.zeros(B + 1, F)] * n))
    with pytest.raises(ValueError, match="shape"):
        m(x, state_type(*[torch.zeros(B, F, 1)] * n))
    with pytest.raises(TypeError, match=state_type.__name__):
        m(x, tuple(torch.zeros(B, F) for _ in range(n)))
    other = next(t for t in (IFState, ALIFState, LIState) if t is not state_type)
    with pytest.raises(TypeError, match=state_type.__name__):
        m(x, other(*[torch.zeros(B, F)] * len(other._fields)))
    with pytest.raises(TypeError):
        m(x, torch.zeros(B, F))


@pytest.mark.parametrize("name", NAMES)
def test_state_of_another_dtype_is_rejected_or_cast(name: str) -> None:
    """A float64 state with a float32 input must not silently turn the output into float64."""
    m = make(name)
    state_type = CORE[name][3]
    s = state_type(*[torch.zeros(B, F, dtype=torch.float64)] * len(state_type._fields))
    try:
        out, s_new = m(drive(T, B, F), s)
    except (TypeError, ValueError) as err:
        assert "dtype" in str(err)
        return
    assert out.dtype == torch.float32 and all(t.dtype == torch.float32 for t in s_new)


@pytest.mark.parametrize("name", [n for n in NAMES if tau_args(NEURONS.get(n))])
def test_time_constant_not_above_dt_asks_about_milliseconds(name: str) -> None:
    cls = NEURONS.get(name)
    for tau in tau_args(cls):
        for value in (1e-3, 0.5e-3):                       # == dt and < dt (dt = 1e-3)
            with pytest.raises(ValueError, match=rf"{tau}.*milliseconds.*20e-3"):
                cls(**{tau: value}, dt=1e-3)
        with pytest.raises(ValueError, match=tau):
            cls(**{tau: -5e-3})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0.0, -1e-3, math.nan, math.inf])
def test_non_positive_dt_is_rejected(name: str, bad: float) -> None:
    with pytest.raises(ValueError, match="dt"):
        NEURONS.get(name)(dt=bad)


@pytest.mark.parametrize("name", SPIKING)
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_threshold_is_rejected(name: str, bad: float) -> None:
    for learn in (False, True):
        with pytest.raises(ValueError, match="v_th"):
            NEURONS.get(name)(v_th=bad, learn_v_th=learn)


@pytest.mark.parametrize("name", SPIKING)
def test_string_surrogate_is_rejected_with_the_fix(name: str) -> None:
    with pytest.raises(TypeError, match=r"ATan\(alpha=2.0\)"):
        NEURONS.get(name)(surrogate="atan")


@pytest.mark.parametrize("name", SPIKING)
def test_reset_by_name_and_unknown_reset(name: str) -> None:
    assert NEURONS.get(name)(reset="zero").reset is Reset.ZERO
    with pytest.raises(ValueError, match="subtract, zero, none"):
        NEURONS.get(name)(reset="hard")
