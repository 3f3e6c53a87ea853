"""Diehl & Cook trainer: the learner contract (-dw into .grad, SGD, the kernel's weights, theta),
determinism, exact resume after a kill, the retry rule (weak presentations keep their changes),
labelling and testing, config errors, MNIST order."""

import json

import pytest
import torch

from snn5.core.diehl_cook import normalize_weight
from snn5.kernels import load_cpu_kernels
from snn5.models.diehl_cook import DiehlCook
from snn5.train.checkpoint import read_meta
from snn5.train.plasticity.diehl_cook import (
    LAST, METRICS, DiehlCookConfig, DiehlCookData, DiehlCookTrainer, load_mnist_data,
)

BASE = {"n_e": 10, "samples": 14, "label_samples": 12, "test_samples": 8,
        "running_interval": 4, "checkpoint_every": 5, "physics": {"t_present": 0.1}}


def synthetic(n_train=16, n_test=8, seed=0) -> DiehlCookData:
    """Four classes of 28x28 blobs (about 15 % of the pixels on), with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, 784, generator=g) < 0.15).float()

    def make(n):
        y = torch.arange(n) % 4
        x = protos[y] * (0.5 + 0.5 * torch.rand(n, 784, generator=g))
        return x, y

    (train_x, train_y), (test_x, test_y) = make(n_train), make(n_test)
    return DiehlCookData(train_x, train_y, test_x, test_y, name="synthetic")


def trainer(tmp_path=None, data=None, callbacks=(), **cfg):
    return DiehlCookTrainer(DiehlCookConfig(**{**BASE, **cfg}), data or synthetic(),
                            out=tmp_path, progress=False, callbacks=callbacks)


def weights(t):
    return {k: v.clone() for k, v in t.model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_one_sample_applies_minus_dw_through_sgd_and_keeps_weak_presentations():
    t = trainer()
    model, p = t.model, t.params
    w0 = model.weight.detach().clone()
    theta0 = model.theta.clone()
    rates = model.rates(t.data.train_x[:1])
    seed = torch.tensor([123])
    counts = t._learn(rates, seed)
    assert t.state.presentations >= 2, "the test needs a repeated (weak) presentation"
    # replay by hand: every presentation, weak ones included, normalises, presents (the weights
    # change during it), keeps the weights it ends with, adapts theta
    w, theta, weak_learned = w0, theta0, False
    for a in range(t.state.presentations):
        probe = DiehlCook(10, 784, p)
        with torch.no_grad():
            probe.weight.copy_(normalize_weight(w, p))
            probe.theta.copy_(theta)
            probe.delays.copy_(model.delays)
        res = probe.present(rates, seed, learn=True, attempt=a,
                            v_offset=p.v_init_offset if a == 0 else 0.0)
        assert torch.equal(res.dw, res.weight - probe.weight.detach())
        if a < t.state.presentations - 1:                # weak (repeated) presentations
            assert int(res.counts.sum()) < p.min_spikes
            weak_learned |= bool((res.dw != 0).any())
        w = res.weight
        theta = (theta + res.dtheta) * t.consts.theta_rest_decay
    assert torch.equal(model.weight.detach(), w)
    assert torch.equal(model.theta, theta)
    assert torch.equal(model.weight.grad, -res.dw)       # the learner contract
    assert torch.equal(counts, res.counts[0]) and int(counts.sum()) >= p.min_spikes
    assert weak_learned, "the test needs a weak presentation that changed weights"


def test_fit_is_deterministic_and_reports_metrics(tmp_path):
    a = trainer(tmp_path / "a")
    metrics = a.fit()
    b = trainer()
    assert b.fit()["test_accuracy"] == metrics["test_accuracy"]
    assert_same(weights(a), weights(b))
    assert (a.model.assignments >= 0).all()
    for key in ("test_accuracy", "test_accuracy_running_labels", "train_seconds",
                "label_seconds", "test_seconds", "spikes_per_sample_train", "retries_train",
                "seed", "n_e", "samples"):
        assert key in metrics, key
    assert len(metrics["running_block_accuracy"]) == 3            # 14 samples, blocks of 4
    assert metrics["spikes_per_sample_train"] >= 5
    assert json.loads((tmp_path / "a" / METRICS).read_text())["n_e"] == 10
    c = trainer(seed=1)
    c.fit()
    assert not torch.equal(c.model.weight, a.model.weight)


class Interrupt(Exception):
    pass


def stop_at(seen):
    def callback(t):
        if t.state.seen == seen:
            raise Interrupt
    return callback


@pytest.mark.parametrize("kill", [7, 14, 20])        # mid-epoch, epoch end, second epoch
def test_resume_after_kill_reaches_identical_weights(tmp_path, kill):
    reference = trainer(epochs=2)
    ref = reference.fit()
    with pytest.raises(Interrupt):
        trainer(tmp_path, epochs=2, callbacks=[stop_at(kill)]).fit()
    assert read_meta(tmp_path / LAST)["seen"] < kill
    resumed = trainer(tmp_path, epochs=2)
    out = resumed.fit(resume=True)
    assert_same(weights(resumed), weights(reference))
    assert out["running_block_accuracy"] == ref["running_block_accuracy"]
    assert out["presentations_train"] == ref["presentations_train"]
    with pytest.raises(ValueError, match="n_e: 10 there, 12 here"):
        trainer(tmp_path, epochs=2, n_e=12).fit(resume=True)


def test_weak_samples_are_repeated_at_higher_intensity():
    data = synthetic()
    data.train_x[3] = 0.0                                 # a blank image can never respond
    t = trainer(data=data, samples=5, physics={"t_present": 0.1, "max_retries": 3})
    t.fit()
    assert t.state.retries >= 3                          # the blank sample used every repeat
    assert t.state.presentations == 5 + t.state.retries   # repeats are not samples


@pytest.mark.skipif(load_cpu_kernels() is None, reason="CPU kernels not built")
def test_kernel_trainer_equals_reference_trainer():
    kw = {"n_e": 4, "samples": 3, "label_samples": 3, "test_samples": 3,
          "physics": {"t_present": 0.04, "delay_max": 2e-3, "max_retries": 2}}
    fused, ref = trainer(**kw), trainer(backend="reference", **kw)
    assert fused.fit()["test_accuracy"] == ref.fit()["test_accuracy"]
    assert_same(weights(fused), weights(ref))


@pytest.mark.parametrize("cfg, message", [
    ({"n_e": 0}, "greater than or equal to 1"),
    ({"colour": 1}, "Extra inputs are not permitted"),
    ({"physics": {"tau_mem": 0.1}}, "unknown physics field.*valid: dt"),
    ({"physics": {"dt": 0.5}}, "Did you pass milliseconds"),
    ({"physics": {"min_spikes": 4.5}}, "whole number"),
    ({"backend": "gpu"}, "Input should be 'auto', 'cpu' or 'reference'"),
])
def test_bad_configs_fail_with_the_field(cfg, message):
    with pytest.raises(ValueError, match=message):
        DiehlCookConfig(**cfg)


def test_bad_data_fails_before_training():
    with pytest.raises(ValueError, match="samples=100 but the data has only 16"):
        trainer(samples=100)
    data = synthetic()
    bad = DiehlCookData(data.train_x, data.train_y + 10, data.test_x, data.test_y)
    with pytest.raises(ValueError, match="class labels in 0..9"):
        trainer(data=bad)


def test_model_predict_needs_labels():
    model = DiehlCook(5)
    with pytest.raises(RuntimeError, match="no class labels yet"):
        model.predict(torch.rand(2, 784))
    counts = model(torch.rand(3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert counts.shape == (3, 5) and counts.dtype == torch.int64
    model.assign(counts, torch.tensor([0, 1, 2]))
    assert model.predict(torch.rand(2, 784)).shape == (2,)
    with pytest.raises(ValueError, match="build DiehlCook"):
        model(torch.rand(1, 100))


def test_mnist_training_images_in_file_order(mnist_root):
    data = load_mnist_data(mnist_root)
    assert data.train_x.shape == (60_000, 784) and data.test_x.shape == (10_000, 784)
    assert data.train_y[:5].tolist() == [5, 0, 4, 1, 9]          # the file's first labels
    assert data.test_y[:3].tolist() == [7, 2, 1]
    assert 0 <= float(data.train_x.min()) and float(data.train_x.max()) == 1.0


@pytest.mark.slow
def test_learns_mnist_digits(mnist_root):
    """2,000 training samples with 100 neurons already classify most test digits."""
    cfg = DiehlCookConfig(n_e=100, samples=2000, label_samples=2000, test_samples=1000)
    metrics = DiehlCookTrainer(cfg, load_mnist_data(mnist_root), progress=False).fit()
    assert metrics["test_accuracy"] > 0.6
