"""BPTT trainer: exact resume, determinism, NaN/Inf diagnosis, schedule, rate penalty, the
selectable losses (ce, tet, trt), the spike-entropy regulariser, truncated BPTT and the
surrogate schedule."""

import math

import pytest
import torch
from pydantic import ValidationError

from snn5.config import config_from_dict, dump_config
from snn5.config.io import ConfigError
from snn5.data import BatchLoader, DataConfig, load_dataset
from snn5.models import build_model
from snn5.nn.schedule import SurrogateSchedule
from snn5.train.checkpoint import load_checkpoint, read_meta, unprefixed
from snn5.train.surrogate import LAST, NonFiniteError, TrainConfig, Trainer, tet_loss

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


FIXED_SURROGATE = {**MODEL, "neuron": {"kind": "plif", "surrogate": {"name": "atan"}}}


@pytest.mark.parametrize("kill_step, options", [
    (7, {}),                                     # mid-epoch (after the step-6 save)
    (10, {}),                                    # epoch end
    (7, {"loss": "tet", "tbptt_steps": 2, "spike_entropy": {"weight": 0.05}}),
    (8, {"loss": {"name": "trt", "lam": 1e-3}, "model": FIXED_SURROGATE,
         "surrogate_schedule": {"start": 1.0, "end": 6.0, "kind": "cosine"}}),
])
def test_resume_after_kill_reaches_identical_weights(data, tmp_path, kill_step, options):
    reference = make_trainer(data, tmp_path / "ref", **options)
    ref_result = reference.fit()
    with pytest.raises(Interrupt):
        make_trainer(data, tmp_path / "run", callbacks=[stop_at(kill_step)], **options).fit()
    meta = read_meta(tmp_path / "run" / LAST)
    assert meta["global_step"] < kill_step                   # the kill lost some steps
    resumed = make_trainer(data, tmp_path / "run", seed=0, **options)
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


SMALL = {"name": "spiking_mlp", "hidden": [32], "timesteps": 4, "neuron": {"v_th": 0.3}}


