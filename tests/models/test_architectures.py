"""The spiking architectures (SEW-ResNet, Spikformer/SDSA, spiking SSM, hybrid SNN-ANN): built
from dicts through the registry, on images and event frames, ANN twins, config round trips,
short trainings, named errors, operation counts and firing rates."""

import pytest
import torch
import yaml
from torch import nn

from snn5.metrics import OpCounter, count_macs
from snn5.models import (
    MODELS, HybridConfig, SEWResNetConfig, SpikformerConfig, SpikingSSMConfig, build_model,
    parse_model_config,
)
from snn5.nn import Neuron, SpikeRecorder
from snn5.nn.attention import (
    AttentionBridge, DualTemporalChannelAttention, SpikeDrivenSelfAttention,
    SpikingSelfAttention, TemporalAttention,
)
from snn5.nn.residual import Connect, SEWBlock
from snn5.nn.ssm import AttentionSpikingSSMLayer, DiagonalSSM

TINY = {
    "sew_add": {"name": "sew_resnet", "stem_channels": 4, "channels": [4, 8], "blocks": [1, 1]},
    "sew_iand_ta": {"name": "sew_resnet", "stem_channels": 4, "channels": [4, 8],
                    "blocks": [1, 1], "connect": "iand", "temporal_attention": "ta"},
    "sew_and_dta": {"name": "sew_resnet", "stem_channels": 4, "channels": [4], "blocks": [2],
                    "connect": "and", "temporal_attention": "dta"},
    "spikformer_ssa": {"name": "spikformer", "sps_channels": [4, 8], "heads": 2, "depth": 1,
                       "mlp_ratio": 2.0},
    "spikformer_sdsa": {"name": "spikformer", "sps_channels": [4, 8], "heads": 2, "depth": 1,
                        "mlp_ratio": 2.0, "attention": "sdsa"},
    "ssm": {"name": "spiking_ssm", "d_model": 8, "state_size": 4, "layers": 1},
    "ssm_attention": {"name": "spiking_ssm", "d_model": 8, "state_size": 4, "layers": 2,
                      "layer": "attention"},
    "hybrid": {"name": "hybrid_snn_ann", "snn_channels": [4], "ann_channels": [8]},
}
INPUTS = {"image": ((1, 8, 8), "direct"), "events": ((5, 2, 8, 8), "events")}
FAMILIES = {"sew_add": SEWBlock, "sew_iand_ta": TemporalAttention,
            "sew_and_dta": DualTemporalChannelAttention, "spikformer_ssa": SpikingSelfAttention,
            "spikformer_sdsa": SpikeDrivenSelfAttention, "ssm": DiagonalSSM,
            "ssm_attention": AttentionSpikingSSMLayer, "hybrid": AttentionBridge}


def test_registry_lists_the_architectures():
    assert {"sew_resnet", "spikformer", "spiking_ssm", "hybrid_snn_ann"} <= set(MODELS.names())


@pytest.mark.parametrize("key", TINY)
@pytest.mark.parametrize("data", INPUTS)
def test_forward_backward_and_ann_twin(key, data):
    torch.manual_seed(0)
    shape, encoding = INPUTS[data]
    spec = {**TINY[key], "encoding": encoding}
    snn = build_model(spec, shape, 3)
    assert any(isinstance(m, FAMILIES[key]) for m in snn.modules())
    x = torch.rand(2, *shape)
    logits = snn(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in snn.parameters() if p.requires_grad)
    assert snn.timesteps == (5 if encoding == "events" else parse_model_config(spec).timesteps)
    ann = build_model(spec, shape, 3, ann=True)
    assert ann.timesteps == 1 and ann(x).shape == (2, 3)
    assert not any(isinstance(m, Neuron) for m in ann.modules())
    # the same weights, except the temporal attention's, which are sized by T (T = 1 here)
    per_step = (TemporalAttention, DualTemporalChannelAttention, AttentionBridge)

    def shapes(model):
        skip = tuple(n + "." for n, m in model.named_modules() if isinstance(m, per_step))
        return [p.shape for n, p in model.named_parameters() if not n.startswith(skip or "@")]
    assert shapes(snn) == shapes(ann)


@pytest.mark.parametrize("key", TINY)
def test_config_round_trips_through_yaml(key):
    cfg = parse_model_config(TINY[key])
    text = yaml.safe_dump(cfg.model_dump(mode="json"))
    again = parse_model_config(yaml.safe_load(text))
    assert again == cfg
    assert type(again) is type(cfg)


