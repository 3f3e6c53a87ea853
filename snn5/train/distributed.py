"""Data-parallel training over processes: torchrun + DistributedDataParallel.

``torchrun --nproc_per_node=K -m snn5 train CONFIG ...`` starts K processes; each reads its
rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) and joins one process group: gloo on CPU, NCCL on GPU (one
GPU per process, ``cuda:LOCAL_RANK``).

What makes K processes train like one:

* every global batch of the one-process loader is cut into K parts
  (:meth:`snn5.data.BatchLoader.shard`), so the processes together see the same batches, in
  the same order, with the same augmentation draws;
* each process's loss is scaled by ``K * local_batch / global_batch`` before DDP averages the
  gradients, so the update is that of the mean loss over the global batch even when the last
  batch does not divide evenly;
* batch normalisation uses the statistics of the global batch (:func:`sync_batchnorm_`, which
  works with gloo on CPU, where ``torch.nn.SyncBatchNorm`` does not, and keeps the shape
  handling of subclasses such as :class:`snn5.nn.attention.TokenBatchNorm`).

What differs: stochastic layers (dropout, Poisson encoding) draw independent noise per process
(process ``r`` seeds its generator with ``seed + r``), so runs with them agree in distribution,
not bit for bit; and floating-point sums over a split batch are ordered differently, so even
deterministic runs agree to rounding (see docs/distributed.md for the measured tolerance).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """This process's place among the processes of a data-parallel run.

    ``Dist()`` (rank 0 of 1) is the one-process run: every helper is then a no-op.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder, logs and shows progress."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA run, else ``device``."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes (float64)."""
        if not self.active:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                         device=_collective_device())
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any."""
        return self.sum([float(flag)])[0] > 0 if self.active else flag

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order (picklable objects)."""
        if not self.active:
            return [obj]
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Run the body on rank 0 first, then on the others (e.g. to fill a cache once)."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def _collective_device() -> torch.device:
    backend = dist.get_backend()
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
        else torch.device("cpu")


def launched_by_torchrun() -> bool:
    """True in a process started by torchrun for more than one process."""
    return all(k in os.environ for k in _ENV) and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the process group torchrun set up (gloo for a CPU ``device``, NCCL for CUDA).

    Outside torchrun (or with one process) this returns ``Dist()`` and starts nothing. An
    already initialised process group is reused.
    """
    if not launched_by_torchrun():
        return Dist()
    d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
             int(os.environ["LOCAL_RANK"]))
    if device.type == "cuda":
        if d.local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {d.rank} has LOCAL_RANK {d.local_rank} but this machine "
                             f"has {torch.cuda.device_count()} CUDA devices; start at most one "
                             "process per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=d.device(device)
                                if device.type == "cuda" else None)
        log.info("process group: %s, rank %d of %d", backend, d.rank, d.world_size)
    elif dist.get_world_size() != d.world_size:
        raise RuntimeError(f"the initialised process group has {dist.get_world_size()} "
                           f"processes but WORLD_SIZE is {d.world_size}")
    return d


