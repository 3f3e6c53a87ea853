"""Deterministic, resumable mini-batches over an in-memory ArrayDataset."""

from __future__ import annotations

import copy
import hashlib
import numbers
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from snn5.data.base import ArrayDataset

__all__ = ["BatchLoader"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _epoch_seed(seed: int, epoch: int, batch: int | None = None) -> int:
    """A 63-bit generator seed that depends only on ``(seed, epoch)`` (and ``batch`` for the
    augmentation draws), well mixed.

    Hashing keeps nearby pairs apart: ``(seed=1, epoch=0)`` and ``(seed=0, epoch=1)`` give
    unrelated orders, which ``seed + epoch`` would not.
    """
    key = f"snn5.BatchLoader:{seed}:{epoch}" + ("" if batch is None else f":augment:{batch}")
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class BatchLoader:
    """Mini-batches of an in-memory dataset, reproducible per epoch and resumable mid-epoch.

    The sample order of epoch ``e`` is a permutation drawn by a local ``torch.Generator``
    seeded from ``(seed, e)`` only; the global RNG is neither read nor advanced. So a run
    resumed at epoch ``e``, batch ``k`` calls ``batches(e, start=k)`` and sees exactly the
    batches an uninterrupted run would have seen.

    Args:
        dataset: The samples to batch. Batches live on the dataset's device.
        batch_size: Samples per batch, ``>= 1``. The last batch may be smaller.
        shuffle: Draw a new order each epoch; ``False`` keeps the dataset order.
        seed: Seed of the shuffling (independent of the model's seed if you like).
        drop_last: Drop the last batch when it has fewer than ``batch_size`` samples.
        augment: ``augment(x, generator) -> x`` applied to every batch (training-time
            augmentation such as :class:`snn5.data.Augment`); its generator is seeded from
            ``(seed, epoch, batch)``, so augmented batches are reproducible and resumable.

    Distributed data parallelism: :meth:`shard` gives the loader of one of ``world_size``
    processes, which yields its contiguous part of every batch of this loader. The batches
    (order, size, augmentation draws) stay those of the one-process loader, so ``K`` processes
    together see exactly the batches one process would see.

    Shape:
        Each batch is ``(x, y)`` with ``x: [B, *input_shape]`` and ``y: [B]``.

    Example:
        >>> ds = ArrayDataset(torch.rand(10, 3), torch.arange(10) % 2)
        >>> loader = BatchLoader(ds, 4, shuffle=True, seed=0)
        >>> [len(y) for _, y in loader.batches(epoch=2)]
        [4, 4, 2]
        >>> # resumed after 2 batches of epoch 2: the same last batch as an uninterrupted run
        >>> [len(y) for _, y in loader.batches(epoch=2, start=2)]
        [2]
    """

    def __init__(self, dataset: ArrayDataset, batch_size: int, *, shuffle: bool,
                 seed: int = 0, drop_last: bool = False,
                 augment: Callable[[Tensor, torch.Generator], Tensor] | None = None) -> None:
        if not isinstance(dataset, ArrayDataset):
            raise TypeError(f"BatchLoader needs an ArrayDataset, got {type(dataset).__name__}; "
                            "wrap tensors as ArrayDataset(x, y).")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        if not _is_int(seed):
            raise TypeError(f"seed must be an integer, got {seed!r}.")
        n = len(dataset)
        num_batches = n // batch_size if drop_last else -(-n // batch_size)
        if num_batches == 0:
            raise ValueError(f"BatchLoader would yield no batch: dataset has {n} samples, "
                             f"batch_size={batch_size}, drop_last={drop_last}. Use a smaller "
                             "batch_size or drop_last=False.")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self._num_batches = num_batches
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> BatchLoader:
        """The loader of process ``rank`` of ``world_size``: the same batches as this loader,
        each cut into ``world_size`` contiguous parts (sizes differ by at most one, the first
        parts larger), of which it yields part ``rank``.

        Raises:
            ValueError: a batch has fewer samples than processes (a process would get none).
        """
        if not _is_int(world_size) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}.")
        if not _is_int(rank) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}.")
        smallest = self.global_batch_size(self._num_batches - 1)      # the last batch
        if smallest < world_size:
            n = len(self.dataset)
            raise ValueError(
                f"cannot share batches among {world_size} processes: the smallest batch has "
                f"{smallest} samples ({n} samples, batch_size={self.batch_size}, the last batch "
                f"holds the remainder); every process needs at least one. Choose a batch_size "
                f"whose remainder is 0 or >= {world_size}, or use fewer processes.")
        shard = copy.copy(self)
        shard.rank, shard.world_size = int(rank), int(world_size)
        return shard

    def global_batch_size(self, batch: int) -> int:
        """Samples in batch ``batch`` of the whole loader (all processes together)."""
        lo = batch * self.batch_size
        return min(self.batch_size, len(self.dataset) - lo)

    def positions(self, batch: int) -> slice:
        """Where this process's samples of batch ``batch`` sit in the epoch's :meth:`order`."""
        lo = batch * self.batch_size
        size = self.global_batch_size(batch)
        part, extra = divmod(size, self.world_size)
        first = lo + self.rank * part + min(self.rank, extra)
        return slice(first, first + part + (self.rank < extra))

    @property
    def num_batches(self) -> int:
        """Number of batches in one epoch."""
        return self._num_batches

    def __len__(self) -> int:
        return self._num_batches

    def order(self, epoch: int) -> Tensor:
        """Sample indices of ``epoch`` in the order they are batched.

        Args:
            epoch: Epoch number, ``>= 0``.

        Returns:
            int64 CPU tensor, a permutation of ``range(len(dataset))``. Shape ``[N]``.
        """
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}.")
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(n, generator=generator)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield the ``(x, y)`` batches of ``epoch``, skipping the first ``start`` batches.

        Args:
            epoch: Epoch number, ``>= 0``; it selects the sample order.
            start: Batches already consumed in this epoch, ``0 <= start <= num_batches``
                (``num_batches`` yields nothing: the epoch was complete).

        Returns:
            An iterator over ``(x [B, *input_shape], y [B])``.
        """
        if not _is_int(start) or not 0 <= start <= self._num_batches:
            raise ValueError(f"start must be an integer batch index in [0, {self._num_batches}] "
                             f"(num_batches of this loader), got {start!r}.")
        order = self.order(epoch)  # validates epoch now, not at the first next()
        return self._iterate(order if self.shuffle else None, start, epoch)

    def _iterate(self, order: Tensor | None, start: int, epoch: int
                 ) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.dataset.x, self.dataset.y
        if order is not None:
            order = order.to(y.device)
        for b in range(start, self._num_batches):
            # the augmentation draws are those of the whole batch: augment it, then cut
            whole = self.augment is not None and self.world_size > 1
            lo = b * self.batch_size
            part = slice(lo, lo + self.batch_size) if whole else self.positions(b)
            if order is None:
                xb, yb = x[part], y[part]             # views, no copy
            else:
                idx = order[part]                     # [B]
                xb, yb = x[idx], y[idx]
            if self.augment is not None:
                generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, b))
                xb = self.augment(xb, generator)
            if whole:
                mine = self.positions(b)
                xb, yb = xb[mine.start - lo:mine.stop - lo], yb[mine.start - lo:mine.stop - lo]
            yield xb, yb

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.batches(0)

    def __repr__(self) -> str:
        shard = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (f"BatchLoader(n={len(self.dataset)}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"augment={self.augment!r}, num_batches={self._num_batches}{shard})")
