"""Model families: built from configs, correct shapes, ANN twins, the direct-encoding stem."""

import pytest
import torch
from torch import nn

from snn5.models import MODELS, ConvSNNConfig, SpikingMLPConfig, build_model
from snn5.nn import LIF, Neuron, Sequential, SpikeCount, TimeDistributed

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("ann", [False, True])
def test_every_model_builds_runs_and_trains(name, shape, ann):
    model = build_model({"name": name}, shape, 10, ann=ann)
    x = torch.rand(3, *shape)
    logits = model(x)
    assert logits.shape == (3, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    neurons = [m for m in model.modules() if isinstance(m, Neuron) and m.spiking]
    assert (len(neurons) == 0) == ann
    assert model.timesteps == (1 if ann else MODELS.get(name).config().timesteps)


@pytest.mark.parametrize("cfg", [SpikingMLPConfig(hidden=(32, 16)),
                                 ConvSNNConfig(channels=(4, 8), fc_hidden=(16,)),
                                 ConvSNNConfig(channels=(4,), pool_before_neuron=True)])
def test_ann_twin_has_the_same_weights_shapes(cfg):
    snn = build_model(cfg, (1, 8, 8), 10)
    ann = build_model(cfg, (1, 8, 8), 10, ann=True)
    shapes = lambda m: [p.shape for n, p in m.named_parameters()        # noqa: E731
                        if n.endswith(("weight", "bias"))]
    assert shapes(snn) == shapes(ann)


def test_direct_encoding_runs_the_stem_once_with_the_same_result():
    torch.manual_seed(0)
    model = build_model(ConvSNNConfig(channels=(4, 8), fc_hidden=(16,), timesteps=3),
                        (1, 8, 8), 10).eval()
    x = torch.rand(5, 1, 8, 8)
    calls = []
    conv = model.stem[0].module
    conv.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    logits = model(x)
    assert calls == [5]                                   # [1*B] frames, not [T*B]
    # reference: every layer on the repeated [T, B, ...] sequence
    seq = x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    out, _ = Sequential(*model.stem, *model.body)(seq)
    assert torch.allclose(model.readout(out), logits, atol=1e-6)


@pytest.mark.parametrize("pool_first, expected", [(False, [nn.Conv2d, nn.BatchNorm2d, LIF, nn.MaxPool2d]),
                                                  (True, [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, LIF])])
def test_conv_block_order(pool_first, expected):
    model = build_model(ConvSNNConfig(channels=(4,), fc_hidden=(), pool_before_neuron=pool_first),
                        (1, 8, 8), 10)
    layers = [m.module if isinstance(m, TimeDistributed) else m
              for m in [*model.stem, *model.body]][:4]
    assert [type(m) for m in layers] == expected


def test_spike_count_readout_ends_in_a_spiking_layer():
    model = build_model(SpikingMLPConfig(hidden=(8,), readout="spike_count"), (1, 8, 8), 10)
    assert isinstance(model.body[-1], LIF) and isinstance(model.readout, SpikeCount)
    counts = model(torch.rand(4, 1, 8, 8))
    assert torch.equal(counts, counts.round()) and counts.max() <= model.timesteps


def test_encodings_produce_spikes_for_the_first_layer():
    for encoding in ("poisson", "latency"):
        model = build_model(SpikingMLPConfig(hidden=(8,), encoding=encoding, timesteps=4),
                            (1, 8, 8), 10)
        seen = []
        model.stem[1].register_forward_hook(lambda m, a, o: seen.append(a[0]))
        model(torch.rand(2, 1, 8, 8))
        assert seen[0].shape == (4, 2, 64) and set(seen[0].unique().tolist()) <= {0.0, 1.0}


def test_bad_inputs_are_named():
    model = build_model({"name": "spiking_mlp"}, (1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"expected input \[B, 1, 8, 8\], got \[2, 1, 28, 28\]"):
        model(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="conv_snn needs image input"):
        build_model({"name": "conv_snn"}, (64,), 10)
    with pytest.raises(ValueError, match="unknown model 'x'; valid names: conv_snn, .*spiking_mlp"):
        build_model({"name": "x"}, (1, 8, 8), 10)
