"""`snn5 tune`: a study from the command line, and a search-space error as a user error."""

from snn5.cli.main import main

SPACE = """\
seed: 0
data: {name: digits, train_subset: 120}
model: {name: spiking_mlp, hidden: [16], timesteps: 2}
train: {epochs: 1, batch_size: 60}
search_space:
  train.optimizer.lr: {low: 1.0e-3, high: 3.0e-2, log: true}
"""


def test_tune_writes_the_study_and_prints_the_best(tmp_path, capsys):
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(SPACE)
    out = tmp_path / "study"
    assert main(["-q", "tune", str(cfg), "--out", str(out), "--n-trials", "2",
                 "--sampler", "random", "--pruner", "none"]) == 0
    printed = capsys.readouterr().out
    assert "trials: 2 complete" in printed and "best: trial" in printed
    assert (out / "best.yaml").is_file() and (out / "study.db").is_file()
    assert main(["-q", "tune", str(cfg), "--out", str(out), "--n-trials", "2"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_bad_search_space_key_is_a_named_user_error(tmp_path, capsys):
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(SPACE.replace("train.optimizer.lr:", "train.optimiser.lr:"))
    assert main(["tune", str(cfg), "--out", str(tmp_path / "s"), "--n-trials", "1"]) == 2
    err = capsys.readouterr().err
    assert "'train.optimiser.lr' is not a key" in err and "train.optimizer.lr" in err


def test_a_study_whose_trials_all_fail_stops_with_a_message(tmp_path, capsys, monkeypatch):
    from snn5.hpo import study

    def broken(cfg, run_dir, **kw):
        raise ValueError("no data")

    monkeypatch.setattr(study, "train_run", broken)
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(SPACE)
    assert main(["-q", "tune", str(cfg), "--out", str(tmp_path / "s"), "--n-trials", "1"]) == 2
    assert "2 trials failed" in capsys.readouterr().err     # more than --n-trials failures
