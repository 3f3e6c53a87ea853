"""ArrayDataset / SplitData checks and the BatchLoader contract (deterministic, resumable)."""

from __future__ import annotations

import pytest
import torch

from snn5.data import ArrayDataset, BatchLoader, SplitData


def make_dataset(n: int = 103, features: int = 3) -> ArrayDataset:
    """Sample i has x[i] == i in every feature, so a batch reveals which samples it holds."""
    x = torch.arange(n, dtype=torch.float32)[:, None].expand(n, features).contiguous()
    return ArrayDataset(x, torch.arange(n) % 7)


def ids(batches) -> list[list[int]]:
    out = []
    for x, y in batches:
        assert torch.equal(y, x[:, 0].long() % 7)  # x and y stay paired
        out.append(x[:, 0].long().tolist())
    return out


# ---------------------------------------------------------------- ArrayDataset / SplitData


def test_array_dataset_len_and_getitem():
    ds = make_dataset(10)
    assert len(ds) == 10
    x, y = ds[4]
    assert x.tolist() == [4.0, 4.0, 4.0] and y.item() == 4


@pytest.mark.parametrize(("x", "y", "error", "match"), [
    (torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.int64), TypeError,
     "float32"),
    (torch.zeros(4, 2), torch.zeros(4, dtype=torch.int32), TypeError, "int64"),
    (torch.zeros(4, 2), torch.zeros(5, dtype=torch.int64), ValueError, "differ in length"),
    (torch.zeros(4, 2), torch.zeros(4, 1, dtype=torch.int64), ValueError, r"shape \[N\]"),
    ([[0.0]] * 4, torch.zeros(4, dtype=torch.int64), TypeError, "torch tensors"),
])
def test_array_dataset_rejects_bad_input(x, y, error, match):
    with pytest.raises(error, match=match):
        ArrayDataset(x, y)


def test_array_dataset_is_frozen():
    ds = make_dataset(4)
    with pytest.raises(AttributeError):
        ds.x = torch.zeros(4, 3)


def test_split_data_checks_input_shape():
    ds = make_dataset(8)
    kwargs = dict(name="toy", train=ds, val=ds, test=ds, num_classes=7, checksum="0" * 64,
                  description="toy")
    assert SplitData(input_shape=(3,), **kwargs).input_shape == (3,)
    with pytest.raises(ValueError, match=r"input_shape says \(1, 3\)"):
        SplitData(input_shape=(1, 3), **kwargs)


# ---------------------------------------------------------------- BatchLoader


@pytest.mark.parametrize(("n", "batch_size", "drop_last", "expected"), [
    (103, 10, False, 11), (103, 10, True, 10), (100, 10, False, 10), (100, 10, True, 10),
    (5, 1, False, 5), (5, 7, False, 1),
])
def test_num_batches_and_sizes(n, batch_size, drop_last, expected):
    loader = BatchLoader(make_dataset(n), batch_size, shuffle=True, drop_last=drop_last)
    assert loader.num_batches == len(loader) == expected
    sizes = [len(b) for b in ids(loader.batches(0))]
    assert len(sizes) == expected
    assert all(s == batch_size for s in sizes[:-1])
    assert sizes[-1] == (batch_size if drop_last else n - batch_size * (expected - 1))


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_every_sample_exactly_once_per_epoch(epoch, drop_last):
    n, batch_size = 103, 10
    seen = [i for b in ids(BatchLoader(make_dataset(n), batch_size, shuffle=True, seed=3,
                                       drop_last=drop_last).batches(epoch)) for i in b]
    assert len(seen) == len(set(seen))
    if drop_last:
        assert len(seen) == 100 and set(seen) <= set(range(n))
    else:
        assert sorted(seen) == list(range(n))


def test_same_seed_same_batches_different_seed_different():
    ds = make_dataset()
    a = ids(BatchLoader(ds, 8, shuffle=True, seed=11).batches(2))
    b = ids(BatchLoader(ds, 8, shuffle=True, seed=11).batches(2))
    c = ids(BatchLoader(ds, 8, shuffle=True, seed=12).batches(2))
    assert a == b
    assert a != c


def test_epochs_give_different_orders():
    loader = BatchLoader(make_dataset(), 8, shuffle=True, seed=0)
    orders = [tuple(i for b in ids(loader.batches(e)) for i in b) for e in range(4)]
    assert len(set(orders)) == 4
    assert orders[1] == tuple(i for b in ids(loader.batches(1)) for i in b)  # re-iterable


def test_seed_and_epoch_are_not_interchangeable():
    ds = make_dataset()
    a = ids(BatchLoader(ds, 8, shuffle=True, seed=0).batches(1))
    b = ids(BatchLoader(ds, 8, shuffle=True, seed=1).batches(0))
    assert a != b


