"""Training-time augmentation: each operation does what it says, draws are reproducible and
resumable through BatchLoader, bad settings are named errors."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from snn5.data import ArrayDataset, Augment, BatchLoader, DataConfig


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_off_by_default_returns_the_batch_unchanged() -> None:
    x = torch.rand(4, 1, 5, 5)
    assert not Augment().active
    assert Augment()(x, gen()) is x


def test_shift_translates_every_frame_of_a_sample_by_the_same_offset() -> None:
    x = torch.zeros(64, 3, 2, 9, 9)                 # [B, T, C, H, W]
    x[..., 4, 4] = 1.0                              # one lit pixel in the centre of every frame
    out = Augment(shift=2)(x, gen())
    assert out.shape == x.shape
    seen = set()
    for b in range(64):
        where = out[b].nonzero()[:, -2:]            # [(T*C), 2] positions of the lit pixel
        assert len(where) == 6 and (where == where[0]).all()   # same place in every frame
        dy, dx = (where[0] - 4).tolist()
        assert abs(dy) <= 2 and abs(dx) <= 2
        seen.add((dy, dx))
    assert len(seen) > 10                           # offsets really vary over samples
    assert x.sum() == 64 * 6                        # input untouched


def test_shift_fills_with_zeros_and_keeps_content() -> None:
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    out = Augment(shift=1)(x, gen(3))
    # every non-zero output value is an input value at the shifted place
    nz = out[0, 0].nonzero()
    assert len(nz) >= 9
    shifted = out[0, 0][out[0, 0] > 0] - x[0, 0][(out[0, 0] > 0)]
    assert shifted.unique().numel() == 1           # one constant index offset (dy*4 + dx)


def test_hflip_mirrors_about_half_the_samples() -> None:
    x = torch.rand(200, 1, 3, 6)
    out = Augment(hflip=True)(x, gen())
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | kept).all() and 70 < int(flipped.sum()) < 130


def test_cutout_zeroes_one_square_at_most_c_by_c() -> None:
    x = torch.ones(50, 2, 10, 10)
    out = Augment(cutout=4)(x, gen())
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros <= 16).all() and (zeros >= 4).all()       # clipped at borders, never empty
    assert torch.equal(out[:, 0], out[:, 1])                 # the same square for every channel


def test_event_drop_thins_counts_binomially() -> None:
    x = torch.full((20, 4, 2, 8, 8), 5.0)
    out = Augment(event_drop=0.3)(x, gen())
    assert torch.equal(out, out.round()) and (out <= x).all() and (out >= 0).all()
    assert abs(float(out.mean()) - 3.5) < 0.1               # E = n (1 - p)


def test_event_drop_refuses_non_count_data() -> None:
    with pytest.raises(ValueError, match="event-count frames"):
        Augment(event_drop=0.1)(torch.rand(2, 3, 4, 4), gen())


def test_time_shift_moves_frames_and_zero_fills() -> None:
    x = torch.arange(1.0, 7.0).view(1, 6, 1).repeat(40, 1, 3)   # [B, T=6, F=3], frame t = t+1
    out = Augment(time_shift=2)(x, gen())
    for b in range(40):
        frames = out[b, :, 0]
        nz = frames[frames > 0]
        d = int(frames.nonzero()[0]) - int(nz[0] - 1)       # output step - source step
        assert abs(d) <= 2
        assert torch.equal(nz, torch.arange(nz[0], nz[0] + len(nz)))   # order kept
        assert len(nz) == 6 - abs(d)


def test_time_shift_needs_time_first_samples() -> None:
    with pytest.raises(ValueError, match="time-first"):
        Augment(time_shift=1).check_sample_shape((1, 28, 28))
    with pytest.raises(ValueError, match="last two axes"):
        Augment(shift=1).check_sample_shape((64,))


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValidationError, match="shift"):
        Augment(shift=-1)
    with pytest.raises(ValidationError, match="event_drop"):
        Augment(event_drop=1.0)
    with pytest.raises(ValidationError, match="rotate"):
        DataConfig(name="digits", augment={"rotate": 10})


def test_batch_loader_augments_reproducibly_and_resumably() -> None:
    ds = ArrayDataset(torch.rand(30, 1, 6, 6), torch.arange(30) % 3)
    loader = BatchLoader(ds, 8, shuffle=True, seed=1, augment=Augment(shift=1, cutout=2))
    full = [x for x, _ in loader.batches(epoch=2)]
    again = [x for x, _ in loader.batches(epoch=2)]
    resumed = [x for x, _ in loader.batches(epoch=2, start=2)]
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert all(torch.equal(a, b) for a, b in zip(full[2:], resumed))
    other_epoch = [x for x, _ in loader.batches(epoch=3)]
    assert not torch.equal(full[0], other_epoch[0])
    plain = BatchLoader(ds, 8, shuffle=True, seed=1)
    assert not torch.equal(full[0], next(iter(plain.batches(epoch=2)))[0])
    state = torch.random.get_rng_state()
    list(loader.batches(epoch=0))
    assert torch.equal(state, torch.random.get_rng_state())   # global RNG untouched
