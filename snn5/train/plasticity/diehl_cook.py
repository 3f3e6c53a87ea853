"""Train the Diehl & Cook (2015) network on MNIST one sample at a time, label its neurons and
test it, as the paper and its reference code (github.com/peter-u-diehl/stdp-mnist) do.

Per training sample (in the order of the MNIST file, as the reference code):

1. scale each neuron's input weights to sum ``w_sum`` (78);
2. present it with learning (fused kernel, one sample): the weights change at every spike
   event, each update clipped to ``[w_min, w_max]``, as in the reference code; the call returns
   spike counts, the weights at the end, ``dw`` (those minus the weights before) and ``dtheta``;
3. write ``-dw`` into ``weight.grad`` and step ``torch.optim.SGD(lr=1)`` (the plasticity
   learners' contract: any optimiser applies the update), then store the kernel's weights
   exactly (float32 ``w + (w' - w)`` can differ from ``w'`` by one rounding where a weight more
   than doubled or halved in the presentation); ``theta += dtheta``, then theta decays over the
   rest, ``theta *= exp(-t_rest / tau_theta)``;
4. if the excitatory layer fired fewer than ``min_spikes`` (5) spikes, raise the intensity by 1
   and go back to 1 (the repeat does not count as a sample). As in the reference code, whose
   simulator does not roll back, the weight and theta changes of the weak presentation are kept.

After the epochs, a labelling pass over training images without learning (theta fixed) assigns
each neuron the class it responds to most; the test set is classified by the mean response of
each class's neurons. The reference code's running assignment is reported too: during training,
every ``running_interval`` (10,000) samples the neurons are labelled from the responses of the
last block, which classify the next block as it is learned (``running_block_accuracy``), and the
last block's labels classify the test set (``test_accuracy_running_labels``): no extra pass.

Input spikes are drawn inside the kernel from one seed per sample (a torch generator draw; the
attempt number selects the stream of a repeat), so a run is bitwise reproducible, and a killed
run resumed from its checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor
from tqdm.auto import tqdm

from snn5.core.diehl_cook import (
    DiehlCookParams, assign_labels, check_params, class_sums, classify, derive,
)
from snn5.data.mnist import load_mnist, read_idx
from snn5.kernels.build import load_cpu_kernels
from snn5.models.diehl_cook import NUM_CLASSES, DiehlCook
from snn5.train.checkpoint import load_checkpoint, prefixed, save_checkpoint, unprefixed

log = logging.getLogger(__name__)

LAST = "last.safetensors"
MODEL = "model.safetensors"
METRICS = "metrics.json"
_PARAM_FIELDS = DiehlCookParams._fields
_INT_FIELDS = ("min_spikes", "max_retries")
# fields a resumed run must share with the checkpoint (the others may change between runs)
_IDENTITY = ("n_e", "seed", "samples", "running_interval", "physics")


class DiehlCookConfig(BaseModel):
    """A Diehl & Cook run: network size, how much data, seed, and physics overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_e: int = Field(100, ge=1, description="excitatory (= inhibitory) neurons")
    epochs: int = Field(1, ge=1)
    samples: int | None = Field(None, ge=1, description="training samples per epoch, from the "
                                "start of the training file (None: all 60,000)")
    label_samples: int | None = Field(None, ge=1, description="training images of the labelling "
                                      "pass (None: all)")
    test_samples: int | None = Field(None, ge=1, description="test images (None: all 10,000)")
    seed: int = Field(0, ge=0)
    running_interval: int = Field(10_000, ge=1, description="block of the running assignment "
                                  "(the reference code's update_interval)")
    checkpoint_every: int = Field(10_000, ge=0, description="training samples between "
                                  "checkpoints (0: at the end of each epoch only)")
    eval_batch: int = Field(1000, ge=1, description="samples per kernel call without learning")
    threads: int | None = Field(None, ge=1, description="CPU threads (torch.set_num_threads)")
    backend: Literal["auto", "cpu", "reference"] = Field(
        "auto", description="auto: the fused kernel if built, else the (slow) reference loop")
    physics: dict[str, float] = Field(default_factory=dict, description="overrides of "
                                      "snn5.core.diehl_cook.DiehlCookParams, SI units")

    @field_validator("physics")
    @classmethod
    def _physics(cls, values: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(values) - set(_PARAM_FIELDS))
        if unknown:
            raise ValueError(f"unknown physics field(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(_PARAM_FIELDS)}")
        for name in _INT_FIELDS:
            if name in values and values[name] != int(values[name]):
                raise ValueError(f"physics.{name} must be a whole number, got {values[name]}")
        check_params(_params(values))
        return values

    def params(self) -> DiehlCookParams:
        """The physics: reference-code defaults with ``physics`` applied."""
        return _params(self.physics)


