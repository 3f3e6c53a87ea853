"""BPTT trainer: exact resume, determinism, NaN/Inf diagnosis, schedule, rate penalty."""

import math

import pytest
import torch

from snn5.data import BatchLoader, DataConfig, load_dataset
from snn5.models import build_model
from snn5.train.checkpoint import load_checkpoint, read_meta, unprefixed
from snn5.train.surrogate import LAST, NonFiniteError, TrainConfig, Trainer

MODEL = {"name": "spiking_mlp", "hidden": [32], "timesteps": 3, "encoding": "poisson",
         "dropout": 0.2, "neuron": {"kind": "plif", "surrogate": {"name": "atan",
                                                                   "learnable": True}}}


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(name="digits", train_subset=160))


def make_trainer(data, tmp_path=None, *, seed=0, callbacks=(), model=MODEL, **train):
    torch.manual_seed(seed)
    model = build_model(model, data.input_shape, data.num_classes)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, "checkpoint_every_steps": 3,
                         "schedule": {"warmup_epochs": 0.5}, "optimizer": {"lr": 3e-3}, **train})
    return Trainer(model, cfg, BatchLoader(data.train, cfg.batch_size, shuffle=True, seed=seed),
                   BatchLoader(data.val, 200, shuffle=False), checkpoint_dir=tmp_path, seed=seed,
                   callbacks=callbacks, progress=False)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class Interrupt(Exception):
    pass


def stop_at(step):
    def callback(trainer):
        if trainer.state.global_step == step:
            raise Interrupt
    return callback


@pytest.mark.parametrize("kill_step", [7, 10])   # mid-epoch (after the step-6 save), epoch end
def test_resume_after_kill_reaches_identical_weights(data, tmp_path, kill_step):
    reference = make_trainer(data, tmp_path / "ref")
    ref_result = reference.fit()
    with pytest.raises(Interrupt):
        make_trainer(data, tmp_path / "run", callbacks=[stop_at(kill_step)]).fit()
    meta = read_meta(tmp_path / "run" / LAST)
    assert meta["global_step"] < kill_step                   # the kill lost some steps
    resumed = make_trainer(data, tmp_path / "run", seed=0)
    result = resumed.fit(resume=True)
    assert result.steps == ref_result.steps == 15
    assert_same_weights(weights(resumed), weights(reference))
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    ref_strip = [{k: v for k, v in h.items() if k != "seconds"} for h in ref_result.history]
    assert strip == ref_strip
    last, _ = load_checkpoint(tmp_path / "run" / LAST)
    assert_same_weights(unprefixed("model", last), weights(reference))


def test_same_seed_same_run_other_seed_other_run(data):
    a, b, c = (make_trainer(data, seed=s) for s in (1, 1, 2))    # built first, fitted after:
    ha, hb, hc = (t.fit().history for t in (a, b, c))            # no dependence on the order
    assert_same_weights(weights(a), weights(b))
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    assert [h["train_loss"] for h in ha] != [h["train_loss"] for h in hc]


def test_nan_weight_names_the_layer(data, tmp_path):
    trainer = make_trainer(data, tmp_path, model={"name": "spiking_mlp", "hidden": [16, 16]})
    trainer.cfg = trainer.cfg.model_copy(update={"checkpoint_every_steps": 2})
    linears = [(n, m) for n, m in trainer.model.named_modules() if isinstance(m, torch.nn.Linear)]
    name, target = linears[-1]               # the output layer feeds the loss directly

    def poison(t):
        if t.state.global_step == 4:
            with torch.no_grad():
                # the bias reaches every output; a NaN weight of an input that did not spike
                # does not, on the event-driven path (see EventLinear)
                target.bias[0] = float("nan")

    trainer.callbacks.append(poison)
    with pytest.raises(NonFiniteError) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite loss at epoch 1, step 5 (batch 5)" in message
    assert f"first non-finite output in layer '{name}' ({type(target).__name__})" in message
    assert read_meta(tmp_path / LAST)["global_step"] == 4          # the last good state is kept


def test_nan_in_a_hidden_layer_shows_as_nonfinite_gradients(data):
    # NaN >= v_th is False, so a NaN hidden weight silences the neuron instead of reaching the
    # loss; the gradient check catches it and names the parameters.
    trainer = make_trainer(data, model={"name": "spiking_mlp", "hidden": [16, 16]})
    hidden = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)][1]
    with torch.no_grad():
        hidden.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at epoch 1, step 1 .* in "
                                              r"[\w.]*weight"):
        trainer.fit()


def test_nan_input_and_inf_gradient_are_named(data):
    trainer = make_trainer(data, model={"name": "spiking_mlp", "hidden": [16]})
    x = data.test.x[:4].clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="input batch itself holds NaN"):
        trainer._step(x, data.test.y[:4])
    bias = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)][-1].bias
    bias.register_hook(lambda g: g * math.inf)
    with pytest.raises(NonFiniteError, match=r"non-finite gradient .* in [\w.]*bias"):
        trainer._step(data.test.x[:4], data.test.y[:4])


def test_warmup_then_cosine(data):
    trainer = make_trainer(data, epochs=4, schedule={"warmup_epochs": 1, "min_lr_ratio": 0.1})
    n = trainer.train_loader.num_batches                     # 5 per epoch, 20 steps
    lrs = [trainer.lr_at(s) for s in range(4 * n)]
    assert lrs[0] == pytest.approx(3e-3 / n) and lrs[n - 1] == pytest.approx(3e-3)
    assert lrs[n] == pytest.approx(3e-3)
    assert all(a >= b for a, b in zip(lrs[n:], lrs[n + 1:]))
    assert trainer.lr_at(4 * n) == pytest.approx(3e-4)      # min_lr_ratio * lr at the end


def test_rate_penalty_lowers_firing(data):
    model = {"name": "spiking_mlp", "hidden": [64], "timesteps": 4}
    free = make_trainer(data, model=model, epochs=4, optimizer={"lr": 1e-2})
    sparse = make_trainer(data, model=model, epochs=4, optimizer={"lr": 1e-2},
                          rate_penalty={"weight": 0.3})
    free.fit()
    sparse.fit()
    rate_free = free.evaluate(free.val_loader)[2]
    rate_sparse = sparse.evaluate(sparse.val_loader)[2]
    assert rate_free > 0.01
    assert 0 < rate_sparse < 0.5 * rate_free


def test_fp16_needs_cuda(data):
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        make_trainer(data, amp="fp16", device="cpu")


def test_bf16_autocast_on_cpu(data):
    trainer = make_trainer(data, amp="bf16", epochs=1, model={"name": "spiking_mlp", "hidden": [16]})
    dtypes = set()
    linear = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Linear)][0]
    linear.register_forward_hook(lambda m, a, o: dtypes.add(o.dtype))
    result = trainer.fit()
    assert dtypes == {torch.bfloat16}
    assert math.isfinite(result.history[-1]["train_loss"])
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_best_epoch_ties_broken_by_validation_loss(data, tmp_path, monkeypatch):
    """Equal validation accuracy: the epoch with the lower validation loss is kept (on tiny
    validation sets the first epoch to reach the top accuracy is rarely the best)."""
    trainer = make_trainer(data, tmp_path, epochs=4)
    scripted = iter([(0.9, 0.8, 0.0), (0.5, 0.9, 0.0), (0.3, 0.9, 0.0), (0.4, 0.9, 0.0)])
    monkeypatch.setattr(trainer, "evaluate", lambda batches: next(scripted))
    fit = trainer.fit()
    assert (fit.best_epoch, fit.best_val_accuracy) == (2, 0.9)
