"""The plasticity learner: records pre/post activity of real snn5 layers, writes -dw into .grad,
applies constraints; every rule object agrees with the pure core updates it wraps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.core import plasticity as P
from snn5.nn import LIF, Sequential
from snn5.train.plasticity import (
    BCM, BCPNN, STDP, Dale, HebbianDecay, Homeostasis, Normalize, PlasticityLearner, RewardSTDP,
    TripletSTDP, WeightBounds, build_rule,
)

DT = 1e-3


def make_net(n_in=12, n_out=5, seed=0, bias=True):
    torch.manual_seed(seed)
    net = Sequential(nn.Linear(n_in, n_out, bias=bias), LIF(tau_mem=5e-3, dt=DT, v_th=0.5))
    with torch.no_grad():
        net[0].weight.uniform_(0.0, 0.6)
        if bias:
            net[0].bias.zero_()
    return net


def poisson(T=40, B=4, n=12, rate=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < rate).float()


def present(net, learner, x, reward=None):
    with torch.no_grad(), learner.recording():
        z, _ = net(x)
    learner.step(reward=reward)
    return z


@pytest.mark.parametrize("rule", [STDP(), STDP(mu=1.0, trace="nearest"), TripletSTDP(),
                                  HebbianDecay(eta=1e-3, beta=0.1)])
def test_grad_is_minus_the_rules_dw_from_the_core(rule):
    net = make_net()
    x = poisson()
    learner = PlasticityLearner(net, {"0": rule})
    z = present(net, learner, x)
    w = net[0].weight.detach()
    if isinstance(rule, STDP):
        dw = torch.zeros_like(w)
        state = P.stdp_init(x[0], z[0])
        for xt, zt in zip(x, z):
            step, state = P.stdp_step(xt, zt, state, w, rule.params(), dt=DT)
            dw += step
    elif isinstance(rule, TripletSTDP):
        dw = torch.zeros_like(w)
        state = P.triplet_init(x[0], z[0])
        for xt, zt in zip(x, z):
            step, state = P.triplet_step(xt, zt, state, P.TripletParams(), dt=DT)
            dw += step
    else:
        dw = sum(P.hebbian_decay(xt, zt, w, eta=1e-3, beta=0.1) for xt, zt in zip(x, z))
    assert z.sum() > 0 and dw.abs().sum() > 0                 # the case is not trivial
    torch.testing.assert_close(net[0].weight.grad, -dw, rtol=1e-4, atol=5e-6)   # float32 sums
    assert net[0].bias.grad is None                           # only weights are plastic


def test_sgd_with_lr_one_applies_dw_and_grads_accumulate():
    net = make_net()
    learner = PlasticityLearner(net, {"0": STDP(a_plus=0.02)})
    opt = torch.optim.SGD(learner.parameters(), lr=1.0)
    before = net[0].weight.detach().clone()
    x = poisson()
    with torch.no_grad(), learner.recording():
        net(x)
    dw = learner.step()["0"]
    learner.step()                                            # same recording twice: 2 dw
    torch.testing.assert_close(net[0].weight.grad, -2 * dw)
    opt.step()
    torch.testing.assert_close(net[0].weight.detach(), before + 2 * dw)


def test_reward_sign_and_requirement():
    x = poisson(B=3)
    grads = {}
    for r in (1.0, -1.0):
        net = make_net()
        present(net, PlasticityLearner(net, {"0": RewardSTDP(tau_e=0.2)}), x, reward=r)
        grads[r] = net[0].weight.grad
    torch.testing.assert_close(grads[1.0], -grads[-1.0])
    assert grads[1.0].abs().sum() > 0
    net = make_net()
    learner = PlasticityLearner(net, {"0": RewardSTDP()})
    assert learner.needs_reward
    with pytest.raises(ValueError, match=r"needs a reward: learner.step\(reward=...\)"):
        present(net, learner, x)
    # per-sample rewards: a zero reward removes that sample's contribution
    net_a, net_b = make_net(), make_net()
    present(net_a, PlasticityLearner(net_a, {"0": RewardSTDP(tau_e=0.2)}), x,
            reward=torch.tensor([1.0, 0.0, 0.0]))
    present(net_b, PlasticityLearner(net_b, {"0": RewardSTDP(tau_e=0.2)}), x[:, :1], reward=1.0)
    torch.testing.assert_close(net_a[0].weight.grad, net_b[0].weight.grad, rtol=1e-5, atol=1e-7)


def test_constraints_hold_after_training():
    torch.manual_seed(3)
    n_exc, n_inh = 9, 3
    net = make_net(n_in=n_exc + n_inh)
    with torch.no_grad():
        net[0].weight.mul_(P.dale_signs(n_exc, n_inh))            # a Dale-respecting start
    learner = PlasticityLearner(net, {"0": HebbianDecay(eta=0.05, beta=0.5)},
                                constraints={"0": [Dale(n_exc), WeightBounds(-1.0, 1.0)]})
    opt = torch.optim.SGD(learner.parameters(), lr=1.0)
    signs = P.dale_signs(n_exc, n_inh)
    pushed = 0
    for i in range(10):
        present(net, learner, poisson(seed=10 + i, rate=0.4))
        opt.step()
        opt.zero_grad()
        pushed += P.dale_violations(net[0].weight.detach(), signs)     # the rule alone
        learner.constrain()
        w = net[0].weight.detach()
        assert P.dale_violations(w, signs) == 0
        assert w.min() >= -1.0 and w.max() <= 1.0
    assert pushed > 0                      # Hebbian growth drives inhibitory weights positive
    assert (w[:, :n_exc] > 0).any()

    norm = PlasticityLearner(make_net(), {"0": STDP()}, constraints={"0": [Normalize(3.0)]})
    norm.constrain()
    torch.testing.assert_close(norm.synapses[0].layer.weight.sum(1), torch.full((5,), 3.0))


def test_homeostasis_moves_rates_toward_the_target():
    net = make_net()
    with torch.no_grad():
        net[0].weight.fill_(0.5)                                  # every neuron fires a lot
    learner = PlasticityLearner(net, {"0": STDP(a_plus=0.0, a_minus=0.0)},
                                constraints={"0": [Homeostasis(target=0.05, eta=0.5)]})
    rates = []
    for i in range(60):
        z = present(net, learner, poisson(seed=i))
        rates.append(z.mean().item())
        learner.constrain()
    assert rates[0] > 0.2
    assert abs(sum(rates[-10:]) / 10 - 0.05) < 0.03


def test_bcm_memory_persists_and_round_trips():
    net = make_net()
    learner = PlasticityLearner(net, {"0": BCM(eta=1e-3, tau_theta=0.1)})
    present(net, learner, poisson())
    theta1 = learner.state_dict()["0/theta"].clone()
    present(net, learner, poisson(seed=2))
    assert not torch.equal(learner.state_dict()["0/theta"], theta1)      # it kept sliding
    other = PlasticityLearner(make_net(), {"0": BCM(eta=1e-3, tau_theta=0.1)})
    other.load_state_dict({"0/theta": theta1})
    torch.testing.assert_close(other.state_dict()["0/theta"], theta1)
    with pytest.raises(KeyError, match="names no plastic layer"):
        other.load_state_dict({"9/theta": theta1})


def test_bcpnn_rule_sets_the_bcpnn_weights():
    net = make_net()
    learner = PlasticityLearner(net, {"0": BCPNN(tau_p=0.05)})
    opt = torch.optim.SGD(learner.parameters(), lr=1.0)
    present(net, learner, poisson())
    opt.step()
    mem = learner.synapses[0].memory
    target, _ = P.bcpnn_weights(P.BCPNNState(mem["p_pre"], mem["p_post"], mem["p_joint"]))
    torch.testing.assert_close(net[0].weight.detach(), target)


def test_plasticity_is_deterministic_on_cpu():
    def run():
        net = make_net(seed=7)
        learner = PlasticityLearner(net, {"0": STDP(a_plus=0.01)},
                                    constraints={"0": [WeightBounds()]})
        opt = torch.optim.SGD(learner.parameters(), lr=1.0)
        torch.manual_seed(11)
        for _ in range(5):
            present(net, learner, (torch.rand(30, 4, 12) < 0.3).float())
            opt.step()
            opt.zero_grad()
            learner.constrain()
        return net[0].weight.detach().clone()

    assert torch.equal(run(), run())


def test_clear_errors():
    net = make_net()
    with pytest.raises(ValueError, match="its linear layers are: 0"):
        PlasticityLearner(net, {"body.0": STDP()})
    with pytest.raises(TypeError, match="apply to nn.Linear"):
        PlasticityLearner(net, {"1": STDP()})
    with pytest.raises(ValueError, match="no spiking neuron follows layer '0'"):
        PlasticityLearner(Sequential(nn.Linear(3, 3), nn.Linear(3, 2), LIF()), {"0": STDP()})
    with pytest.raises(ValueError, match="without a rule: 1"):
        PlasticityLearner(net, {"0": STDP()}, constraints={"1": [WeightBounds()]})
    with pytest.raises(RuntimeError, match="learner.recording"):
        PlasticityLearner(net, {"0": STDP()}).step()
    with pytest.raises(ValueError, match="Homeostasis adapts the layer's bias"):
        learner = PlasticityLearner(make_net(bias=False), {"0": STDP()},
                                    constraints={"0": [Homeostasis(0.1)]})
        learner.constrain()
    with pytest.raises(ValueError, match="need w_min < w_max"):
        STDP(w_min=1.0, w_max=0.0)
    with pytest.raises(ValueError, match="unknown plasticity rule 'stpd'"):
        build_rule({"name": "stpd"})
    with pytest.raises(ValueError, match="unknown field"):
        build_rule({"name": "stdp", "A_plus": 0.1})
    assert build_rule({"name": "stdp", "a_plus": 0.1, "trace": "nearest"}) == STDP(
        a_plus=0.1, trace=P.TraceMode.NEAREST)
    assert build_rule({"name": "stdp", "a_plus": "5e-4"}).a_plus == 5e-4   # YAML 1.1 / --set
    with pytest.raises(ValueError, match="'a_plus' must be a number"):
        build_rule({"name": "stdp", "a_plus": "lots"})


def test_winners_only_let_the_most_active_neurons_learn():
    net = make_net(n_out=6)
    x = poisson(B=1, rate=0.5)
    learner = PlasticityLearner(net, {"0": STDP()}, winners=1)
    z = present(net, learner, x)
    counts = z.sum(0)[0]                                      # [out]
    assert (counts > 0).sum() >= 2                            # several fired; one may learn
    dw = -net[0].weight.grad
    learned = (dw.abs().sum(1) > 0).nonzero().flatten().tolist()
    assert learned == [int(counts.argmax())]
    with pytest.raises(ValueError, match="winners must be >= 1"):
        PlasticityLearner(net, {"0": STDP()}, winners=0)
