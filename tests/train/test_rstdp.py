"""The reward-trained decision layer: latency code, first-spike decisions, reward-only learning."""

from __future__ import annotations

import math

import pytest
import torch

from snn5.core.plasticity import FirstSpikeRSTDPParams
from snn5.train.plasticity.rstdp import (
    RSTDPConfig, RSTDPReadout, latency_times, rstdp_accuracy, train_rstdp,
)


def test_latency_code_orders_by_value_and_silences_zeros():
    t = latency_times(torch.tensor([[4.0, 2.0, 0.0, 1.0]]), 8)
    assert t[0, 0] == 0 and t[0, 1] == 4 and t[0, 3] == 6 and math.isinf(t[0, 2])
    with pytest.raises(ValueError, match="non-negative"):
        latency_times(torch.tensor([[-1.0, 1.0]]), 8)


def test_final_potential_decision_and_silence():
    layer = RSTDPReadout(3, 2, RSTDPConfig(n_per_class=1))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.8, 0.2, 0.2], [0.2, 0.8, 0.8]]))
    pre = latency_times(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), 15)
    winner, t = layer.decide(pre)
    assert winner.tolist() == [0, 1, -1] and t.tolist() == [14, 14, 14]
    assert layer(torch.tensor([[1.0, 0.0, 0.0]])).tolist() == [0]


def test_threshold_decision_is_the_first_crossing():
    cfg = RSTDPConfig(n_per_class=1, threshold=1.0, timesteps=4)
    layer = RSTDPReadout(2, 2, cfg)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.6, 0.6], [0.2, 0.8]]))
    # input 0 fires at step 0, input 1 at step 2: neuron 0 reaches 1.2 at step 2, neuron 1 1.0
    winner, t = layer.decide(torch.tensor([[0.0, 2.0]]))
    assert winner.tolist() == [0] and t.tolist() == [2]
    winner, _ = layer.decide(torch.tensor([[0.0, math.inf]]))        # nobody reaches 1.0
    assert winner.tolist() == [-1]


def test_only_the_winner_learns_with_the_rule_signs():
    cfg = RSTDPConfig(n_per_class=1, adaptive=False, w_mean=0.5, w_std=0.0,
                      rates=FirstSpikeRSTDPParams(0.01, 0.02, 0.03, 0.04))
    layer = RSTDPReadout(3, 2, cfg)
    with torch.no_grad():
        layer.weight[0, 0] = 0.7                                     # neuron 0 wins on input 0
    x = torch.tensor([[1.0, 0.0, 0.0]])
    before = layer.weight.detach().clone()
    train_rstdp(layer, x, torch.tensor([0]))                         # right: reward
    dw = layer.weight.detach() - before
    torch.testing.assert_close(dw, torch.tensor([[0.01, -0.02, -0.02], [0.0, 0.0, 0.0]]))
    before = layer.weight.detach().clone()
    train_rstdp(layer, x, torch.tensor([1]))                         # wrong: punishment
    dw = layer.weight.detach() - before
    torch.testing.assert_close(dw, torch.tensor([[-0.03, 0.04, 0.04], [0.0, 0.0, 0.0]]))


def test_reward_alone_learns_a_separable_task_deterministically():
    torch.manual_seed(0)
    n = 400
    y = torch.randint(0, 4, (n,))
    # class c activates features 10c..10c+9 (plus noise features shared by all)
    x = (torch.rand(n, 50) < 0.1).float()
    for c in range(4):
        x[y == c, 10 * c:10 * c + 10] = torch.rand(int((y == c).sum()), 10) + 0.5

    def run():
        torch.manual_seed(1)
        layer = RSTDPReadout(50, 4, RSTDPConfig(n_per_class=3, adapt_every=40, batch_size=4))
        start = rstdp_accuracy(layer, x, y)
        train_rstdp(layer, x, y, epochs=5, seed=2)
        return start, rstdp_accuracy(layer, x, y), layer.weight.detach().clone()

    start, end, w = run()
    assert start < 0.6 and end > 0.95
    assert w.min() >= 0.2 and w.max() <= 0.8
    assert torch.equal(w, run()[2])


def test_config_errors():
    with pytest.raises(ValueError, match="must be >= 1"):
        RSTDPConfig(n_per_class=0)
    with pytest.raises(ValueError, match="w_min < w_max"):
        RSTDPConfig(w_min=0.9, w_max=0.1)
    with pytest.raises(ValueError, match="threshold must be positive"):
        RSTDPConfig(threshold=0.0)