def test_typed_options_come_out_of_the_yaml_words():
    cfg = parse_model_config(TINY["sew_iand_ta"])
    assert cfg.connect is Connect.IAND and cfg.temporal_attention.value == "ta"


@pytest.mark.parametrize("key", ["sew_add", "spikformer_sdsa", "ssm_attention", "hybrid"])
def test_short_training_lowers_the_loss(key):
    torch.manual_seed(0)
    x = torch.zeros(16, 4, 2, 8, 8)                          # [B, T, P, H, W] event frames
    y = torch.arange(16) % 2
    x[y == 0, :, 0, :4] = 1.0                                # class 0: ON events at the top
    x[y == 1, :, 1, 4:] = 1.0                                # class 1: OFF events at the bottom
    x = (x * (torch.rand_like(x) < 0.7)).float()
    model = build_model({**TINY[key], "encoding": "events"}, (4, 2, 8, 8), 2)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert max(losses[-3:]) < 0.9 * losses[0], losses


@pytest.mark.parametrize("spec,field", [
    ({"name": "sew_resnet", "channels": [4, 8], "blocks": [1]}, "same length"),
    ({"name": "sew_resnet", "connect": "or"}, "connect"),
    ({"name": "sew_resnet", "temporal_attention": "se"}, "temporal_attention"),
    ({"name": "sew_resnet", "preset": "sew_resnet50"}, "preset"),
    ({"name": "spikformer", "sps_channels": [4, 6], "heads": 4}, "divisible by heads"),
    ({"name": "spikformer", "attention": "softmax"}, "attention"),
    ({"name": "spiking_ssm", "layer": "lstm"}, "layer"),
    ({"name": "spiking_ssm", "dt_min": 0.5, "dt_max": 0.1}, "swap them"),
    ({"name": "hybrid_snn_ann", "readout": "spike_count"}, "remove the field"),
    ({"name": "spikformer", "depth": 1, "unknown": 3}, "unknown"),
])
def test_bad_configs_name_the_field(spec, field):
    with pytest.raises(ValueError, match=field):
        parse_model_config(spec)


@pytest.mark.parametrize("name", ["sew_resnet", "spikformer", "hybrid_snn_ann"])
def test_flat_input_to_an_image_model_names_the_alternative(name):
    with pytest.raises(ValueError, match="spiking_ssm"):
        build_model({"name": name}, (64,), 10)


def test_sew_resnet18_preset_has_the_paper_layout_and_fields_override_it():
    cfg = SEWResNetConfig(preset="sew_resnet18")
    assert (cfg.channels, cfg.blocks, cfg.stem_kernel, cfg.stem_stride, cfg.stem_pool) == (
        (64, 128, 256, 512), (2, 2, 2, 2), 7, 2, True)
    assert SEWResNetConfig(preset="sew_resnet18", blocks=(1, 1, 1, 1)).blocks == (1, 1, 1, 1)
    model = build_model(cfg, (2, 32, 32), 10)
    blocks = [m for m in model.modules() if isinstance(m, SEWBlock)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(blocks) == 8 and len(convs) == 1 + 16 + 3       # stem, 8 x 2, 3 downsamples
    assert parse_model_config(cfg.model_dump(mode="json")) == cfg


def test_default_configs_are_the_documented_ones():
    assert SpikformerConfig().attention.value == "ssa"
    assert SpikingSSMConfig().layer.value == "ssm"
    assert HybridConfig().ann_channels == (64,)


@pytest.mark.parametrize("key", TINY)
def test_measurement_sees_firing_rates_synops_and_ann_macs(key):
    torch.manual_seed(0)
    model = build_model({**TINY[key], "encoding": "events"}, (5, 2, 8, 8), 3).eval()
    ann = build_model({**TINY[key], "encoding": "events"}, (5, 2, 8, 8), 3, ann=True)
    x = (torch.rand(2, 5, 2, 8, 8) < 0.3).float()
    with torch.no_grad(), OpCounter(model) as ops, SpikeRecorder(model) as rec:
        model(x)
    assert rec.spikes and all(set(z.unique().tolist()) <= {0.0, 1.0}
                              for z in rec.spikes.values())
    assert ops.synops_per_sample > 0
    assert count_macs(ann, x) > 0
    if key == "hybrid":                          # the ANN head is dense whatever its input
        head = [name for name, m in model.named_modules()
                if getattr(m, "dense_only", False)]
        assert head and all(ops.layers[n].macs > 0 and ops.layers[n].synops == 0 for n in head)