def _params(values: dict[str, float]) -> DiehlCookParams:
    typed = {k: int(v) if k in _INT_FIELDS else float(v) for k, v in values.items()}
    return DiehlCookParams()._replace(**typed)


@dataclass(frozen=True, eq=False)
class DiehlCookData:
    """Images as ``[N, n_in]`` float32 in [0, 1] (pixel / 255) and labels ``[N]`` int64."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    name: str = "mnist"


def load_mnist_data(root: str | Path) -> DiehlCookData:
    """MNIST with the 60,000 training images in the order of the file (the reference code's
    order) and the 10,000 test images; the files are checked (md5, headers) by
    :func:`snn5.data.mnist.load_mnist`."""
    split = load_mnist(Path(root))                                     # verifies every file
    directory = Path(root) / "mnist"
    images = read_idx(directory / "train-images-idx3-ubyte.gz", magic=2051,
                      shape=(60_000, 28, 28))
    labels = read_idx(directory / "train-labels-idx1-ubyte.gz", magic=2049, shape=(60_000,))
    train_x = torch.from_numpy(images.reshape(60_000, 784).astype(np.float32)).div_(255.0)
    return DiehlCookData(train_x=train_x, train_y=torch.from_numpy(labels.astype(np.int64)),
                         test_x=split.test.x.reshape(len(split.test), -1), test_y=split.test.y)


def stream_seeds(seed: int, stream: int, n: int) -> Tensor:
    """``n`` per-sample seeds (int64) of a named stream of a run: a fixed function of both."""
    g = torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9
                                       + 1) % 2**64)
    return torch.randint(0, 2**62, (n,), generator=g)


_INIT, _LABEL, _TEST, _TRAIN = 0, 1, 2, 16                  # streams; training: _TRAIN + epoch


@dataclass
class _Progress:
    epoch: int = 0                      # current epoch (0-based)
    sample: int = 0                     # samples of this epoch done
    seen: int = 0                       # samples done over all epochs
    presentations: int = 0              # including repeats
    retries: int = 0
    spikes: int = 0                     # excitatory spikes of the kept presentations
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0     # process CPU time (all threads): robust to other load
    running_correct: int = 0            # correct running predictions in the current block
    running_blocks: int = 0             # complete blocks (running labels exist when > 0)
    block_accuracy: list[float] = field(default_factory=list)


class DiehlCookTrainer:
    """Train, label and test a :class:`~snn5.models.diehl_cook.DiehlCook` network.

    Args:
        cfg: the run.
        data: images and labels (:func:`load_mnist_data`).
        out: folder for ``last.safetensors`` (resumable state), ``model.safetensors`` (trained
            network with labels) and ``metrics.json``; None: nothing is written.
        progress: show progress bars (None: only on a terminal).
        callbacks: called as ``cb(trainer)`` after every training sample.
    """

    def __init__(self, cfg: DiehlCookConfig, data: DiehlCookData, *,
                 out: str | Path | None = None, progress: bool | None = None,
                 callbacks: Sequence[Callable[[DiehlCookTrainer], None]] = ()) -> None:
        self.cfg = cfg
        self.params = cfg.params()
        self.consts = derive(self.params)
        self.data = self._check_data(data)
        self.out = Path(out) if out is not None else None
        self.progress = progress
        self.callbacks = list(callbacks)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        n_in = data.train_x.shape[1]
        init = torch.Generator().manual_seed(int(stream_seeds(cfg.seed, _INIT, 1)))
        self.model = DiehlCook(cfg.n_e, n_in, self.params, generator=init, backend=cfg.backend)
        self.optimizer = torch.optim.SGD([self.model.weight], lr=1.0)
        self.state = _Progress()
        self.running_assignments = torch.zeros(cfg.n_e, dtype=torch.int64)   # as the reference
        self.block_counts = torch.zeros(cfg.running_interval, cfg.n_e, dtype=torch.int16)
        self.block_labels = torch.zeros(cfg.running_interval, dtype=torch.int64)

    def _check_data(self, data: DiehlCookData) -> DiehlCookData:
        for split in ("train", "test"):
            x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
            if x.ndim != 2 or y.shape != x.shape[:1] or x.shape[0] == 0:
                raise ValueError(f"{split}_x must be [N, n_in] with N >= 1 and {split}_y [N], "
                                 f"got {tuple(x.shape)} and {tuple(y.shape)}")
            if y.dtype != torch.int64 or int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES:
                raise ValueError(f"{split}_y must be int64 class labels in 0..{NUM_CLASSES - 1}")
        if data.train_x.shape[1] != data.test_x.shape[1]:
            raise ValueError("training and test images differ in size")
        for name, n, have in (("samples", self.cfg.samples, len(data.train_y)),
                              ("label_samples", self.cfg.label_samples, len(data.train_y)),
                              ("test_samples", self.cfg.test_samples, len(data.test_y))):
            if n is not None and n > have:
                raise ValueError(f"{name}={n} but the data has only {have} images; lower it or "
                                 "leave it unset (all)")
        return data

    @property
    def train_samples(self) -> int:
        return self.cfg.samples or len(self.data.train_y)

    # ------------------------------------------------------------------ checkpoints
    def _identity(self) -> dict[str, Any]:
        dump = self.cfg.model_dump(mode="json")
        return {k: dump[k] for k in _IDENTITY}

    def _save_last(self) -> None:
        if self.out is None:
            return
        tensors = {**prefixed("model", self.model.state_dict()),
                   "running.assignments": self.running_assignments,
                   "running.counts": self.block_counts, "running.labels": self.block_labels}
        meta = {"kind": "diehl_cook_train_state", "identity": self._identity(),
                "config": self.cfg.model_dump(mode="json"), **asdict(self.state)}
        save_checkpoint(self.out / LAST, tensors, meta)

    def _restore(self) -> bool:
        path = None if self.out is None else self.out / LAST
        if path is None or not path.is_file():
            return False
        tensors, meta = load_checkpoint(path)
        if meta.get("kind") != "diehl_cook_train_state":
            raise ValueError(f"{path} is not a Diehl & Cook training checkpoint; use another --out")
        theirs, ours = meta["identity"], self._identity()
        differ = [k for k in _IDENTITY if theirs.get(k) != ours[k]]
        if differ:
            raise ValueError(f"{path} was written by a run with other settings ("
                             + ", ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here"
                                         for k in differ)
                             + "); resume with the same settings or use another --out folder")
        self.model.load_state_dict(unprefixed("model", tensors))
        self.running_assignments.copy_(tensors["running.assignments"])
        self.block_counts.copy_(tensors["running.counts"])
        self.block_labels.copy_(tensors["running.labels"])
        fields = {k: meta[k] for k in _Progress.__dataclass_fields__}
        self.state = _Progress(**fields)
        log.info("resumed from %s at epoch %d, sample %d", path, self.state.epoch,
                 self.state.sample)
        return True

    # ------------------------------------------------------------------ training
    def _learn(self, rates: Tensor, seed: Tensor) -> Tensor:
        """Present one sample with learning until its response has ``min_spikes`` spikes;
        returns the kept counts ``[n_e]``."""
        model, p, st = self.model, self.params, self.state
        attempt = 0
        while True:
            model.normalize_()
            first = st.presentations == 0                   # the run's very first presentation
            res = model.present(rates, seed, learn=True, attempt=attempt,
                                v_offset=p.v_init_offset if first else 0.0)
            model.weight.grad = res.dw.neg_()
            self.optimizer.step()
            with torch.no_grad():           # exact: SGD's float32 w + dw is within one rounding
                model.weight.copy_(res.weight)
            model.theta.add_(res.dtheta).mul_(self.consts.theta_rest_decay)
            st.presentations += 1
            total = int(res.counts.sum())
            if total >= p.min_spikes or attempt >= p.max_retries:
                st.spikes += total
                return res.counts[0]
            attempt += 1
            st.retries += 1

    def _running(self, counts: Tensor, label: int) -> None:
        """The reference code's running assignment over blocks of ``running_interval``."""
        st, k = self.state, self.state.seen % self.cfg.running_interval
        pred = int(classify(counts[None], self.running_assignments, NUM_CLASSES)[0])
        st.running_correct += int(pred == label)
        self.block_counts[k] = counts.to(torch.int16)
        self.block_labels[k] = label
        if k == self.cfg.running_interval - 1:
            st.block_accuracy.append(st.running_correct / self.cfg.running_interval)
            st.running_correct = 0
            st.running_blocks += 1
            self.running_assignments = assign_labels(*class_sums(self.block_counts,
                                                                 self.block_labels, NUM_CLASSES))

    def _train_epoch(self) -> None:
        # one sample at a time: the kernel runs on one thread, and so do the small tensor ops
        # around it (parallel regions on [n_e, 784] tensors cost more than they save, and much
        # more when another process holds a core)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._train_samples()
        finally:
            torch.set_num_threads(threads)

    def _train_samples(self) -> None:
        cfg, st = self.cfg, self.state
        n = self.train_samples
        x, y = self.data.train_x[:n], self.data.train_y[:n]
        seeds = stream_seeds(cfg.seed, _TRAIN + st.epoch, n)
        bar = tqdm(total=n, initial=st.sample, desc=f"epoch {st.epoch + 1}/{cfg.epochs}",
                   disable=(not self.progress) if self.progress is not None else None,
                   leave=False, dynamic_ncols=True, mininterval=1.0)
        tick, cpu = time.perf_counter(), time.process_time()
        while st.sample < n:
            k = st.sample
            counts = self._learn(self.model.rates(x[k:k + 1]), seeds[k:k + 1])
            self._running(counts, int(y[k]))
            st.sample += 1
            st.seen += 1
            now, now_cpu = time.perf_counter(), time.process_time()
            st.train_seconds += now - tick
            st.train_cpu_seconds += now_cpu - cpu
            tick, cpu = now, now_cpu
            bar.update()
            if st.sample % 1000 == 0:
                rate = st.spikes / max(st.seen, 1)
                bar.set_postfix(spikes=f"{rate:.1f}", retries=st.retries, refresh=False)
                if st.sample % 10_000 == 0:
                    log.info("epoch %d: %d/%d samples, %.1f spikes/sample, %d repeats, %.2f ms/"
                             "sample, running accuracy %s", st.epoch + 1, st.sample, n, rate,
                             st.retries, 1e3 * st.train_seconds / st.seen,
                             [round(a, 4) for a in st.block_accuracy])
            for cb in self.callbacks:
                cb(self)
            every = cfg.checkpoint_every
            if every and st.seen % every == 0 and st.sample < n:
                self._check_finite()
                self._save_last()
                tick, cpu = time.perf_counter(), time.process_time()
        bar.close()

    def _check_finite(self) -> None:
        if not (torch.isfinite(self.model.weight).all() and torch.isfinite(self.model.theta).all()):
            raise FloatingPointError(f"non-finite weights or thresholds after training sample "
                                     f"{self.state.seen} (epoch {self.state.epoch + 1}); check "
                                     "the physics overrides (time constants, learning rates)")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _respond(self, x: Tensor, seeds: Tensor, desc: str,
                 take: Callable[[int, Tensor], None]) -> tuple[int, int]:
        """Present ``x`` without learning in chunks, ``take(start, counts [chunk, n_e])`` for
        each; returns the total spikes and repeats."""
        spikes = retries = 0
        step = self.cfg.eval_batch
        bar = tqdm(total=len(x), desc=desc, leave=False, dynamic_ncols=True,
                   disable=(not self.progress) if self.progress is not None else None)
        for s in range(0, len(x), step):
            res = self.model.present(self.model.rates(x[s:s + step]), seeds[s:s + step])
            take(s, res.counts)
            spikes += int(res.counts.sum())
            retries += int(res.attempts.sum())
            bar.update(len(res.counts))
        bar.close()
        return spikes, retries

    def label(self) -> dict[str, float]:
        """Assign the neurons' classes from a pass over training images without learning."""
        n = self.cfg.label_samples or len(self.data.train_y)
        y = self.data.train_y[:n]
        sums = torch.zeros(NUM_CLASSES, self.cfg.n_e, dtype=torch.float64)
        totals = torch.zeros(NUM_CLASSES, dtype=torch.int64)

        def take(start: int, counts: Tensor) -> None:
            s, t = class_sums(counts, y[start:start + len(counts)], NUM_CLASSES)
            sums.add_(s)
            totals.add_(t)

        tick, cpu = time.perf_counter(), time.process_time()
        spikes, retries = self._respond(self.data.train_x[:n],
                                        stream_seeds(self.cfg.seed, _LABEL, n), "label", take)
        self.model.assignments.copy_(assign_labels(sums, totals))
        return {"label_samples": n, "label_seconds": time.perf_counter() - tick,
                "label_cpu_seconds": time.process_time() - cpu,
                "spikes_per_sample_label": spikes / n, "retries_label": retries}

    def test(self) -> dict[str, float | None]:
        """Accuracy on the test images with the labelling pass's and the running labels."""
        n = self.cfg.test_samples or len(self.data.test_y)
        y = self.data.test_y[:n]
        correct = torch.zeros(2, dtype=torch.int64)       # labelling pass, running labels

        def take(start: int, counts: Tensor) -> None:
            target = y[start:start + len(counts)]
            for k, assignments in enumerate((self.model.assignments, self.running_assignments)):
                correct[k] += int((classify(counts, assignments, NUM_CLASSES) == target).sum())

        tick, cpu = time.perf_counter(), time.process_time()
        spikes, retries = self._respond(self.data.test_x[:n],
                                        stream_seeds(self.cfg.seed, _TEST, n), "test", take)
        running = float(correct[1]) / n if self.state.running_blocks > 0 else None
        return {"test_samples": n, "test_accuracy": float(correct[0]) / n,
                "test_accuracy_running_labels": running,
                "test_seconds": time.perf_counter() - tick,
                "test_cpu_seconds": time.process_time() - cpu,
                "spikes_per_sample_test": spikes / n, "retries_test": retries}

    # ------------------------------------------------------------------ run
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``cfg.epochs`` (continuing from ``last.safetensors`` if ``resume``), label
        the neurons, test; returns the metrics (also written to ``metrics.json``)."""
        if resume and not self._restore():
            log.info("no checkpoint to resume from in %s; starting fresh", self.out)
        st = self.state
        while st.epoch < self.cfg.epochs:
            self._train_epoch()
            self._check_finite()
            st.epoch, st.sample = st.epoch + 1, 0
            self._save_last()
        metrics: dict[str, Any] = {
            "model": "diehl_cook", "dataset": self.data.name, "n_e": self.cfg.n_e,
            "seed": self.cfg.seed, "epochs": self.cfg.epochs, "samples": self.train_samples,
            "train_seconds": st.train_seconds, "train_cpu_seconds": st.train_cpu_seconds,
            "spikes_per_sample_train": st.spikes / max(st.seen, 1),
            "presentations_train": st.presentations, "retries_train": st.retries,
            "running_block_accuracy": list(st.block_accuracy),
        }
        metrics.update(self.label())
        metrics.update(self.test())
        fused = self.cfg.backend == "cpu" or (self.cfg.backend == "auto"
                                              and load_cpu_kernels() is not None)
        metrics.update({"backend": "fused cpu kernel" if fused else "reference",
                        "threads": torch.get_num_threads(), "torch": torch.__version__, "config": self.cfg.model_dump(mode="json"),
                        "physics": self.params._asdict()})
        if self.out is not None:
            save_checkpoint(self.out / MODEL, prefixed("model", self.model.state_dict()),
                            {"kind": "diehl_cook_model", "n_e": self.cfg.n_e,
                             "physics": self.params._asdict(),
                             "test_accuracy": metrics["test_accuracy"]})
            (self.out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("n_e=%d: test accuracy %.4f (running labels: %s); train %.0f s, label %.0f s, "
                 "test %.0f s", self.cfg.n_e, metrics["test_accuracy"],
                 metrics["test_accuracy_running_labels"], metrics["train_seconds"],
                 metrics["label_seconds"], metrics["test_seconds"])
        return metrics


__all__ = ["DiehlCookConfig", "DiehlCookData", "DiehlCookTrainer", "load_mnist_data",
           "stream_seeds"]
