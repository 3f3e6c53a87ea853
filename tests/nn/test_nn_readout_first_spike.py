"""The time-to-first-spike readout: scores, silent neurons, gradient, prefixes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from snn5.nn import LIF, Readout, build_readout, readout_is_spiking
from snn5.nn.readout import FirstSpike, first_spike_time


def spikes(rows: list[list[int]]) -> torch.Tensor:
    """``rows[c]`` = the 0/1 train of class c over T steps -> ``[T, 1, C]``."""
    return torch.tensor(rows, dtype=torch.float32).T.unsqueeze(1)


def test_first_spike_time_is_the_first_step_and_T_when_silent() -> None:
    z = spikes([[0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])   # T = 4, C = 4
    assert first_spike_time(z).tolist() == [[2.0, 0.0, 4.0, 3.0]]
    assert FirstSpike()(z).tolist() == [[-2.0, -0.0, -4.0, -3.0]]
    assert FirstSpike()(z).argmax(-1).item() == 1                  # the earliest neuron wins


def test_firing_at_the_last_step_beats_silence_and_ties_go_to_the_lower_class() -> None:
    z = spikes([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0]])
    assert FirstSpike()(z).argmax(-1).item() == 2                  # classes 2 and 3 tie at t=1
    late = spikes([[0, 0, 0], [0, 0, 1]])
    assert FirstSpike()(late).argmax(-1).item() == 1


def test_gradient_is_the_sign_estimator_at_the_first_spike() -> None:
    """snnTorch's FirstSpike backward: d t_first / d z = -1 at the first spike (or at the
    last step for a silent neuron), 0 elsewhere."""
    z = spikes([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]]).requires_grad_()
    w = torch.tensor([1.0, 2.0, 3.0])
    (first_spike_time(z) * w).sum().backward()
    expected = torch.zeros(4, 1, 3)
    expected[1, 0, 0], expected[3, 0, 1], expected[0, 0, 2] = -1.0, -2.0, -3.0
    assert torch.equal(z.grad, expected)


def test_cross_entropy_gradient_makes_the_target_fire_earlier_through_the_surrogate() -> None:
    """One gradient step on CE(first-spike scores) through a LIF output layer moves the target
    neuron's first spike earlier."""
    torch.manual_seed(0)
    x = torch.full((6, 1, 2), 0.6)                                    # [T, B, 2] currents
    gain = torch.tensor([1.0, 1.0], requires_grad=True)
    lif = LIF(2e-3, v_th=0.5)
    readout = FirstSpike()
    y = torch.tensor([1])
    times = []
    for _ in range(20):
        z, _ = lif(x * gain)
        logits = readout(z)
        times.append(first_spike_time(z.detach())[0].tolist())
        loss = F.cross_entropy(logits, y)
        loss.backward()
        with torch.no_grad():
            gain -= 0.5 * gain.grad
            gain.grad = None
    assert times[0][0] == times[0][1]                                 # start tied
    assert times[-1][1] < times[0][1] and times[-1][1] < times[-1][0]  # target fires first


def test_every_prefix_after_the_first_output_spike_gives_the_final_decision() -> None:
    z = (torch.rand(10, 50, 6) > 0.9).float()                        # [T, B, C]
    readout = FirstSpike()
    final = readout(z).argmax(-1)
    for t in range(10):
        decided = z[:t + 1].amax(dim=(0, 2)) > 0                      # [B] any output fired
        prefix = readout.reduce_steps(z[:t + 1]).argmax(-1)
        assert torch.equal(prefix[decided], final[decided])
    assert not torch.equal(readout.reduce_steps(z[:1]).argmax(-1), final)   # not trivially


def test_build_and_parse_first_spike_readout() -> None:
    assert isinstance(build_readout("first_spike", tau_mem=20e-3, dt=1e-3), FirstSpike)
    assert readout_is_spiking(Readout.FIRST_SPIKE)
    with pytest.raises(ValueError, match="first_spike"):
        Readout.parse("ttfs")
    with pytest.raises(ValueError, match=r"T >= 1"):
        first_spike_time(torch.zeros(0, 2, 3))
