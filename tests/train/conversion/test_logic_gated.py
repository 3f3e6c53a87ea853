"""Logic-gated SNN: swapping ternary layers for add-only ones (module trees and fx graphs),
summing their operation counts, and the noise-robustness curve."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from snn5.nn.ternary import (
    AddOnlyConv2d, AddOnlyLinear, InputNoise, OpCounts, TernaryConv2d, TernaryLinear,
)
from snn5.train.conversion.logic_gated import (
    add_only_counts, noise_robustness, reset_counts, to_add_only_, trace_logic_gated,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class Fire(nn.Module):
    """Binary spikes H(x) (stands in for the converted neuron)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x > 0).to(x.dtype)


def spiking_net() -> nn.Sequential:
    return nn.Sequential(
        InputNoise(),
        TernaryConv2d(2, 4, 3, padding=1), Fire(),                    # [B, 4, 6, 6]
        nn.Sequential(TernaryConv2d(4, 4, 3, stride=2), Fire()),      # [B, 4, 2, 2]
        nn.Flatten(), TernaryLinear(16, 5),
    ).eval()


def spike_input() -> Tensor:
    return (torch.rand(3, 2, 6, 6) < 0.4).float()


def test_to_add_only_on_sequential_keeps_outputs_and_counts():
    net, x = spiking_net(), spike_input()
    with torch.no_grad():
        ref = net(x)
    swapped = to_add_only_(net)
    assert list(swapped) == ["1", "3.0", "5"]
    assert isinstance(net[1], AddOnlyConv2d) and isinstance(net[3][0], AddOnlyConv2d)
    assert isinstance(net[5], AddOnlyLinear) and swapped["5"] is net[5]
    assert not any(isinstance(m, (TernaryLinear, TernaryConv2d)) for m in net.modules())
    assert torch.allclose(net(x), ref, atol=1e-5)
    total = add_only_counts(net)
    assert total.additions > 0 and total == sum((m.op_counts for m in swapped.values()),
                                                OpCounts())
    assert total.multiplications == 3 * (4 * 36 + 4 * 4 + 5)       # gamma, not folded
    reset_counts(net)
    assert add_only_counts(net) == OpCounts()


def test_to_add_only_on_traced_graph_module():
    net, x = spiking_net(), spike_input()
    graph = trace_logic_gated(net)
    called = {n.target for n in graph.graph.nodes if n.op == "call_module"}
    assert {"0", "1", "3.0", "5"} <= called                          # kept whole, not inlined
    with torch.no_grad():
        ref = net(x)
    swapped = to_add_only_(graph)
    assert set(swapped) == {"1", "3.0", "5"}
    assert isinstance(graph.get_submodule("3.0"), AddOnlyConv2d)
    assert torch.allclose(graph(x), ref, atol=1e-5)                 # the graph calls the twins
    assert add_only_counts(graph).additions > 0


def test_fold_scale_swap_multiplies_nothing():
    net, x = spiking_net(), spike_input()
    swapped = to_add_only_(net, fold_scale=True)
    assert all(layer.fold_scale for layer in swapped.values())
    out = net(x)                                                     # last layer's accumulation
    assert torch.equal(out, out.round())
    counts = add_only_counts(net)
    assert counts.multiplications == 0 and counts.additions > 0


def test_default_trace_keeps_the_straight_through_gradient_but_cannot_be_swapped():
    net = nn.Sequential(TernaryLinear(6, 4), nn.ReLU(), TernaryLinear(4, 2))
    graph = torch.fx.symbolic_trace(net)                             # traces into the layers
    x = torch.randn(5, 6)
    graph(x).square().sum().backward()
    net(x).square().sum().backward()
    assert net[0].weight.grad.abs().sum() > 0
    assert torch.equal(graph.get_submodule("0").weight.grad, net[0].weight.grad)
    with pytest.raises(ValueError, match="trace_logic_gated"):
        to_add_only_(graph)


def test_filter_fn_and_input_scales():
    net = spiking_net()
    gammas = {"3.0": net[3][0].scale(), "5": net[5].scale()}
    swapped = to_add_only_(net, filter_fn=lambda m, name: name != "1",
                           input_scales={"5": 2.0})
    assert set(swapped) == {"3.0", "5"} and isinstance(net[1], TernaryConv2d)
    assert torch.isclose(net[3][0].gamma, gammas["3.0"])
    assert torch.isclose(net[5].gamma, 2.0 * gammas["5"])
    with pytest.raises(ValueError, match="not ternary layers"):
        to_add_only_(spiking_net(), input_scales={"4": 2.0})
    with pytest.raises(TypeError, match="from_ternary"):
        to_add_only_(TernaryLinear(3, 2))


def _task(n: int = 200) -> tuple[Tensor, Tensor]:
    """Class = which half of the 20 inputs is brighter; the noise blurs it."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 20, generator=g) * 0.2
    x[y == 0, :10] += 0.8
    x[y == 1, 10:] += 0.8
    return x.clamp(0, 1), y


def _predict(x: Tensor) -> Tensor:
    return torch.stack([x[:, :10].sum(1), x[:, 10:].sum(1)], dim=1)


def test_noise_robustness_is_reproducible_and_degrades():
    x, y = _task()
    fractions = (0.0, 0.3, 0.6, 0.9, 1.0)
    first = noise_robustness(_predict, x, y, fractions, seed=0, batch_size=64)
    assert first == noise_robustness(_predict, x, y, fractions, seed=0, batch_size=64)
    assert list(first) == list(fractions)
    assert first[0.0] == 1.0 and 0.3 < first[1.0] < 0.7
    assert first[0.3] >= first[0.9]
    seen: list[Tensor] = []

    def record(xb: Tensor) -> Tensor:
        seen.append(xb.clone())
        return _predict(xb)

    noise_robustness(record, x, y, (0.2, 0.5), seed=7, batch_size=200)
    low, high = (s != x for s in seen)                               # corrupted entries
    assert (low & ~high).sum() == 0 and high.sum() > low.sum() > 0   # nested masks
    noise_robustness(record, x, y, (0.2,), seed=7, batch_size=200)
    assert torch.equal(seen[-1], seen[0])


def test_noise_robustness_validates_inputs():
    x, y = _task(10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        noise_robustness(_predict, x, y, (10,))
    with pytest.raises(ValueError, match="one label per sample"):
        noise_robustness(_predict, x, y[:5])
    with pytest.raises(ValueError, match="float"):
        noise_robustness(_predict, (x * 255).long(), y)
    with pytest.raises(ValueError, match=r"logits \[batch, classes\]"):
        noise_robustness(lambda xb: xb.sum(1), x, y)
