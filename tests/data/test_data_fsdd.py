"""FSDD from the real WAV files and the audio front end against hand-checked cases."""

from __future__ import annotations

import math
import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from snn5.data import DATASETS, DatasetFileError, SplitData
from snn5.data.audio import (
    AudioFrontend, frame_signal, hz_to_mel, log_mel_spectrogram, mel_filterbank, mel_to_hz,
    normalize_db, read_wav, threshold_crossing,
)
from snn5.data.fsdd import FSDD_FILES, load_fsdd

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
FIX_HINTS = ("SNN5_DATA", "--data-dir", "download=True", "free-spoken-digit-dataset")


@pytest.fixture(scope="module")
def fsdd_root() -> Path:
    for root in [Path(p) for p in (os.environ.get("SNN5_DATA"),) if p] + [SHARED]:
        if (root / "fsdd" / "recordings" / FSDD_FILES[0]).is_file():
            return root.resolve()
    pytest.skip("FSDD recordings not found (need <root>/fsdd/recordings/*.wav; set SNN5_DATA)")


@pytest.fixture(scope="module")
def fsdd(fsdd_root: Path) -> SplitData:
    return load_fsdd(fsdd_root)


def _linked_copy(src_root: Path, dst_root: Path, *, skip: str | None = None) -> Path:
    """A data root whose recordings are symlinks to the real ones (minus ``skip``)."""
    rec = dst_root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for name in FSDD_FILES:
        if name != skip:
            (rec / name).symlink_to(src_root / "fsdd" / "recordings" / name)
    return rec


