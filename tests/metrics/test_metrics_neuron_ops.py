"""Neuron updates, spikes and dense MACs counted by OpCounter against hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import snn5.nn
from snn5.metrics import COUNT_KEYS, OpCounter, count_macs
from snn5.nn import NEURONS, ConvertedNeuron, IntLIF, LIFCell, SpikeRecorder

T, B, F = 5, 3, 7


def test_tiny_snn_counts_by_hand(snn, batches):
    """conv(1->4) [analog] -> LIF(4x6x6) -> flatten -> linear(144->3) [spikes] -> LIF(3)."""
    x, _ = batches[0]
    steps, b = snn.timesteps, x.shape[0]
    with OpCounter(snn) as ops, SpikeRecorder(snn) as rec:
        snn(x)
    z1, z2 = rec.spikes["net.1"], rec.spikes["net.4"]
    hand = {
        "net.0.module": {"synops": 0, "macs": steps * b * 144 * 9,
                         "dense_macs": steps * b * 144 * 9, "neuron_updates": 0,
                         "spikes": 0},
        "net.1": {"synops": 0, "macs": 0, "dense_macs": 0,
                  "neuron_updates": steps * b * 144, "spikes": int(z1.sum())},
        "net.3": {"synops": int(z1.count_nonzero()) * 3, "macs": 0,
                  "dense_macs": steps * b * 3 * 144,    # every synapse, spikes or not
                  "neuron_updates": 0, "spikes": 0},
        "net.4": {"synops": 0, "macs": 0, "dense_macs": 0,
                  "neuron_updates": steps * b * 3, "spikes": int(z2.sum())},
    }
    assert {name: o.counts() for name, o in ops.layers.items()} == hand
    assert 0 < hand["net.1"]["spikes"] < hand["net.1"]["neuron_updates"]
    assert ops.counts_per_layer == {name: {k: pytest.approx(v / b) for k, v in c.items()}
                                    for name, c in hand.items()}
    assert list(ops.counts_per_layer["net.1"]) == list(COUNT_KEYS)
    assert ops.neurons_per_layer == {"net.1": 144, "net.4": 3}
    assert set(ops.synops_per_layer) == set(ops.macs_per_layer) == {"net.0.module", "net.3"}


def _cell_of(cls: type) -> type:
    return getattr(snn5.nn, f"{cls.__name__}Cell")


@pytest.mark.parametrize("name", NEURONS.names())
def test_every_neuron_counts_n_times_t_updates_and_its_spikes(name):
    """Sequence module and its Cell twin: N x T updates (N = B x F), spikes = sum of z."""
    cls = NEURONS.get(name)
    torch.manual_seed(0)
    x = 60.0 * torch.rand(T, B, F)                                 # [T, B, F], strong input
    neuron = cls().eval()
    with torch.no_grad(), OpCounter(neuron, infer_samples=False) as ops:
        z, _ = neuron(x)
    o = ops.layers[""]
    assert o.neuron and o.neurons == F and o.calls == 1
    assert o.neuron_updates == T * B * F
    assert o.spikes == (round(float(z.abs().sum())) if cls.spiking else 0)
    if cls.spiking:
        assert o.spikes > 0
    cell = _cell_of(cls)()
    cell.load_state_dict(neuron.state_dict())
    with torch.no_grad(), OpCounter(cell, infer_samples=False) as cell_ops:
        state = None
        for t in range(T):                                         # one step per call
            _, state = cell(x[t], state)
    c = cell_ops.layers[""]
    assert (c.neurons, c.neuron_updates, c.spikes, c.calls) == (F, T * B * F, o.spikes, T)


def test_multi_spike_neuron_counts_every_spike():
    torch.manual_seed(0)
    neuron = IntLIF(max_spike=4).train()
    x = 200.0 * torch.rand(T, B, F)                                  # [T, B, F]
    with OpCounter(neuron, infer_samples=False) as ops:
        z, _ = neuron(x)
    assert z.max() > 1                                             # integer spikes > 1
    assert ops.layers[""].spikes == int(z.sum()) > int(z.count_nonzero())


def test_spike_driven_int_lif_updates_at_every_sub_step():
    torch.manual_seed(0)
    x = 200.0 * torch.rand(T, B, F)
    trained = IntLIF(max_spike=4, spike_driven=True).train()
    with OpCounter(trained, infer_samples=False) as integer:
        trained(x)
    with OpCounter(trained.eval(), infer_samples=False) as binary:
        z, _ = trained(x)                                          # [T * D, B, F] binary
    assert z.shape == (T * 4, B, F)
    assert binary.layers[""].neuron_updates == T * 4 * B * F
    assert binary.layers[""].neurons == F
    assert binary.layers[""].spikes == integer.layers[""].spikes   # same spikes, as sub-steps


def test_converted_neuron_counts_spikes_not_values():
    """Time-folded [T*B, C] input; the output carries n * spike_value, the count is n."""
    torch.manual_seed(0)
    neuron = ConvertedNeuron(torch.tensor([0.5, 1.0, 2.0]), levels=2,
                             spike_value=torch.tensor([0.25, 3.0, 1.5]))
    neuron.timesteps = T
    x = 2.0 * torch.rand(T * B, 3)                                 # [T*B, C]
    with OpCounter(neuron, infer_samples=False) as ops:
        neuron(x)
    o = ops.layers[""]
    n = neuron.counts(x)
    assert n.max() == 2
    assert (o.neurons, o.neuron_updates, o.spikes) == (3, T * B * 3, int(n.sum()))


def test_li_readout_updates_without_spikes():
    li = NEURONS.get("li")()
    with OpCounter(li, infer_samples=False) as ops:
        li(torch.ones(T, B, F))
    assert (ops.layers[""].neuron_updates, ops.layers[""].spikes) == (T * B * F, 0)


def test_cell_stepped_in_a_model_is_counted_per_call():
    class Stepped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, F)
            self.lif = LIFCell(tau_mem=2e-3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:     # x: [B, 4]
            state, out = None, []
            for _ in range(T):
                z, state = self.lif(self.fc(x), state)
                out.append(z)
            return torch.stack(out)                              # [T, B, F]

    model = Stepped()
    with torch.no_grad(), OpCounter(model) as ops:
        z = model(torch.rand(B, 4))
    assert ops.counts_per_layer["lif"] == {"synops": 0.0, "macs": 0.0, "dense_macs": 0.0,
                                           "neuron_updates": T * F,
                                           "spikes": pytest.approx(float(z.sum()) / B)}
    assert ops.counts_per_layer["fc"]["dense_macs"] == T * F * 4


def test_dense_counter_and_count_macs_agree_on_dense_macs(snn, batches):
    x = batches[0][0]
    with torch.no_grad(), OpCounter(snn, dense=True) as dense:
        snn(x)
    assert dense.macs_per_sample == count_macs(snn, x)
    assert all(c["dense_macs"] == c["macs"] for c in dense.counts_per_layer.values())
    with torch.no_grad(), OpCounter(snn) as sparse:
        snn(x)
    assert {n: c["dense_macs"] for n, c in sparse.counts_per_layer.items()} == {
        n: c["dense_macs"] for n, c in dense.counts_per_layer.items()}