@pytest.mark.parametrize("options", [
    {"loss": "ce"},
    {"loss": "tet"},
    {"loss": {"name": "trt", "lam": 1e-4}},
    {"loss": "ce", "spike_entropy": {"weight": 0.05}},
    {"loss": "tet", "tbptt_steps": 2},
    {"loss": "ce", "tbptt_steps": 3},
    {"surrogate_schedule": {"start": 1.0, "end": 8.0, "kind": "exponential"}},
], ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_objective_is_selectable_and_lowers_its_loss(data, options):
    trainer = make_trainer(data, model=SMALL, epochs=4, optimizer={"lr": 1e-2}, **options)
    history = trainer.fit().history
    losses = [h["train_loss"] for h in history]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.9 * losses[0], losses
    assert history[-1]["val_accuracy"] > 0.3                 # 10 classes: chance is 0.1


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_tet_through_the_trainer_is_tet_loss_on_the_per_step_scores(data):
    trainer = make_trainer(data, model=SMALL, loss={"name": "tet", "lam": 0.1, "phi": 0.5},
                           grad_clip=None)
    model = trainer.model.train()
    x, y = data.train.x[:16], data.train.y[:16]
    logits, scores = model(x, per_step=True)
    assert scores.shape == (4, 16, 10)
    torch.testing.assert_close(scores.mean(0), logits, rtol=0, atol=0)   # mean_membrane
    expected = tet_loss(scores, y, lam=0.1, phi=0.5)
    expected.backward()
    reference = grads(model)
    model.zero_grad(set_to_none=True)
    loss, _, _ = trainer._step(x, y)
    assert loss == expected.item()
    got = grads(model)
    assert got.keys() == reference.keys()
    for name in reference:
        assert torch.equal(got[name], reference[name]), name


def test_evaluation_reports_cross_entropy_on_the_logits_whatever_the_loss(data):
    ce = make_trainer(data, model=SMALL)
    tet = make_trainer(data, model=SMALL, loss={"name": "tet", "lam": 0.5})
    assert ce.evaluate(ce.val_loader) == tet.evaluate(tet.val_loader)   # same seed, same init


def test_surrogate_schedule_is_a_function_of_the_step(data):
    seen = []

    def record(trainer):
        lif = next(m for m in trainer.model.modules() if hasattr(m, "surrogate"))
        seen.append((trainer.state.global_step - 1, lif.surrogate.alpha))

    trainer = make_trainer(data, model=SMALL, epochs=2, callbacks=[record],
                           surrogate_schedule={"start": 1.0, "end": 5.0})
    trainer.fit()
    schedule = SurrogateSchedule(1.0, 5.0, "linear")
    total = trainer.total_steps
    assert [step for step, _ in seen] == list(range(total))
    for step, alpha in seen:
        assert alpha == pytest.approx(schedule.value(step / total))
    assert seen[0][1] == 1.0 and seen[-1][1] > 4.0


def test_surrogate_schedule_refuses_learnable_widths_and_anns(data):
    with pytest.raises(ValueError, match="learn their surrogate width"):
        make_trainer(data, surrogate_schedule={"start": 1.0, "end": 4.0})   # MODEL: learnable
    ann_model = {**SMALL, "encoding": "direct"}
    torch.manual_seed(0)
    ann = build_model(ann_model, data.input_shape, data.num_classes, ann=True)
    cfg = TrainConfig(surrogate_schedule={"start": 1.0, "end": 4.0})
    with pytest.raises(ValueError, match="no spiking neurons.*remove train.surrogate_schedule"):
        Trainer(ann, cfg, BatchLoader(data.train, 32, shuffle=True, seed=0),
                BatchLoader(data.val, 200, shuffle=False), progress=False)


def test_train_config_errors_are_named():
    with pytest.raises(ValidationError, match="'ce', 'tet', 'trt'"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValidationError, match=r"loss\.tet\.decay"):
        TrainConfig(loss={"name": "tet", "decay": 0.5})          # a TRT field on TET
    with pytest.raises(ValidationError, match=r"loss\.tet\.lam"):
        TrainConfig(loss={"name": "tet", "lam": 2.0})
    with pytest.raises(ValidationError, match="tbptt_steps"):
        TrainConfig(tbptt_steps=0)
    with pytest.raises(ValidationError, match=r"surrogate_schedule\.start"):
        TrainConfig(surrogate_schedule={"start": -1.0, "end": 2.0})
    with pytest.raises(ValidationError, match=r"surrogate_schedule\.kind"):
        TrainConfig(surrogate_schedule={"start": 1.0, "end": 2.0, "kind": "step"})
    with pytest.raises(ValidationError, match=r"spike_entropy\.weight"):
        TrainConfig(spike_entropy={"weight": -1})


def test_train_options_round_trip_through_the_run_yaml():
    import yaml
    train = {"loss": {"name": "trt", "decay": 0.3}, "tbptt_steps": 4,
             "spike_entropy": {"weight": 0.01},
             "surrogate_schedule": {"start": 2.0, "end": 8.0, "kind": "cosine"}}
    cfg = config_from_dict({"train": train})
    assert cfg.train.loss.name == "trt" and cfg.train.loss.decay == 0.3
    assert cfg.train.loss.lam == 1e-5                           # the paper's default kept
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    assert config_from_dict({"train": {"loss": "tet"}}).train.loss.lam == 1e-3
    with pytest.raises(ConfigError, match="loss"):
        config_from_dict({"train": {"loss": "mse"}})


def test_unservable_objectives_are_refused_before_training(data):
    model = {**SMALL, "hidden": [16, 16], "batch_norm": True}
    with pytest.raises(ValueError, match="BatchNorm .* per-chunk statistics"):
        make_trainer(data, model=model, tbptt_steps=2)
    make_trainer(data, model=model, tbptt_steps=4)            # one chunk of T = 4: allowed

    class Plain(torch.nn.Module):                              # logits only, no readout
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x):
            return self.linear(x.flatten(1))

    cfg = TrainConfig(loss="tet")
    with pytest.raises(TypeError, match="per-step class scores.*Use train.loss: ce"):
        Trainer(Plain(), cfg, BatchLoader(data.train, 32, shuffle=True, seed=0),
                BatchLoader(data.val, 200, shuffle=False), progress=False)
