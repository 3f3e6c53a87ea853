"""Population and frequency (FE) encoders: definitions, shapes, and models built with them."""

from __future__ import annotations

import pytest
import torch

from snn5.core import (
    encode_frequency, encode_population, frequency_masks, population_responses, population_shape,
)
from snn5.models import ConvSNNConfig, SpikingMLPConfig, build_model
from snn5.nn import Encoding, FrequencyEncoder, PopulationEncoder, build_encoder


# ----------------------------------------------------------------------------- population

def test_population_centres_follow_bohte_and_the_centre_neuron_fires_most() -> None:
    r = population_responses(torch.tensor([0.5]), 5)                   # [1, 5]
    # centres (2i - 3)/2 * 1/3 for i = 1..5: -1/6, 1/6, 1/2, 5/6, 7/6 -> neuron 3 sits on 0.5
    assert r.argmax().item() == 2 and r[0, 2].item() == pytest.approx(1.0)
    assert torch.allclose(r[0, 1], r[0, 3]) and r[0, 1] > r[0, 0]      # symmetric fall-off
    torch.manual_seed(0)
    z = encode_population(torch.full((200, 1), 0.5), 20, neurons=5)   # [T, B, 5]
    counts = z.sum((0, 1))
    assert counts.argmax().item() == 2 and counts[2] > 1.5 * counts[1]


def test_population_value_moves_the_winner() -> None:
    x = torch.linspace(0, 1, 7).view(-1, 1)
    winners = population_responses(x, 7).argmax(-1).flatten().tolist()
    assert winners == sorted(winners) and winners[0] < winners[-1]


def test_population_shape_and_layout() -> None:
    x = torch.rand(2, 3, 4, 4)                                          # [B, C, H, W]
    z = encode_population(x, 6, neurons=4, latency=True)
    assert z.shape == (6, 2, 12, 4, 4) == (6, 2, *population_shape((3, 4, 4), 4))
    assert z.sum(0).max() <= 1                                         # latency: <= 1 spike
    r = population_responses(x, 4)                                      # [B, C, H, W, N]
    ref = torch.round((1 - r[:, 1, :, :, 2]) * 5)                      # channel 1, neuron 2
    first = z[:, :, 1 * 4 + 2].argmax(0).float()
    fired = r[:, 1, :, :, 2] > 0.1
    assert torch.equal(first[fired], ref[fired])
    enc = PopulationEncoder(6, neurons=4)
    assert enc.out_shape((3, 4, 4)) == (12, 4, 4) and enc.out_shape((64,)) == (256,)


def test_population_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="neurons >= 3"):
        population_responses(torch.rand(2, 3), 2)
    with pytest.raises(ValueError, match="hi > lo"):
        population_responses(torch.rand(2, 3), 5, lo=1.0, hi=0.0)
    with pytest.raises(ValueError, match=r"\[B, C"):
        encode_population(torch.rand(3), 4)


# ----------------------------------------------------------------------------- frequency (FE)

@pytest.mark.parametrize("h, w", [(8, 8), (7, 10)])
def test_band_masks_partition_the_spectrum_and_lowpass_masks_cover_it(h, w) -> None:
    band = frequency_masks(h, w, 4, band=True)
    assert band.shape == (4, h, w) and torch.equal(band.sum(0), torch.ones(h, w))
    assert all(band[t].sum() > 0 for t in range(4))                    # no empty band
    low = frequency_masks(h, w, 4)
    assert torch.equal(low[-1], torch.ones(h, w))                      # last step: everything
    assert all(torch.all(low[t] <= low[t + 1]) for t in range(3))      # nested, growing
    assert low[0][0, 0] == 1 and band[0][0, 0] == 1                    # DC at the first step
    torch.testing.assert_close(low.cumsum(0)[-1], low.sum(0))
    torch.testing.assert_close(band.cumsum(0), low)                    # rings add up


def test_frequency_encoding_filters_each_step() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    seq = encode_frequency(x, 4)                                        # [T, B, 1, H, W]
    assert seq.shape == (4, 2, 1, 8, 8) and seq.dtype == x.dtype
    torch.testing.assert_close(seq[-1], x)                             # full band = the image
    torch.testing.assert_close(seq[0].mean((-2, -1)), x.mean((-2, -1)))  # DC kept
    assert not torch.allclose(seq[0], x)                                # early steps differ
    bands = encode_frequency(x, 4, band=True)
    torch.testing.assert_close(bands.sum(0), x)                        # the bands sum to x
    # each band's spectrum lives only in its own ring
    masks = frequency_masks(8, 8, 4, band=True).double()
    for t in range(4):
        spec = torch.fft.fft2(bands[t])
        assert spec.abs().mul(1 - masks[t]).max() < 1e-9


def test_frequency_encoding_needs_images() -> None:
    with pytest.raises(ValueError, match="images"):
        encode_frequency(torch.rand(4, 64), 3)
    assert FrequencyEncoder(3).out_shape((1, 8, 8)) == (1, 8, 8)


# ----------------------------------------------------------------------------- options and models

def test_encoding_names_build_the_encoders() -> None:
    assert isinstance(build_encoder("population", 4), PopulationEncoder)
    assert build_encoder(Encoding.POPULATION, 4, neurons=7).neurons == 7
    assert isinstance(build_encoder("frequency", 4), FrequencyEncoder)
    with pytest.raises(ValueError, match="population, frequency"):
        Encoding.parse("gaussian")


@pytest.mark.parametrize("encoding", ["population", "frequency"])
@pytest.mark.parametrize("cfg", [SpikingMLPConfig(hidden=(8,), timesteps=3),
                                 ConvSNNConfig(channels=(4,), fc_hidden=(8,), timesteps=3)],
                         ids=["spiking_mlp", "conv_snn"])
def test_models_build_and_train_with_the_new_encodings(encoding, cfg) -> None:
    torch.manual_seed(0)
    cfg = cfg.model_copy(update={"encoding": Encoding.parse(encoding)})
    model = build_model(cfg, (1, 8, 8), 10)
    seen = []
    first = model.stem[0] if len(model.stem) else model.body[0]
    first.register_forward_hook(lambda m, a, o: seen.append(a[0].shape))
    logits = model(torch.rand(2, 1, 8, 8))
    n = 5 if encoding == "population" else 1                           # default 5 neurons
    assert seen[0][:3] == (3, 2, n)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    ann = build_model(cfg, (1, 8, 8), 10, ann=True)                    # the ANN twin: raw input
    assert ann(torch.rand(2, 1, 8, 8)).shape == (2, 10)