def _write_wav(path: Path, samples: np.ndarray, rate: int = 8000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2").tobytes())


# ----------------------------------------------------------------------------- dataset

def test_split_sizes_shapes_and_classes(fsdd):
    assert fsdd.name == "fsdd" and fsdd.num_classes == 10
    assert (len(fsdd.train), len(fsdd.val), len(fsdd.test)) == (2430, 270, 300)
    assert fsdd.input_shape == (100, 2, 32)
    for ds in (fsdd.train, fsdd.val, fsdd.test):
        assert ds.x.shape[1:] == (100, 2, 32) and ds.x.dtype == torch.float32
        assert float(ds.x.min()) == 0.0 and torch.equal(ds.x, ds.x.round())   # event counts
    assert torch.bincount(fsdd.test.y, minlength=10).tolist() == [30] * 10   # 6 speakers x 5
    train_val = torch.cat([fsdd.train.y, fsdd.val.y])
    assert torch.bincount(train_val, minlength=10).tolist() == [270] * 10
    assert "train 2430 / val 270 / test 300" in fsdd.description
    assert DATASETS.get("fsdd") is load_fsdd


def test_log_mel_images_share_the_split_and_match_the_events(fsdd, fsdd_root):
    """The log-mel representation: [1, 100, 32] images in [0, 1], same samples and labels in
    the same order; the events are the threshold crossings of exactly these levels."""
    from snn5.data import DATASETS
    from snn5.data.audio import AudioFrontend

    img = DATASETS.get("fsdd_logmel")(fsdd_root, val_fraction=0.1, split_seed=0, download=False)
    assert img.name == "fsdd_logmel" and img.input_shape == (1, 100, 32)
    for a, b in ((img.train, fsdd.train), (img.val, fsdd.val), (img.test, fsdd.test)):
        assert a.x.shape == (len(b), 1, 100, 32) and torch.equal(a.y, b.y)
    assert 0.0 <= float(img.train.x.min()) and float(img.train.x.max()) <= 1.0
    events = AudioFrontend().events(img.test.x[:, 0].transpose(0, 1)).transpose(0, 1)
    assert torch.equal(events, fsdd.test.x)
    with pytest.raises(ValueError, match="representation must be"):
        load_fsdd(fsdd_root, representation="mel")


def test_labels_and_test_split_come_from_the_file_names(fsdd, fsdd_root):
    test_names = [n for n in FSDD_FILES if int(n[:-4].split("_")[2]) < 5]   # takes 0..4
    front = AudioFrontend()
    for name in ("0_george_0.wav", "7_jackson_3.wav", "9_yweweler_4.wav"):
        i = test_names.index(name)
        signal, _ = read_wav(fsdd_root / "fsdd" / "recordings" / name)
        assert int(fsdd.test.y[i]) == int(name[0])
        assert torch.equal(fsdd.test.x[i], front(signal))


def test_missing_file_is_named(fsdd_root, tmp_path):
    _linked_copy(fsdd_root, tmp_path, skip="3_theo_17.wav")
    with pytest.raises(DatasetFileError) as info:
        load_fsdd(tmp_path)
    message = str(info.value)
    assert "1 of 3000 recordings missing" in message and "3_theo_17.wav" in message
    assert all(hint in message for hint in FIX_HINTS)
    assert info.value.paths == (tmp_path / "fsdd" / "recordings" / "3_theo_17.wav",)


def test_unreadable_file_is_named(fsdd_root, tmp_path):
    rec = _linked_copy(fsdd_root, tmp_path, skip="5_lucas_20.wav")
    (rec / "5_lucas_20.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(DatasetFileError, match=r"5_lucas_20\.wav is not a readable WAV") as info:
        load_fsdd(tmp_path)
    assert "SNN5_DATA" in str(info.value)


def test_changed_samples_fail_the_checksum_and_manifest_names_the_file(fsdd_root, tmp_path):
    name = "2_nicolas_8.wav"
    rec = _linked_copy(fsdd_root, tmp_path, skip=name)
    raw = bytearray((fsdd_root / "fsdd" / "recordings" / name).read_bytes())
    raw[-2] ^= 0x01                                      # one bit of the last sample
    (rec / name).write_bytes(bytes(raw))
    with pytest.raises(DatasetFileError, match="do not match commit 26eb9aa") as info:
        load_fsdd(tmp_path)
    assert "no MANIFEST.tsv" in str(info.value)
    shutil.copy(fsdd_root / "fsdd" / "MANIFEST.tsv", tmp_path / "fsdd" / "MANIFEST.tsv")
    with pytest.raises(DatasetFileError, match=name) as info:
        load_fsdd(tmp_path)
    assert info.value.paths == (rec / name,)


# ----------------------------------------------------------------------------- front end

def test_read_wav_roundtrip_and_bad_formats(tmp_path):
    samples = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    _write_wav(tmp_path / "ok.wav", samples)
    signal, rate = read_wav(tmp_path / "ok.wav")
    assert rate == 8000
    assert signal.tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    _write_wav(tmp_path / "stereo.wav", np.zeros(8, np.int16), channels=2)
    with pytest.raises(DatasetFileError, match=r"stereo\.wav has 2 channel\(s\).*mono 16-bit"):
        read_wav(tmp_path / "stereo.wav")
    with pytest.raises(DatasetFileError, match=r"missing\.wav is not a readable WAV"):
        read_wav(tmp_path / "missing.wav")


def test_mel_scale_hand_values():
    assert float(hz_to_mel(700.0)) == pytest.approx(2595 * math.log10(2))   # 781.17 mel
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)       # by design
    assert float(mel_to_hz(hz_to_mel(1234.5))) == pytest.approx(1234.5)


def test_mel_filterbank_triangles():
    bank = mel_filterbank(4, 16, 8000.0, f_min=0.0, f_max=4000.0)          # bins every 500 Hz
    assert bank.shape == (4, 9) and float(bank.min()) == 0.0
    # edges equally spaced in mel between 0 and 4000 Hz: the first filter's centre
    centre = float(mel_to_hz(hz_to_mel(4000.0) / 5))                          # 458 Hz
    upper = float(mel_to_hz(2 * hz_to_mel(4000.0) / 5))                       # 1,040 Hz
    assert bank[0, 1] == pytest.approx((upper - 500.0) / (upper - centre))    # falling side
    assert bank[0, 0] == 0.0 and bank[0, 3] == 0.0
    with pytest.raises(ValueError, match="cover no FFT bin.*increase n_fft"):
        mel_filterbank(64, 32, 8000.0)


def test_pure_tone_lands_in_its_mel_band():
    # 32 bands from 20 Hz to 4 kHz are 64.07 mel apart: 1 kHz (= 1000 mel) sits
    # (1000 - 31.75) / 64.07 = 15.1 band steps above the lower edge, i.e. at the centre of
    # band 14 (centres at edge + (i + 1) * step). Worked by hand, checked by the formula below.
    t = torch.arange(8000) / 8000.0
    tone = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)
    front = AudioFrontend()
    db = front.log_mel(tone)                                                  # [100, 32]
    assert db.shape == (100, 32)
    assert int(db[10:90].mean(0).argmax()) == 14
    step = (float(hz_to_mel(4000.0)) - float(hz_to_mel(20.0))) / 33
    assert round((1000.0 - float(hz_to_mel(20.0))) / step) - 1 == 14
    t2 = 0.5 * torch.sin(2 * math.pi * 300.0 * t)
    assert int(front.log_mel(t2)[10:90].mean(0).argmax()) < 14                # lower tone


