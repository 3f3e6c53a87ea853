"""SpikingClassifier.stream: one step at a time, same logits as forward, samples can leave."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snn5.models import MODELS, ConvSNNConfig, SpikingMLPConfig, build_model
from snn5.models.classifier import select_samples
from snn5.core import LIFState

READOUTS = ["mean_membrane", "max_membrane", "spike_count", "first_spike"]


def conv_model(readout: str = "mean_membrane", encoding: str = "direct", timesteps: int = 4):
    torch.manual_seed(0)
    cfg = ConvSNNConfig(channels=(4, 8), fc_hidden=(16,), timesteps=timesteps, readout=readout,
                        encoding=encoding, neuron={"tau_mem": 2e-3, "v_th": 0.3})
    model = build_model(cfg, (1, 8, 8), 5).eval()
    with torch.no_grad():                                  # BN statistics that differ from 0/1
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, (nn.Linear, nn.Conv2d)):      # strong enough for output spikes
                m.weight.mul_(3.0)
    return model


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("encoding", ["direct", "latency", "poisson"])
def test_every_prefix_of_the_stream_equals_a_forward_pass(readout, encoding):
    model = conv_model(readout, encoding)
    x = torch.rand(6, 1, 8, 8)
    with torch.no_grad():
        torch.manual_seed(1)
        full, scores = model(x, per_step=True)                       # [B, C], [T, B, C]
        torch.manual_seed(1)                                         # same Poisson spikes
        steps = list(model.stream(x))
    assert len(steps) == model.timesteps and scores.amax(0).std() > 0     # outputs differ
    torch.testing.assert_close(steps[-1], full, rtol=0, atol=1e-6)
    for t, logits in enumerate(steps):                               # logits of t + 1 steps
        torch.testing.assert_close(logits, model.readout.reduce_steps(scores[:t + 1]),
                                   rtol=0, atol=1e-6)


def test_the_stream_never_computes_a_step_beyond_T():
    model = conv_model(timesteps=3)
    calls = []
    model.body[0].register_forward_hook(lambda m, a, o: calls.append(tuple(a[0].shape[:2])))
    stream = model.stream(torch.rand(4, 1, 8, 8))
    with torch.no_grad():
        out = list(stream)
    assert len(out) == 3 and calls == [(1, 4)] * 3                # one step per call, T calls
    with pytest.raises(RuntimeError, match="all T=3 steps"):
        stream.step()
    assert len(calls) == 3


def test_dropped_samples_leave_the_computation_and_the_rest_continue_unchanged():
    model = conv_model("mean_membrane", "latency", timesteps=5)
    x = torch.rand(6, 1, 8, 8)
    rows = []
    model.body[0].register_forward_hook(lambda m, a, o: rows.append(a[0].shape[1]))
    with torch.no_grad():
        full = list(model.stream(x))                                  # [B, C] per step
        stream = model.stream(x)
        stream.step()
        stream.keep(torch.tensor([True, False, True, False, False, True]))
        later = [stream.step() for _ in range(4)]
    assert stream.index.tolist() == [0, 2, 5] and stream.done
    assert rows[5:] == [6, 3, 3, 3, 3]                               # batch shrinks to 3
    for t, logits in enumerate(later, start=1):
        torch.testing.assert_close(logits, full[t][[0, 2, 5]], rtol=0, atol=1e-6)


def test_keep_everything_dropped_ends_the_stream_and_bad_masks_are_refused():
    model = conv_model()
    stream = model.stream(torch.rand(2, 1, 8, 8))
    with torch.no_grad():
        stream.step()
    with pytest.raises(ValueError, match="bool mask over the 2 active"):
        stream.keep(torch.tensor([1, 0]))
    stream.keep(torch.zeros(2, dtype=torch.bool))
    assert stream.done and list(stream) == []
    with pytest.raises(RuntimeError, match="every sample was dropped"):
        stream.step()


def test_stream_checks_the_input_shape():
    model = build_model(SpikingMLPConfig(hidden=(8,)), (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"expected input \[B, 1, 8, 8\]"):
        model.stream(torch.rand(2, 64))


def test_select_samples_walks_nested_states_and_names_a_state_without_batch_axis():
    s = (None, LIFState(torch.arange(4.0).view(4, 1)), (torch.arange(4),))
    out = select_samples(s, torch.tensor([True, False, False, True]), 4)
    assert out[0] is None and isinstance(out[1], LIFState)
    assert out[1].v.view(-1).tolist() == [0.0, 3.0] and out[2][0].tolist() == [0, 3]
    with pytest.raises(ValueError, match="no batch axis of 4"):
        select_samples((torch.zeros(3),), torch.ones(4, dtype=torch.bool), 4)


NON_CAUSAL = {"hybrid_snn_ann"}     # its AttentionBridge attends over all T steps at once


@pytest.mark.parametrize("name", sorted(set(MODELS.names()) - NON_CAUSAL))
def test_every_causal_family_streams_like_its_forward_pass(name):
    torch.manual_seed(0)
    model = build_model({"name": name}, (1, 8, 8), 10).eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        full = model(x)
        stream = model.stream(x)
        stream.step()
        stream.keep(torch.tensor([True, False, True]))
        last = [stream.step() for _ in range(model.timesteps - 1)][-1]
    torch.testing.assert_close(last, full[[0, 2]], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(NON_CAUSAL))
def test_a_family_that_mixes_time_refuses_to_stream(name):
    model = build_model({"name": name}, (1, 8, 8), 10).eval()
    with pytest.raises(ValueError, match="built for T=4 steps"):
        model.stream(torch.rand(2, 1, 8, 8)).step()
