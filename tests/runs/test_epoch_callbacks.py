"""train_run calls its epoch callbacks after every epoch, as the epoch ends, in every paradigm
that trains in epochs (a search prunes a plasticity trial as early as a surrogate one)."""

from __future__ import annotations

import pytest

from snn5.config import config_from_dict
from snn5.runs.run import train_run

BASE = {"seed": 0, "data": {"name": "digits", "train_subset": 120},
        "model": {"name": "spiking_mlp", "hidden": [16], "timesteps": 4}}
CASES = {
    "surrogate": {"train": {"epochs": 3, "batch_size": 60, "threads": 1}},
    "plasticity": {"paradigm": "plasticity", "model": {**BASE["model"], "encoding": "poisson"},
                   "plasticity": {"epochs": 3, "batch_size": 60, "threads": 1,
                                  "rule": {"name": "stdp", "a_plus": 0.005}}},
}


class Stop(Exception):
    pass


@pytest.mark.parametrize("paradigm", list(CASES))
def test_epoch_callbacks_see_each_epoch_and_can_stop_the_run(paradigm, tmp_path):
    cfg = config_from_dict({**BASE, **CASES[paradigm]})
    seen: list[list[int]] = []
    train_run(cfg, tmp_path / "run", progress=False,
              epoch_callbacks=[lambda h: seen.append([int(r["epoch"]) for r in h])])
    assert seen == [[0], [0, 1], [0, 1, 2]]              # called once per epoch, in order

    def stop_after_first(history):
        if len(history) == 1:
            raise Stop
    with pytest.raises(Stop):                            # e.g. optuna.TrialPruned
        train_run(cfg, tmp_path / "stopped", progress=False, epoch_callbacks=[stop_after_first])