def test_frames_zero_pad_and_cut():
    x = torch.arange(10.0)
    frames = frame_signal(x, frame_length=4, hop_length=3, num_frames=4)
    assert frames.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 0, 0, 0]]
    assert frame_signal(x, 4, 3, 2).tolist() == [[0, 1, 2, 3], [3, 4, 5, 6]]
    with pytest.raises(ValueError, match="mono signal"):
        frame_signal(x[None], 4, 3, 2)


def test_log_mel_of_silence_is_the_floor_and_normalization():
    db = log_mel_spectrogram(torch.zeros(800), 8000, n_mels=8, frame_length=200,
                             hop_length=80, n_fft=256, num_frames=5)
    assert torch.allclose(db, torch.full((5, 8), -100.0))                     # 10 log10(1e-10)
    level = normalize_db(torch.tensor([[-70.0, -40.0], [-10.0, 0.0]]), floor_db=60.0)
    assert level.flatten().tolist() == pytest.approx([0.0, 1 / 3, 5 / 6, 1.0])  # -40 dB: 20/60
    quiet = normalize_db(torch.tensor([-100.0, -70.0]), 60.0, min_peak_db=-40.0)
    assert quiet.tolist() == [0.0, 0.5]                                       # not blown up


def test_threshold_crossing_hand_case():
    x = torch.tensor([[0.0], [0.25], [0.25], [0.05], [0.12]])                # [T=5, F=1]
    z = threshold_crossing(x, 0.1)                                            # [5, 2, 1]
    assert z.shape == (5, 2, 1)
    # ref 0 -> +2 ON at t=1 (ref 0.2) -> t=3: 0.05 - 0.2 = -0.15 -> 1 OFF (ref 0.1)
    # -> t=4: 0.12 - 0.1 = 0.02 -> nothing
    assert z[:, 0, 0].tolist() == [0, 2, 0, 0, 0]
    assert z[:, 1, 0].tolist() == [0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="threshold must be > 0"):
        threshold_crossing(x, 0.0)


def test_frontend_events_and_validation():
    front = AudioFrontend()
    assert front.num_frames == 100 and front.event_shape == (2, 32)
    assert float(front(torch.zeros(4000)).sum()) == 0.0                       # silence: no events
    t = torch.arange(4000) / 8000.0
    events = front(0.5 * torch.sin(2 * math.pi * 1000.0 * t))                 # 0.5 s tone
    assert int(events[:5, 0].sum(0).argmax()) == 14                           # onset: ON in band 14
    assert int(events[48:55, 1].sum(0).argmax()) == 14                        # offset: OFF there
    with pytest.raises(ValueError, match="hop_length must be a positive.*seconds"):
        AudioFrontend(hop_length=-1)
    with pytest.raises(ValueError, match="frame_length=25 s.*seconds"):
        AudioFrontend(frame_length=25, duration=10)
