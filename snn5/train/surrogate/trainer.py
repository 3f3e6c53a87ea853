"""Backpropagation through time with surrogate gradients.

The trainer is deliberately plain: one loop, explicit state (epoch, batch within the epoch,
global step) that a checkpoint captures completely, so that a killed run resumed from its last
checkpoint follows exactly the path of an uninterrupted run (CPU, same seed): same data order
(derived from seed and epoch), same RNG stream (saved), same optimiser state, same learning rate
(a pure function of the global step), same surrogate parameter (a pure function of the global
step, ``train.surrogate_schedule``).

The objective is ``train.loss`` (cross-entropy of the logits, or the per-step TET / TRT losses
on the readout's per-step scores) plus the activity regularisers; with ``train.tbptt_steps`` the
step runs by truncated BPTT (:mod:`snn5.train.surrogate.tbptt`). Evaluation always reports the
cross-entropy of the logits. See docs/training.md.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from snn5.data import BatchLoader
from snn5.nn.monitor import SpikeRecorder
from snn5.nn.schedule import SurrogateSchedule, anneal_surrogates
from snn5.train.checkpoint import (
    join_state, load_checkpoint, prefixed, rng_state, save_checkpoint, set_rng_state,
    split_state, unprefixed,
)
from snn5.train.device import resolve_device
from snn5.train.distributed import Dist, sync_batchnorm_, unsync_batchnorm_
from snn5.train.surrogate.config import CELoss, TrainConfig
from snn5.train.surrogate.losses import (
    chunk_loss, mean_rate, rate_penalty, spike_entropy, trt_weights,
)
from snn5.train.surrogate.tbptt import check_tbptt, tbptt_backward

log = logging.getLogger(__name__)

LAST = "last.safetensors"
BEST = "best.safetensors"


class NonFiniteError(FloatingPointError):
    """The loss or a gradient became NaN/Inf; the message names the step and the layer."""


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    firing_rate: float
    lr: float
    seconds: float


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float
    steps: int


@dataclass
class _Progress:
    epoch: int = 0                 # current epoch (0-based)
    batch: int = 0                 # batches of the current epoch already done
    global_step: int = 0
    best_val_accuracy: float = -1.0
    best_val_loss: float | None = None    # breaks ties of validation accuracy (small val sets)
    best_epoch: int = -1
    train_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "correct": 0.0,
                                                               "seen": 0.0, "rate": 0.0})


def first_nonfinite_module(model: nn.Module, x: Tensor) -> str | None:
    """Name (and type) of the first module whose output holds NaN/Inf on input ``x``."""
    found: list[str] = []

    def hook(name: str):
        def check(module: nn.Module, args: tuple, out: Any) -> None:
            t = out[0] if isinstance(out, tuple) else out
            if (not found and isinstance(t, Tensor) and t.is_floating_point()
                    and not torch.isfinite(t).all()):
                found.append(f"'{name}' ({type(module).__name__})")
        return check

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if n and not list(m.children()) or hasattr(m, "spiking")]
    try:
        with torch.enable_grad():      # replay the step as training ran it (dense layers)
            model(x)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


class Trainer:
    """Train a classifier ``model(x [B, ...]) -> logits [B, C]`` by BPTT.

    Per-step losses (``train.loss: tet | trt``) and truncated BPTT (``train.tbptt_steps``) need
    a :class:`snn5.models.SpikingClassifier` (per-step scores ``model(x, per_step=True)``);
    the trainer checks this, and the surrogate schedule, when it is built.

    Args:
        model: the network (its spiking layers are monitored for rates and the rate penalty).
        cfg: optimiser, schedule, clipping, penalty, precision and checkpoint settings.
        train: deterministic, resumable training batches.
        val: validation batches (evaluated after every epoch; selects the best checkpoint:
            highest accuracy, ties broken by the lower validation loss).
        checkpoint_dir: where ``last.safetensors`` and ``best.safetensors`` go (None: nowhere).
        seed: a fresh ``fit`` seeds torch's global RNG with it (Poisson inputs, dropout), so a
            run does not depend on what ran before it in the process; evaluation uses its own
            generator seeded the same way, so validation is repeatable and does not disturb
            the training stream.
        callbacks: called as ``cb(trainer)`` after every optimisation step.
        epoch_callbacks: called as ``cb(history)`` after every epoch (validated and
            checkpointed), e.g. to report the validation accuracy to a hyper-parameter search.
        progress: show a progress bar (None: only on a terminal).
        extra_loss: ``extra_loss(logits [B, C], batch_indices [B]) -> scalar`` added to the
            objective of every training batch; ``batch_indices`` are the batch's sample indices
            in ``train.dataset`` (e.g. a distillation term reading cached teacher logits).
            Not with ``train.tbptt_steps``.
        task_weight: weight of the label loss (``train.loss``) in the objective.
        dist: this process's place in a data-parallel run (:mod:`snn5.train.distributed`;
            default: one process). With more than one process the trainer trains its part of
            every batch of ``train`` under DistributedDataParallel, evaluates its part of
            ``val`` and sums the metrics over the processes; only rank 0 writes checkpoints
            and shows progress. Batch norm layers use global-batch statistics while it trains.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, train: BatchLoader,
                 val: Iterable[tuple[Tensor, Tensor]], *, checkpoint_dir: str | Path | None = None,
                 seed: int = 0, callbacks: Sequence[Callable[[Trainer], None]] = (),
                 epoch_callbacks: Sequence[Callable[[list[dict]], None]] = (),
                 progress: bool | None = None,
                 extra_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
                 task_weight: float = 1.0, dist: Dist | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or Dist()
        self.device = self.dist.device(resolve_device(cfg.device))
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.model = model.to(self.device)
        if self.dist.active:              # this process's part of every batch
            train = train.shard(self.dist.rank, self.dist.world_size)
            if isinstance(val, BatchLoader):
                val = val.shard(self.dist.rank, self.dist.world_size)
        self.train_loader = train
        self.val_loader = val
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.seed = seed
        self.callbacks = list(callbacks)
        self.epoch_callbacks = list(epoch_callbacks)
        self.progress = progress
        self.extra_loss = extra_loss
        self.task_weight = task_weight
        self.optimizer = self._make_optimizer()
        self._trt_weights = trt_weights(self.model) if cfg.loss.name == "trt" else []
        self.surrogate_schedule = self._surrogate_schedule()
        self._check_objective()
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        self.state = _Progress()
        self.net: nn.Module = self.model          # what the training forward pass calls
        if self.dist.active:
            sync_batchnorm_(self.model)
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                else None)

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optimizer
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        if o.name == "adamw":
            return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)

    def _check_objective(self) -> None:
        """Refuse, before any work, a loss or TBPTT setting the model cannot serve."""
        cfg, model = self.cfg, self.model
        if cfg.tbptt_steps is not None and self.dist.active:
            raise ValueError("train.tbptt_steps runs several forward passes per backward pass, "
                             "which DistributedDataParallel does not synchronise; unset "
                             "train.tbptt_steps for a distributed run, or train in one process")
        if cfg.tbptt_steps is not None and self.extra_loss is not None:
            raise ValueError("an extra loss term (e.g. distillation) needs the logits of the "
                             "whole sequence; unset train.tbptt_steps to use it.")
        if cfg.tbptt_steps is not None:
            check_tbptt(model, cfg.tbptt_steps, getattr(model, "timesteps", cfg.tbptt_steps + 1))
        if not isinstance(cfg.loss, CELoss) and not hasattr(getattr(model, "readout", None),
                                                            "steps"):
            raise TypeError(f"train.loss: {cfg.loss.name} needs the per-step class scores "
                            f"(model(x, per_step=True), as snn5.models.SpikingClassifier "
                            f"gives); {type(model).__name__} has none. Use train.loss: ce for "
                            "this model.")

    def _surrogate_schedule(self) -> SurrogateSchedule | None:
        """The schedule of ``train.surrogate_schedule``, checked against the model now (before
        any work) by applying its first value."""
        c = self.cfg.surrogate_schedule
        if c is None:
            return None
        schedule = SurrogateSchedule(c.start, c.end, c.kind)
        if anneal_surrogates(self.model, 0.0, schedule) == 0:
            raise ValueError("train.surrogate_schedule is set but the model has no spiking "
                             "neurons (an ANN?); remove train.surrogate_schedule")
        return schedule

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.amp
        if self.device.type == "cuda":
            if amp == "auto":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        if amp == "fp16":
            raise ValueError("amp: fp16 needs a CUDA device; use amp: bf16 or off on "
                             f"{self.device.type}")
        return torch.bfloat16 if amp == "bf16" else None

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def total_steps(self) -> int:
        return self.cfg.epochs * self.train_loader.num_batches

    def lr_at(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (0-based): warm-up, then cosine."""
        s = self.cfg.schedule
        base = self.cfg.optimizer.lr
        warm = round(s.warmup_epochs * self.train_loader.num_batches)
        if step < warm:
            return base * (step + 1) / warm
        if s.kind == "constant":
            return base
        progress = (step - warm) / max(1, self.total_steps - warm)
        return base * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def surrogate_progress(self, step: int) -> float:
        """Progress of the surrogate schedule at optimisation step ``step`` (0-based):
        ``step / total_steps``, 0 at the first step."""
        return min(step / max(self.total_steps, 1), 1.0)

    # ------------------------------------------------------------------ checkpoints
    def _save_last(self) -> None:
        if self.checkpoint_dir is None:
            return
        rngs = self.dist.gather(rng_state())      # every process's stream (a collective)
        if not self.dist.is_main:
            return
        optim_tensors, optim_skeleton = split_state(self.optimizer.state_dict(), "optim")
        tensors = {**prefixed("model", self.model.state_dict()), **optim_tensors,
                   **prefixed("rng", rngs[0])}
        for rank, state in enumerate(rngs[1:], start=1):
            tensors.update(prefixed(f"rng_rank{rank}", state))
        meta: dict[str, Any] = {"kind": "train_state", **asdict(self.state),
                                "optimizer": optim_skeleton}
        if self.scaler is not None:
            meta["scaler"] = self.scaler.state_dict()
        save_checkpoint(self.checkpoint_dir / LAST, tensors, meta)

    def _save_best(self, epoch: int, val_accuracy: float) -> None:
        if self.checkpoint_dir is None or not self.dist.is_main:
            return
        save_checkpoint(self.checkpoint_dir / BEST, prefixed("model", self.model.state_dict()),
                        {"kind": "weights", "epoch": epoch, "val_accuracy": val_accuracy})

    def _restore(self) -> bool:
        path = None if self.checkpoint_dir is None else self.checkpoint_dir / LAST
        if path is None or not path.is_file():
            return False
        tensors, meta = load_checkpoint(path)
        self.model.load_state_dict(unprefixed("model", tensors))
        optim = join_state(meta.pop("optimizer"), tensors)
        self.optimizer.load_state_dict(optim)
        if self.scaler is not None and "scaler" in meta:
            self.scaler.load_state_dict(meta.pop("scaler"))
        meta.pop("scaler", None)
        meta.pop("kind")
        self.state = _Progress(**meta)
        rank = self.dist.rank
        own = unprefixed("rng" if rank == 0 else f"rng_rank{rank}", tensors)
        if own:
            set_rng_state(own)
        else:
            torch.manual_seed(self.seed + rank)
            log.warning("%s holds no random stream of process %d (it was written by fewer "
                        "processes); this process draws a fresh one: the data order is the "
                        "same, dropout/Poisson noise is not", path, rank)
        log.info("resumed from %s at epoch %d, batch %d (step %d)", path, self.state.epoch,
                 self.state.batch, self.state.global_step)
        return True

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> FitResult:
        """Train for ``cfg.epochs`` epochs (continuing from ``last.safetensors`` if ``resume``)."""
        if not (resume and self._restore()):
            if resume:
                log.info("no checkpoint to resume from in %s; starting fresh", self.checkpoint_dir)
            torch.manual_seed(self.seed + self.dist.rank)    # independent noise per process
        try:
            return self._fit()
        finally:
            if self.dist.active:
                unsync_batchnorm_(self.model)

    def _fit(self) -> FitResult:
        st = self.state
        while st.epoch < self.cfg.epochs:
            self._train_epoch()
            val_loss, val_acc, _ = self.evaluate(self.val_loader)
            run = st.running
            if self.dist.active:      # sums over the processes (each trained its part)
                run["loss"], run["correct"], run["seen"], run["rate"] = self.dist.sum(
                    [run["loss"], run["correct"], run["seen"], run["rate"]])
            record = EpochRecord(
                epoch=st.epoch, train_loss=run["loss"] / max(run["seen"], 1),
                train_accuracy=run["correct"] / max(run["seen"], 1), val_loss=val_loss,
                val_accuracy=val_acc, firing_rate=run["rate"] / max(self.train_loader.num_batches, 1),
                lr=self.optimizer.param_groups[0]["lr"], seconds=run.get("seconds", 0.0))
            st.history.append(asdict(record))
            (log.info if self.dist.is_main else log.debug)(
                "epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f  rate %.4f",
                st.epoch + 1, self.cfg.epochs, record.train_loss, record.train_accuracy,
                val_acc, record.firing_rate)
            if val_acc > st.best_val_accuracy or (
                    val_acc == st.best_val_accuracy and st.best_val_loss is not None
                    and val_loss < st.best_val_loss):
                st.best_val_accuracy, st.best_epoch = val_acc, st.epoch
                st.best_val_loss = val_loss
                self._save_best(st.epoch, val_acc)
            st.epoch, st.batch = st.epoch + 1, 0
            st.running = _Progress().running
            self._save_last()
            for cb in self.epoch_callbacks:
                cb(st.history)
        return FitResult(st.history, st.best_epoch, st.best_val_accuracy, st.train_seconds,
                         st.global_step)

    def _train_epoch(self) -> None:
        st, cfg, loader = self.state, self.cfg, self.train_loader
        self.model.train()
        disable = (not self.progress) if self.progress is not None else None   # None: a tty
        bar = tqdm(total=loader.num_batches, initial=st.batch, desc=f"epoch {st.epoch + 1}",
                   disable=disable if self.dist.is_main else True,
                   leave=False, dynamic_ncols=True)
        tick = time.perf_counter()
        order = loader.order(st.epoch) if self.extra_loss is not None else None
        for x, y in loader.batches(st.epoch, start=st.batch):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss, correct, rate = self._step(x, y, None if order is None else
                                             order[loader.positions(st.batch)])  # [B] indices
            run = st.running
            run["loss"] += loss * len(y)
            run["correct"] += correct
            run["seen"] += len(y)
            run["rate"] += rate * len(y) / loader.global_batch_size(st.batch)   # this part's share
            st.batch += 1
            st.global_step += 1
            now = time.perf_counter()
            st.train_seconds += now - tick
            run["seconds"] = run.get("seconds", 0.0) + now - tick
            tick = now
            bar.update()
            bar.set_postfix(loss=f"{run['loss'] / run['seen']:.3f}",
                            acc=f"{run['correct'] / run['seen']:.3f}", rate=f"{rate:.3f}",
                            refresh=False)
            for cb in self.callbacks:
                cb(self)
            every = cfg.checkpoint_every_steps
            if every and st.global_step % every == 0 and st.batch < loader.num_batches:
                self._save_last()
                tick = time.perf_counter()
        bar.close()

    def _step(self, x: Tensor, y: Tensor, indices: Tensor | None = None
              ) -> tuple[float, float, float]:
        st, cfg = self.state, self.cfg
        lr = self.lr_at(st.global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.surrogate_schedule is not None:     # a pure function of the step: resumable
            anneal_surrogates(self.model, self.surrogate_progress(st.global_step),
                              self.surrogate_schedule)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast(), SpikeRecorder(self.model, detach=False) as rec:
            if cfg.tbptt_steps is not None:
                loss_value, logits = tbptt_backward(
                    self.model, x, cfg.tbptt_steps,
                    lambda scores, first, T: self._objective(scores, y, rec.spikes, first, T),
                    lambda loss: self._backward(loss, x))
            else:
                if isinstance(cfg.loss, CELoss):
                    logits = self.net(x)
                    loss = self.task_weight * F.cross_entropy(
                        logits.float(), y, label_smoothing=cfg.label_smoothing)
                    loss = self._add_regularisers(loss, rec.spikes, 1.0)
                else:
                    logits, scores = self._per_step(x)
                    loss = self._objective(scores, y, rec.spikes, 0, scores.shape[0])
                if self.extra_loss is not None:
                    loss = loss + self.extra_loss(logits, indices)
                loss_value = self._backward(loss, x)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip is not None:
            norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params])
        if not torch.isfinite(norm):
            if self.scaler is None:
                raise self._nonfinite("gradient", x)
            # fp16: the scaler skips this step and lowers its scale (expected, not an error)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        correct = float((logits.argmax(1) == y).sum())
        return loss_value, correct, mean_rate(rec.spikes)

    def _per_step(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits [B, C], scores [T, B, C])`` of the model (per-step losses need them)."""
        return self.net(x, per_step=True)

    def _objective(self, scores: Tensor, y: Tensor, spikes: dict[str, Tensor], first: int,
                   total: int) -> Tensor:
        """The loss carried by the per-step scores of steps ``first ..`` of ``total`` steps
        (the whole sequence, or one TBPTT chunk) plus the regularisers on the spikes recorded
        for these steps, weighted by the steps' share of time."""
        cfg = self.cfg
        loss = self.task_weight * chunk_loss(
            cfg.loss, scores, y, reduce_steps=self.model.readout.reduce_steps,
            weights=self._trt_weights, first_step=first, total_steps=total,
            label_smoothing=cfg.label_smoothing)
        return self._add_regularisers(loss, spikes, scores.shape[0] / total)

    def _add_regularisers(self, loss: Tensor, spikes: dict[str, Tensor], share: float) -> Tensor:
        for penalty in (rate_penalty(spikes, self.cfg.rate_penalty),
                        spike_entropy(spikes, self.cfg.spike_entropy.weight)):
            if penalty is not None:
                loss = loss + (penalty if share == 1.0 else share * penalty)
        return loss

    def _backward(self, loss: Tensor, x: Tensor) -> float:
        """Check ``loss`` is finite (naming the step and layer if not), then backpropagate it.

        In a data-parallel run every process checks (all stop together) and scales its loss
        by ``world_size * local_batch / global_batch``: DDP's mean of the gradients is then
        the gradient of the mean loss over the global batch."""
        value = loss.item()
        if self.dist.any(not math.isfinite(value)):
            raise self._nonfinite("loss", x)
        if self.dist.active:
            loader = self.train_loader
            loss = loss * (self.dist.world_size * len(x) /
                           loader.global_batch_size(self.state.batch))
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        return value

    def _nonfinite(self, what: str, x: Tensor) -> NonFiniteError:
        st = self.state
        where = f"epoch {st.epoch + 1}, step {st.global_step + 1} (batch {st.batch + 1})"
        if not torch.isfinite(x).all():
            cause = "the input batch itself holds NaN/Inf; check the data"
        elif what == "gradient":
            bad = [n for n, p in self.model.named_parameters()
                   if p.grad is not None and not torch.isfinite(p.grad).all()]
            cause = f"non-finite gradients in {', '.join(bad[:8])}"
        else:
            if self.dist.active:          # the diagnosis replays this process's batch alone
                unsync_batchnorm_(self.model)
            layer = first_nonfinite_module(self.model, x)
            cause = (f"first non-finite output in layer {layer}" if layer else
                     "all layer outputs finite; the loss overflowed")
        return NonFiniteError(f"non-finite {what} at {where}: {cause}. Lower the learning rate, "
                              "set train.grad_clip, or check the data. The last checkpoint "
                              "before this step is kept.")

    # ------------------------------------------------------------------ evaluation
    @torch.inference_mode()
    def evaluate(self, batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[float, float, float]:
        """Mean loss, accuracy and firing rate over ``batches`` (a fixed RNG for spike inputs)."""
        was_training = self.model.training
        self.model.eval()
        total_loss = correct = seen = 0.0
        spikes = neurons = 0.0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), SpikeRecorder(self.model) as rec:
            torch.manual_seed(self.seed)
            for x, y in batches:
                x, y = x.to(self.device), y.to(self.device)
                with self._autocast():
                    logits = self.model(x)
                total_loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
                correct += float((logits.argmax(1) == y).sum())
                seen += len(y)
                for z in rec.spikes.values():
                    spikes += float(z.float().sum())
                    neurons += z.numel()
        self.model.train(was_training)
        if self.dist.active:
            total_loss, correct, seen, spikes, neurons = self.dist.sum(
                [total_loss, correct, seen, spikes, neurons])
        if seen == 0:
            raise ValueError("evaluation got no batches; is the validation split empty?")
        return total_loss / seen, correct / seen, spikes / max(neurons, 1.0)
