"""Early exit: rules, per-sample exit inside a batch, never past T, calibration."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from snn5.metrics import (
    EarlyExit, ExitRule, calibrate_exit, evaluate_early_exit, exit_thresholds, logit_trace,
    predict_early_exit, simulate_exit,
)
from snn5.models import ConvSNNConfig, build_model

T = 6


def snn(readout: str = "mean_membrane", encoding: str = "direct", timesteps: int = T):
    """A small conv SNN whose layers fire (outputs differ between samples and steps)."""
    torch.manual_seed(0)
    cfg = ConvSNNConfig(channels=(4, 8), fc_hidden=(16,), timesteps=timesteps, readout=readout,
                        encoding=encoding, neuron={"tau_mem": 2e-3, "v_th": 0.3})
    model = build_model(cfg, (1, 8, 8), 5).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(3.0)
    return model


def batches(n: int = 3, size: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(size, 1, 8, 8, generator=g), torch.randint(0, 5, (size,), generator=g))
            for _ in range(n)]


POLICIES = [("mean_membrane", EarlyExit(ExitRule.MAX_PROB, 0.3)),
            ("mean_membrane", EarlyExit("margin", 0.05)),
            ("max_membrane", EarlyExit(ExitRule.STABLE, 2)),
            ("first_spike", EarlyExit(ExitRule.FIRST_SPIKE, 1))]


class StepLimit(nn.Module):
    """Identity that counts calls and rows, and fails on a call beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.calls, self.rows = limit, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:        # x: [1, B, ...] one step
        self.calls += 1
        self.rows += x.shape[0] * x.shape[1]
        if self.calls > self.limit:
            raise AssertionError(f"step {self.calls} computed; the model has {self.limit}")
        return x


def with_counter(model):
    counter = StepLimit(model.timesteps)
    model.body.insert(0, counter)
    return model, counter


def test_early_exit_never_computes_a_step_past_T():
    model, counter = with_counter(snn())
    x, _ = batches(1)[0]
    pred, steps = predict_early_exit(model, x, EarlyExit(ExitRule.MAX_PROB, math.inf))
    assert counter.calls == T and steps.tolist() == [T] * len(x)     # all stop at T, none after
    counter.calls = -1                                               # forward: one [T, B] call
    torch.testing.assert_close(pred, model(x).argmax(-1), rtol=0, atol=0)


@pytest.mark.parametrize("readout, policy", POLICIES)
def test_batch_exits_equal_a_per_sample_loop_and_compute_shrinks(readout, policy):
    model, counter = with_counter(snn(readout))
    x, _ = batches(1, size=12)[0]
    pred, steps = predict_early_exit(model, x, policy)
    assert counter.rows == int(steps.sum())            # every row computed is a step a sample ran
    assert 1 < len(set(steps.tolist())), "the policy should exit samples at different steps"
    for b in range(len(x)):
        counter.calls = 0
        p1, s1 = predict_early_exit(model, x[b:b + 1], policy)
        assert (p1.item(), s1.item()) == (pred[b].item(), steps[b].item())


@pytest.mark.parametrize("readout, policy", POLICIES)
def test_simulation_on_the_trace_equals_the_streamed_run(readout, policy):
    model = snn(readout)
    data = batches()
    trace, labels = logit_trace(model, data)
    assert trace.shape == (T, 24, 5)
    torch.testing.assert_close(trace[-1], torch.cat([model(x) for x, _ in data]), rtol=0,
                               atol=1e-6)
    streamed = evaluate_early_exit(model, data, policy)
    assert simulate_exit(trace, labels, policy) == streamed
    assert sum(streamed.exit_histogram) == streamed.samples == 24
    mean = sum((t + 1) * n for t, n in enumerate(streamed.exit_histogram)) / 24
    assert streamed.mean_timesteps == pytest.approx(mean)
    assert streamed.speedup == pytest.approx(T / mean)


def test_first_spike_rule_exits_with_the_full_run_answer():
    model = snn("first_spike")
    data = batches()
    full = torch.cat([model(x).argmax(-1) for x, _ in data])
    result = evaluate_early_exit(model, data, EarlyExit(ExitRule.FIRST_SPIKE, 1))
    preds = torch.cat([predict_early_exit(model, x, EarlyExit("first_spike", 1))[0]
                       for x, _ in data])
    assert torch.equal(preds, full) and result.mean_timesteps < T
    with pytest.raises(ValueError, match="first-spike readout"):
        evaluate_early_exit(snn(), data, EarlyExit(ExitRule.FIRST_SPIKE, 1))


