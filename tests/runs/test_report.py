"""report.md of a run: the energy table per target profile and the per-layer breakdown, checked
against a real measurement of a tiny conv SNN (no training)."""

from __future__ import annotations

import re

import pytest
import torch

from snn5.config import config_from_dict
from snn5.metrics import ENERGY_MODELS, measure
from snn5.models import build_model
from snn5.runs.report import energy_model_table, layer_energy_table, write_run_report

MODEL = {"name": "conv_snn", "channels": [4], "fc_hidden": [8], "timesteps": 3}
SHAPE, CLASSES = (1, 8, 8), 3


@pytest.fixture(scope="module")
def measured() -> dict:
    torch.manual_seed(0)
    snn = build_model(MODEL, SHAPE, CLASSES)
    ann = build_model(MODEL, SHAPE, CLASSES, ann=True)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(4, *SHAPE, generator=g), torch.randint(0, CLASSES, (4,), generator=g))
               for _ in range(2)]
    return measure(snn, batches, ann_model=ann).to_dict()


def _rows(table: str) -> list[list[str]]:
    """The body cells of a Markdown table (header and rule dropped)."""
    lines = [ln for ln in table.splitlines() if ln.startswith("|")][2:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_energy_model_table_has_every_profile_beside_the_ann(measured):
    table = energy_model_table(measured)
    rows = {r[0]: r for r in _rows(table)}
    assert set(rows) == {f"`{name}`" for name in ENERGY_MODELS.names()}
    for name, e in measured["energy_by_model"].items():
        row = rows[f"`{name}`"]
        assert row[1] == f"{e['energy_j_per_sample']:.3g}"
        assert row[2] == f"{e['ann_energy_j_per_sample']:.3g}"
        assert row[3] == f"{e['energy_j_per_sample'] / e['ann_energy_j_per_sample']:.3g}"
        assert e["constants"]["reference"] in table
    assert rows["`loihi`"][4] == "SynOp 23.6 pJ, MAC 4.6 pJ, neuron update 81 pJ, spike 1.7 pJ"
    assert rows["`gpu_dense`"][4] == "dense MAC 5.13 pJ"


def test_layer_table_rows_follow_the_counts_and_sum_to_the_total(measured):
    rows = _rows(layer_energy_table(measured))
    counts, by_model = measured["counts_per_layer"], measured["energy_by_model"]
    assert [r[0] for r in rows] == [f"`{n}`" for n in counts] + ["**total**"]
    names = list(by_model)
    for row, (layer, c) in zip(rows, counts.items()):
        assert row[3:7] == [f"{c[k]:.3g}" for k in ("synops", "macs", "dense_macs",
                                                    "neuron_updates")]
        assert row[7:] == [f"{by_model[n]['per_layer_j'][layer]:.3g}" for n in names]
        if layer in measured["firing_rate"]["per_layer"]:             # spiking layers
            assert row[1] == str(measured["neurons_per_layer"][layer])
            assert float(row[2]) == pytest.approx(c["spikes"] / c["neuron_updates"], abs=5e-4)
            assert float(row[2]) == pytest.approx(
                measured["firing_rate"]["per_layer"][layer], abs=5e-4)
        elif layer in measured["neurons_per_layer"]:                   # the LI readout
            assert row[2] == "-" and c["spikes"] == 0 and c["neuron_updates"] > 0
        else:
            assert row[1] == row[2] == ""
    assert rows[-1][7:] == [f"{by_model[n]['energy_j_per_sample']:.3g}" for n in names]
    assert len(measured["neurons_per_layer"]) == 3                # conv LIF, fc LIF, LI readout


def _full_metrics(measured: dict) -> dict:
    return {**measured, "paradigm": "surrogate", "model": "conv_snn", "seed": 0,
            "dataset": {"name": "toy", "description": "toy data", "checksum": "0" * 64},
            "epochs": 1, "steps": 2, "best_epoch": 0, "device": "cpu", "snn5_version": "0",
            "git_commit": "abc", "torch_version": "2", "train_seconds": 1.0,
            "test_accuracy": measured["accuracy"], "val_accuracy": 0.5, "parameters": 10,
            "energy_model": {"name": "45nm", "e_ac_j": 0.9e-12, "e_mac_j": 4.6e-12,
                             "reference": ENERGY_MODELS.get("45nm").reference}}


def test_run_report_holds_both_tables(measured, tmp_path):
    cfg = config_from_dict({"data": {"name": "digits"}, "model": MODEL})
    path = write_run_report(tmp_path / "report.md", cfg, _full_metrics(measured), {})
    text = path.read_text()
    assert "## Energy per target" in text and "## Per-layer breakdown" in text
    assert energy_model_table(measured) in text and layer_energy_table(measured) in text
    assert re.search(r"\| energy per sample \(`45nm`\) \| [0-9.e-]+ J \|", text)


def test_report_shows_the_sparsity_regulariser_beside_the_firing_rates(measured, tmp_path):
    rates = measured["firing_rate"]["per_layer"]
    assert rates
    target = sorted(rates.values())[0] / 2 if min(rates.values()) > 0 else 0.0
    plain = config_from_dict({"data": {"name": "digits"}, "model": MODEL})
    text = write_run_report(tmp_path / "a.md", plain, _full_metrics(measured), {}).read_text()
    assert "Sparsity regulariser" not in text and "| spiking layer | firing rate |" in text
    cfg = config_from_dict({"data": {"name": "digits"}, "model": MODEL,
                            "train": {"rate_penalty": {"weight": 0.5, "target": target}}})
    text = write_run_report(tmp_path / "b.md", cfg, _full_metrics(measured), {}).read_text()
    above = sum(v > target for v in rates.values())
    assert f"weight 0.5 x sum over layers of max(0, rate - {target:g})" in text
    assert f"{above} of {len(rates)} spiking layers fire above the target" in text
    for layer, rate in rates.items():
        assert (f"| {layer} | {rate:.4f} | {target:.4f} | {max(0.0, rate - target):.4f} |"
                in text)


def test_report_of_older_metrics_without_per_layer_counts(measured, tmp_path):
    old = {k: v for k, v in _full_metrics(measured).items()
           if k not in ("counts_per_layer", "neurons_per_layer", "energy_by_model")}
    cfg = config_from_dict({"data": {"name": "digits"}, "model": MODEL})
    text = write_run_report(tmp_path / "report.md", cfg, old, {}).read_text()
    assert "Per-layer breakdown" not in text and "Horowitz" in text


def test_energy_table_example_on_a_finished_run(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    from snn5.runs import train_run

    out = tmp_path / "run"
    cfg = config_from_dict({"seed": 0, "data": {"name": "digits", "train_subset": 100},
                            "model": {**MODEL, "channels": [2]},
                            "train": {"epochs": 1, "batch_size": 50}})
    metrics = train_run(cfg, out, progress=False)
    path = Path(__file__).resolve().parents[2] / "examples" / "energy_table.py"
    spec = importlib.util.spec_from_file_location("energy_table", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    m = example.main([str(out), "--samples", "30", "--json", str(tmp_path / "e.json")])
    printed = capsys.readouterr().out
    assert m["samples"] == 30 and (tmp_path / "e.json").is_file()
    assert energy_model_table(m) in printed and layer_energy_table(m) in printed
    report = (out / "report.md").read_text()
    assert "## Per-layer breakdown" in report
    assert set(metrics["energy_by_model"]) == set(ENERGY_MODELS.names())
