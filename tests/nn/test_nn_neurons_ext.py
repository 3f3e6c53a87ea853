"""Module-level behaviour of the surrogate-track neurons beyond the shared contract suite."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core import Reset
from snn5.kernels.dispatch import Backend, scan
from snn5.models import ConvSNNConfig, NeuronSpec, SpikingMLPConfig, build_model
from snn5.nn import ELLIF, GLIF, NEURONS, TCLIF, IntLIF, IntLIFCell, RefractoryLIF

NEW = ["glif", "tc_lif", "el_lif", "int_lif", "refractory_lif"]


def test_glif_gates_stay_in_the_unit_interval_whatever_the_parameters() -> None:
    m = GLIF(tau_mem=5e-3, shape=(3, 1, 1))
    assert m.leak_gate.shape == (3, 1, 1)
    for value in (-1e4, -5.0, 0.0, 5.0, 1e4):
        with torch.no_grad():
            for name in ("leak_gate", "integ_gate", "reset_gate", "conductance", "tau_raw",
                         "linear_leak", "reset_potential"):
                getattr(m, name).fill_(value)
        for g in m.gates().values():
            assert ((g >= 0) & (g <= 1)).all()
        assert (m.tau_mem > 0).all()
        z, s = m(torch.rand(6, 2, 3, 4, 4) * 3)
        assert torch.isfinite(s.v).all() and set(z.unique().tolist()) <= {0.0, 1.0}


def test_glif_gates_learn_and_keep_in_range_after_optimisation() -> None:
    torch.manual_seed(0)
    m = GLIF(tau_mem=5e-3)
    before = m.gates()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    for _ in range(5):
        z, s = m(torch.rand(8, 4, 6) * 3)
        (z.sum() + s.v.sum()).backward()
        opt.step()
        opt.zero_grad()
    after = m.gates()
    assert all(not torch.equal(before[k], after[k]) for k in before)     # every gate learned
    assert all(0 < g.item() < 1 for g in after.values())


def test_tclif_couplings_have_the_paper_signs() -> None:
    m = TCLIF(coupling_sd=0.2, coupling_ds=0.7)
    b1, b2 = m.couplings()
    assert b1.item() == pytest.approx(-0.2) and b2.item() == pytest.approx(0.7)
    with torch.no_grad():
        m.coupling_sd_raw.fill_(1e4)
        m.coupling_ds_raw.fill_(-1e4)
    b1, b2 = m.couplings()
    assert -1 <= b1.item() <= 0 and 0 <= b2.item() <= 1


def test_glif_starts_from_tau_mem_and_the_reference_inits() -> None:
    m = GLIF(tau_mem=5e-3, dt=1e-3)
    assert torch.sigmoid(m.tau_raw).item() == pytest.approx(math.exp(-0.2), rel=1e-6)
    assert m.tau_mem.item() == pytest.approx(5e-3, rel=1e-5)
    g = m.gates()
    assert g["reset_potential"].item() == pytest.approx(0.5)
    assert g["linear_leak"].item() == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="reset_potential"):
        GLIF(reset_potential=1.0)


def test_glif_module_two_steps_by_hand() -> None:
    # the paper's update with alpha = beta = gamma = g = 0.5, lam = 0.8, E_L = 0.1, V_R = 0.4
    m = GLIF(tau_mem=-1e-3 / math.log(0.8), gate_init=0.5, linear_leak=0.1,
             reset_potential=0.4, conductance=0.5, v_th=0.5)
    z, s = m(torch.tensor([[1.0], [0.2]]).view(2, 1, 1))
    k = 1 - 0.5 * (1 - 0.8)                                              # 0.9
    u1 = 0.0 - 0.5 * 0.1 + 1.0 * (1 - 0.5 * 0.5)                        # 0.7 -> spike
    u2 = k * u1 * (1 - 0.5) - 0.5 * 0.4 - 0.05 + 0.2 * 0.75              # 0.215 -> silent
    assert z.flatten().tolist() == [1.0, 0.0]
    assert s.v.item() == pytest.approx(u2, rel=1e-5) and s.z.item() == 0.0


def test_el_lif_leak_is_learned_per_time_step_not_from_the_input() -> None:
    m = ELLIF(tau_mem=5e-3, leak_steps=3)
    assert m.leak.shape == (3,) and m.reset is Reset.ZERO
    with torch.no_grad():
        m.leak.copy_(torch.tensor([0.5, 2.0, 0.1]))
    x = torch.tensor([0.6, 0.0, 0.3, 0.0]).view(4, 1, 1)
    z, s = m(x)
    # step 0: v = 0.5 * 0 + 0.6 = 0.6; step 1: v = 2.0 * 0.6 = 1.2 -> spike, hard reset to 0;
    # step 2: v = 0.1 * 0 + 0.3 = 0.3; step 3: v = 0.1 * 0.3 = 0.03 (the last leak reused)
    assert z.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert s.v.item() == pytest.approx(0.03) and s.step.item() == 2.0
    assert m.decay(0).item() == 0.5 and m.decay(7).item() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="leak_steps"):
        ELLIF(leak_steps=0)


def test_int_lif_spike_driven_eval_emits_binary_substeps_equal_to_training_counts() -> None:
    torch.manual_seed(0)
    m = IntLIF(tau_mem=2e-3, max_spike=3, v_th=0.5, spike_driven=True)
    x = torch.rand(7, 2, 5) * 3
    z, s = m.train()(x)                                                  # integer spikes
    assert z.max() > 1 and torch.equal(z, z.round())
    b, s_b = m.eval()(x)                                                 # binary sub-steps
    assert b.shape == (7 * 3, 2, 5) and set(b.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(b.unflatten(0, (7, 3)).sum(1), z) and torch.equal(s.v, s_b.v)
    assert torch.equal(m.binary(x)[0], b)
    # a linear layer fed by the sub-steps, summed per step, equals it fed by the integer spikes
    w = torch.randint(-3, 4, (5, 4)).float()
    torch.testing.assert_close((b @ w).unflatten(0, (7, 3)).sum(1), z @ w)
    # without the flag, eval keeps the integer form (a model keeps T steps)
    m.spike_driven = False
    assert torch.equal(m(x)[0], z)
    c = IntLIFCell(tau_mem=2e-3, max_spike=3, v_th=0.5, spike_driven=True).eval()
    bc, _ = c(x[0])
    assert bc.shape == (3, 2, 5) and torch.equal(bc.sum(0), z[0])


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_int_lif_rejects_bad_max_spike(bad) -> None:
    with pytest.raises(ValueError, match="max_spike"):
        IntLIF(max_spike=bad)


def test_refractory_module_rejects_negative_times() -> None:
    with pytest.raises(ValueError, match="t_ref"):
        RefractoryLIF(t_ref=-1e-3)
    with pytest.raises(ValueError, match="ref_gain"):
        RefractoryLIF(ref_gain=-1.0)


@pytest.mark.parametrize("name", NEW)
def test_auto_runs_the_reference_and_fused_backends_are_refused(name: str) -> None:
    m = NEURONS.get(name)()
    x = torch.rand(4, 2, 3) * 3
    p = m.params()
    state = m.init_state(x[0])
    ref = scan(name, x, state, p, dt=m.dt, surrogate=m.surrogate, backend=Backend.REFERENCE)
    auto = scan(name, x, state, p, dt=m.dt, surrogate=m.surrogate, backend=Backend.AUTO)
    assert torch.equal(ref[0], auto[0])
    for backend in (Backend.CPU, Backend.TRITON):
        refused = rf"no fused kernel for '{name}'.*'auto' or 'reference'"
        with pytest.raises(ValueError, match=refused):
            scan(name, x, state, p, dt=m.dt, surrogate=m.surrogate, backend=backend)
        with pytest.raises(ValueError, match="no fused kernel"):
            NEURONS.get(name)(backend=backend)(x)


def test_scan_of_an_unknown_family_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown neuron family 'hh'.*glif"):
        scan("hh", torch.rand(2, 1, 1), (torch.zeros(1, 1),), (), dt=1e-3,
             surrogate=NEURONS.get("lif")().surrogate)


# ----------------------------------------------------------------------------- YAML

SPECS = {
    "glif": {"kind": "glif", "tau_mem": 5e-3, "gate_init": 0.7, "linear_leak": 0.01},
    "tc_lif": {"kind": "tc_lif", "coupling_sd": 0.3, "coupling_ds": 0.6, "dendrite_reset": 0.3},
    "el_lif": {"kind": "el_lif", "tau_mem": 5e-3},
    "int_lif": {"kind": "int_lif", "tau_mem": 5e-3, "max_spike": 3,
                "surrogate": {"name": "rectangle", "width": 1.0}},
    "refractory_lif": {"kind": "refractory_lif", "tau_mem": 5e-3, "t_ref": 2e-3,
                       "ref_gain": 0.5, "tau_adapt": 50e-3},
}


def test_every_new_kind_has_a_spec_case() -> None:
    assert set(SPECS) == set(NEW)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("family", ["spiking_mlp", "conv_snn"])
def test_model_with_each_new_neuron_builds_from_config_and_trains_one_step(name, family) -> None:
    torch.manual_seed(0)
    cfg = {"name": family, "neuron": SPECS[name], "timesteps": 3}
    cfg.update({"hidden": [16]} if family == "spiking_mlp" else {"channels": [4], "fc_hidden": [8]})
    model = build_model(cfg, (1, 8, 8), 10)
    neurons = [m for m in model.modules() if isinstance(m, NEURONS.get(name))]
    assert neurons, f"no {name} neuron in the built model"
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_spec_round_trips_and_rejects_fields_of_other_kinds() -> None:
    for spec in SPECS.values():
        s = NeuronSpec(**spec)
        assert NeuronSpec(**s.model_dump()) == s
    with pytest.raises(ValueError, match="'lif' has no max_spike"):
        NeuronSpec(kind="lif", max_spike=3)
    with pytest.raises(ValueError, match="'glif' has no t_ref"):
        NeuronSpec(kind="glif", t_ref=1e-3)
    with pytest.raises(ValueError, match="max_spike"):
        NeuronSpec(kind="int_lif", max_spike=0)
    assert ConvSNNConfig(neuron={"kind": "tc_lif"}).neuron.kind == "tc_lif"
    assert SpikingMLPConfig(neuron={"kind": "int_lif", "reset": "zero"}).neuron.build().reset \
        is Reset.ZERO