def test_rules_on_a_hand_made_trace():
    # one sample, C = 3, T = 4: predictions 0, 1, 1, 1
    trace = torch.tensor([[[2.0, 1.0, 0.0]], [[0.0, 1.5, 1.0]], [[0.0, 3.0, 0.0]],
                          [[0.0, 4.0, 0.0]]])
    y = torch.tensor([1])
    steps = lambda rule, th: simulate_exit(trace, y, EarlyExit(rule, th)).mean_timesteps  # noqa
    assert steps("margin", 1.0) == 1 and steps("margin", 1.5) == 3 and steps("margin", 9) == 4
    assert steps("stable", 1) == 1 and steps("stable", 2) == 3 and steps("stable", 3) == 4
    p = torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64).softmax(-1).max().item()
    assert steps("max_prob", p) == 3 and steps("max_prob", 0.0) == 1
    assert simulate_exit(trace, y, EarlyExit("stable", 2)).accuracy == 1.0
    assert simulate_exit(trace, y, EarlyExit("margin", 1.0)).accuracy == 0.0
    first = torch.tensor([[[-1.0, -1.0]], [[-1.0, -2.0]], [[-1.0, -3.0]]])  # class 0 fires at t=1
    assert [simulate_exit(first, y[:1] * 0, EarlyExit("first_spike", k)).mean_timesteps
            for k in (1, 2)] == [2, 3]


def test_calibration_picks_the_fastest_threshold_within_the_tolerance():
    # 100 samples, T = 3: at step 1 the margin is 2 for 90 right answers, 1 for 5 wrong and
    # 5 right ones; every answer is right from step 2.
    N = 100
    labels = torch.zeros(N, dtype=torch.long)
    trace = torch.zeros(3, N, 2)
    trace[:, :, 0] = 2.0                                  # right with margin 2
    trace[0, 90:95] = torch.tensor([0.0, 1.0])            # wrong at step 1, margin 1
    trace[0, 95:] = torch.tensor([1.0, 0.0])              # right at step 1, margin 1
    loose = calibrate_exit(trace, labels, "margin", tolerance=0.05)
    assert loose.full_accuracy == 1.0 and loose.policy.threshold <= 1.0
    assert loose.result.mean_timesteps == 1.0 and loose.result.accuracy == 0.95
    tight = calibrate_exit(trace, labels, ExitRule.MARGIN, tolerance=0.0)
    assert 1.0 < tight.policy.threshold <= 2.0 and tight.result.accuracy == 1.0
    assert tight.result.mean_timesteps == pytest.approx(1.1)          # 10 wait one more step
    assert tight.sweep[-1].policy.threshold == math.inf
    target = calibrate_exit(trace, labels, "margin", target=0.97)
    assert target.result.accuracy >= 0.97 and target.result == tight.result
    with pytest.raises(ValueError, match="no threshold .* reaches accuracy 1.0100"):
        calibrate_exit(trace, labels, "margin", target=1.01)


def test_thresholds_and_policies_are_checked():
    trace = torch.randn(4, 10, 3)
    assert exit_thresholds(trace, "stable") == [1.0, 2.0, 3.0, 4.0, math.inf]
    grid = exit_thresholds(trace, ExitRule.MAX_PROB, levels=11)
    assert grid[-1] == math.inf and len(grid) == 12 and grid == sorted(grid)
    with pytest.raises(ValueError, match="stable' must be >= 1"):
        EarlyExit(ExitRule.STABLE, 0)
    with pytest.raises(ValueError, match="margin' must be >= 0"):
        EarlyExit("margin", float("nan"))
    with pytest.raises(ValueError, match="max_prob, margin, stable, first_spike"):
        EarlyExit("entropy", 0.5)
    with pytest.raises(ValueError, match="tolerance=0.002"):
        calibrate_exit(trace, torch.zeros(10, dtype=torch.long), "margin", tolerance=2)
    assert EarlyExit("margin", math.inf).to_dict() == {"rule": "margin", "threshold": "inf"}
