"""Event-frame input (encoding: events): one frame per step, T from the data; the ANN twin
sees the summed frames."""

import pytest
import torch

from snn5.models import build_model
from snn5.nn.encoders import EventsEncoder


@pytest.mark.parametrize("spec", [
    {"name": "conv_snn", "channels": [4, 8], "fc_hidden": [16], "encoding": "events"},
    {"name": "spiking_mlp", "hidden": [16], "encoding": "events"},
])
def test_event_models_run_one_frame_per_step(spec):
    torch.manual_seed(0)
    x = torch.randint(0, 3, (5, 6, 2, 8, 8)).float()           # [B, T=6, P, H, W] counts
    snn = build_model(spec, (6, 2, 8, 8), 4)
    assert snn.timesteps == 6                                    # from the data, not the config
    out = snn(x)
    assert out.shape == (5, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in snn.parameters() if p.requires_grad)
    ann = build_model(spec, (6, 2, 8, 8), 4, ann=True)
    assert ann.timesteps == 1 and ann(x).shape == (5, 4)


def test_frames_reach_the_network_in_time_order():
    """The SNN's first stateless layer sees frame t at step t."""
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)   # [B=2, T=3, F=4]
    seq = EventsEncoder(3)(x)
    assert seq.shape == (3, 2, 4) and torch.equal(seq[1, 0], x[0, 1])
    with pytest.raises(ValueError, match="T=3"):
        EventsEncoder(3)(torch.zeros(2, 4, 4))


def test_ann_twin_sums_the_frames():
    spec = {"name": "spiking_mlp", "hidden": [], "encoding": "events"}
    ann = build_model(spec, (3, 4), 2, ann=True)
    x = torch.rand(2, 3, 4)
    layer = [m for m in ann.modules() if isinstance(m, torch.nn.Linear)][0]
    expected = torch.nn.functional.linear(x.sum(1), layer.weight, layer.bias)
    assert torch.allclose(ann(x), expected, atol=1e-6)


def test_static_input_with_events_encoding_is_refused():
    with pytest.raises(ValueError, match="events needs per-sample input"):
        build_model({"name": "spiking_mlp", "encoding": "events"}, (64,), 10)


def test_encoder_options_reach_the_encoder_and_unknown_ones_are_named() -> None:
    model = build_model({"name": "spiking_mlp", "encoding": "population", "timesteps": 4,
                         "encoder_options": {"neurons": 7, "latency": True}, "hidden": [8]},
                        (1, 8, 8), 3)
    assert model.encoder.neurons == 7 and model.encoder.latency
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == 7 * 64                  # the population widens the first layer
    out = model(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 3)
    with pytest.raises(ValueError, match="encoder_options width do not apply to encoding "
                                         "'population'; its options: neurons, lo, hi"):
        build_model({"name": "spiking_mlp", "encoding": "population",
                     "encoder_options": {"width": 3}}, (1, 8, 8), 3)
    with pytest.raises(ValueError, match="its options: none"):
        build_model({"name": "conv_snn", "encoder_options": {"neurons": 3}}, (1, 8, 8), 3)