def shutdown(d: Dist) -> None:
    """Leave the process group (after the last collective of the run)."""
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------ batch normalisation
class _GlobalBatchNorm:
    """Mixin placed just above ``torch.nn``'s batch norm class in a module's class order, so
    that it receives the input of ``_BatchNorm.forward`` (after any reshaping a subclass does)
    and normalises it with the statistics of the global batch."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)                      # type: ignore[misc]
        return global_batch_norm(self, x)                  # type: ignore[arg-type]


def global_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Training-mode batch norm of ``x: [N_local, C, *]`` with the mean and (biased) variance
    of the inputs of all processes together, and the running statistics updated as
    ``F.batch_norm`` updates them (unbiased variance, ``momentum`` or cumulative average).

    Forward: each process's per-channel mean and variance (one fused pass), gathered and
    combined exactly (Chan et al.'s parallel variance, float64), then the fused inference-mode
    batch norm with those statistics. Backward: the fused batch-norm backward gives the direct
    term and the local sums of the gradient and of gradient x normalised input; one all-reduce
    of these sums adds the terms that flow through the global statistics (the formula of
    ``torch.nn.SyncBatchNorm``, whose kernels exist for GPUs only).
    """
    if x.dim() < 2:
        raise ValueError(f"{type(bn).__name__} expects [N, C, ...] inputs, got {tuple(x.shape)}")
    dims = [0, *range(2, x.dim())]
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    with torch.no_grad():
        var, mean = torch.var_mean(xf, dims, correction=0)                     # [C] each
        n = xf.numel() // xf.shape[1]
        local = torch.cat([mean.double(), var.double(),
                           mean.new_tensor([n], dtype=torch.float64)])       # [2C + 1]
        parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, local)
        table = torch.stack(parts)                                            # [K, 2C + 1]
        c = xf.shape[1]
        counts = table[:, -1:]                                                # [K, 1]
        total = float(counts.sum())
        g_mean = (counts * table[:, :c]).sum(0) / total
        g_var = (counts * (table[:, c:2 * c] + (table[:, :c] - g_mean) ** 2)).sum(0) / total
        mean, var = g_mean.to(xf.dtype), g_var.to(xf.dtype)
    y = _GlobalBatchNormFn.apply(xf, bn.weight if bn.affine else None,
                                 bn.bias if bn.affine else None, mean, var, total, bn.eps)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                      else bn.momentum)
            bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
            bn.running_var.mul_(1 - factor).add_(var * (total / max(total - 1.0, 1.0)),
                                                 alpha=factor)
    return y.to(x.dtype)


class _GlobalBatchNormFn(torch.autograd.Function):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` where ``mean`` and ``var`` are the
    global-batch statistics of ``x`` (all processes, ``total`` samples x positions); the
    backward pass includes their dependence on ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,  # type: ignore[override]
                mean: Tensor, var: Tensor, total: float, eps: float) -> Tensor:
        ctx.save_for_backward(x, weight, mean, var)
        ctx.total, ctx.eps, ctx.has_bias = total, eps, bias is not None
        return torch.nn.functional.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)

    @staticmethod
    def backward(ctx, grad: Tensor):                                    # type: ignore[override]
        x, weight, mean, var = ctx.saved_tensors
        w = weight if weight is not None else torch.ones_like(mean)
        grad = grad.contiguous()
        # direct term g * w * invstd, and the local sums: sum(g * x_hat) and sum(g)
        g_x, g_w, g_b = torch.ops.aten.native_batch_norm_backward(
            grad, x, w, mean, var, None, None, False, ctx.eps, [True, True, True])
        sums = torch.stack([g_b, g_w]).double()
        dist.all_reduce(sums)                                       # the global batch's sums
        s_g, s_gxhat = sums.to(x.dtype)
        invstd = torch.rsqrt(var + ctx.eps)
        k = w * invstd
        slope = -k * invstd * s_gxhat / ctx.total                       # [C]
        offset = -k * s_g / ctx.total - slope * mean                    # [C]
        shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
        g_x.addcmul_(x, slope.view(shape)).add_(offset.view(shape))
        return (g_x, g_w if weight is not None else None, g_b if ctx.has_bias else None,
                None, None, None, None)


_SYNCED: dict[type, type] = {}


def _synced_class(cls: type) -> type:
    if cls not in _SYNCED:
        base = next(c for c in cls.__mro__ if c.__module__ == "torch.nn.modules.batchnorm")
        bases = (_GlobalBatchNorm, base) if cls is base else (cls, _GlobalBatchNorm, base)
        _SYNCED[cls] = type(f"Synced{cls.__name__}", bases, {"_unsynced": cls})
    return _SYNCED[cls]


def sync_batchnorm_(model: nn.Module) -> int:
    """Make every batch norm layer of ``model`` use global-batch statistics in training (in
    place; state dicts unchanged). Returns how many layers changed. Undo with
    :func:`unsync_batchnorm_`."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, _GlobalBatchNorm):
            if isinstance(m, nn.SyncBatchNorm):
                raise TypeError("the model already holds torch.nn.SyncBatchNorm layers; build it "
                                "with plain BatchNorm (snn5 synchronises them itself)")
            m.__class__ = _synced_class(type(m))
            n += 1
    return n


def unsync_batchnorm_(model: nn.Module) -> None:
    """Undo :func:`sync_batchnorm_`."""
    for m in model.modules():
        if isinstance(m, _GlobalBatchNorm):
            m.__class__ = type(m)._unsynced                 # type: ignore[attr-defined]