@pytest.mark.parametrize("shuffle", [True, False])
def test_resume_mid_epoch_sees_the_tail(shuffle):
    loader = BatchLoader(make_dataset(), 10, shuffle=shuffle, seed=7)
    for epoch in (0, 3):
        full = ids(loader.batches(epoch))
        for start in range(loader.num_batches + 1):
            assert ids(loader.batches(epoch, start=start)) == full[start:]


def test_resume_with_a_fresh_loader_after_global_rng_use():
    """A resumed process has a different global RNG state; the batches must not care."""
    ds = make_dataset()
    torch.manual_seed(1)
    full = ids(BatchLoader(ds, 10, shuffle=True, seed=5).batches(4))
    torch.manual_seed(2)
    torch.rand(100)
    assert ids(BatchLoader(ds, 10, shuffle=True, seed=5).batches(4, start=6)) == full[6:]


def test_global_rng_untouched():
    loader = BatchLoader(make_dataset(), 10, shuffle=True, seed=0)
    state = torch.get_rng_state()
    list(loader.batches(0))
    list(loader)
    assert torch.equal(state, torch.get_rng_state())


def test_no_shuffle_keeps_dataset_order():
    loader = BatchLoader(make_dataset(25), 10, shuffle=False)
    assert ids(loader.batches(3)) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


def test_iter_is_epoch_zero():
    loader = BatchLoader(make_dataset(), 16, shuffle=True, seed=9)
    assert ids(loader) == ids(loader.batches(0))


def test_order_is_a_permutation():
    loader = BatchLoader(make_dataset(50), 16, shuffle=True, seed=9)
    order = loader.order(3)
    assert order.dtype == torch.int64
    assert sorted(order.tolist()) == list(range(50))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        BatchLoader(make_dataset(), batch_size, shuffle=True)


def test_loader_that_would_yield_nothing_is_rejected():
    with pytest.raises(ValueError, match="no batch"):
        BatchLoader(make_dataset(5), 8, shuffle=True, drop_last=True)


def test_needs_array_dataset():
    with pytest.raises(TypeError, match="ArrayDataset"):
        BatchLoader([(torch.zeros(2), 0)], 1, shuffle=False)


@pytest.mark.parametrize("start", [-1, 12, 1.0])
def test_bad_start(start):
    loader = BatchLoader(make_dataset(), 10, shuffle=True)  # 11 batches
    with pytest.raises(ValueError, match=r"start must be an integer batch index in \[0, 11\]"):
        loader.batches(0, start=start)


@pytest.mark.parametrize("epoch", [-1, 0.5])
def test_bad_epoch(epoch):
    loader = BatchLoader(make_dataset(), 10, shuffle=True)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        loader.batches(epoch)


# ---------------------------------------------------------------- shards (data parallelism)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_shards_together_are_the_one_process_batches(world, drop_last):
    loader = BatchLoader(make_dataset(103), 10, shuffle=True, seed=3, drop_last=drop_last)
    shards = [loader.shard(r, world) for r in range(world)]
    whole = ids(loader.batches(epoch=2))
    parts = [ids(s.batches(epoch=2)) for s in shards]
    for b, batch in enumerate(whole):
        joined = [i for part in parts for i in part[b]]
        assert joined == batch                               # same samples, same order
        sizes = [len(part[b]) for part in parts]
        assert max(sizes) - min(sizes) <= 1
    order = loader.order(2)
    for s, part in zip(shards, parts):                      # positions name the shard's samples
        for b in range(loader.num_batches):
            assert order[s.positions(b)].tolist() == part[b]


def test_shard_resumes_mid_epoch():
    shard = BatchLoader(make_dataset(103), 10, shuffle=True, seed=0).shard(1, 2)
    assert ids(shard.batches(epoch=1, start=4)) == ids(shard.batches(epoch=1))[4:]


def test_shards_cut_the_augmented_whole_batch():
    """The augmentation draws are those of the one-process batch, whatever the shard."""
    def jitter(x, generator):
        return x + torch.rand(x.shape[0], 1, generator=generator)   # one draw per sample

    ds = make_dataset(45)
    loader = BatchLoader(ds, 16, shuffle=True, seed=1, augment=jitter)
    whole = [x for x, _ in loader.batches(epoch=0)]
    parts = [[x for x, _ in loader.shard(r, 2).batches(epoch=0)] for r in range(2)]
    for b, x in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][b], parts[1][b]]), x)


def test_shard_rejects_a_batch_smaller_than_the_processes():
    loader = BatchLoader(make_dataset(41), 10, shuffle=False)     # last batch: 1 sample
    with pytest.raises(ValueError, match="smallest batch has 1 samples.*batch_size"):
        loader.shard(0, 2)
    assert loader.world_size == 1 and len(ids(loader.batches(0))[-1]) == 1


@pytest.mark.parametrize(("rank", "world"), [(2, 2), (-1, 2), (0, 0), (0, 1.5)])
def test_shard_rejects_bad_rank_or_world(rank, world):
    with pytest.raises(ValueError, match="rank|world_size"):
        BatchLoader(make_dataset(20), 5, shuffle=False).shard(rank, world)
