"""TTFS end to end: configs/digits_ttfs.yaml (latency input, first-spike readout) trains, and
the first-spike exit rule answers as the full run with fewer steps."""

from __future__ import annotations

from pathlib import Path

from snn5.config import load_config
from snn5.data import BatchLoader, load_dataset
from snn5.metrics import EarlyExit, ExitRule, evaluate_early_exit, predict
from snn5.nn import LatencyEncoder, Neuron
from snn5.nn.readout import FirstSpike
from snn5.runs.run import build_run_models
from snn5.train.surrogate.trainer import Trainer

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_ttfs.yaml"


def test_digits_ttfs_config_builds_a_latency_first_spike_model():
    cfg = load_config(CONFIG)
    data = load_dataset(cfg.data)
    model, _ = build_run_models(cfg, data)
    assert isinstance(model.encoder, LatencyEncoder) and isinstance(model.readout, FirstSpike)
    assert isinstance(model.body[-1], Neuron) and model.body[-1].spiking   # spikes are read
    x = data.val.x[:4]
    seq = model.encoder(x)                                              # [T, B, 1, 8, 8]
    assert seq.sum(0).max() <= 1                                        # one spike per pixel
    logits = model(x)
    assert set(logits.unique().tolist()) <= {-float(t) for t in range(model.timesteps + 1)}


def test_digits_ttfs_trains_and_exits_at_the_first_output_spike():
    cfg = load_config(CONFIG, ["train.epochs=4", "train.threads=1"])
    data = load_dataset(cfg.data)
    model, _ = build_run_models(cfg, data)
    val = BatchLoader(data.val, 500, shuffle=False)
    fit = Trainer(model, cfg.train, BatchLoader(data.train, cfg.train.batch_size, shuffle=True,
                                                seed=cfg.seed), val, seed=cfg.seed,
                  progress=False).fit()
    assert fit.history[-1]["val_accuracy"] > 0.8                        # chance is 0.1
    pred, labels = predict(model, val)
    result = evaluate_early_exit(model, val, EarlyExit(ExitRule.FIRST_SPIKE, 1))
    assert result.accuracy == float((pred == labels).double().mean())   # the full-T answer
    assert result.mean_timesteps < 0.7 * model.timesteps
