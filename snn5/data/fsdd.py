"""Free Spoken Digit Dataset (FSDD): 3,000 recordings of spoken digits 0-9, encoded as spikes.

Files: ``<root>/fsdd/recordings/{digit}_{speaker}_{index}.wav`` (8 kHz mono 16-bit PCM; 6
speakers x 10 digits x 50 takes), as in GitHub ``Jakobovski/free-spoken-digit-dataset`` at
commit :data:`FSDD_COMMIT`. Official split (upstream README): takes 0-4 are the test set
(300 files), takes 5-49 the training set (2,700 files).

Each recording goes through :class:`snn5.data.audio.AudioFrontend` (mel filterbank -> log
energies per 10 ms frame -> ON/OFF threshold-crossing events), so a sample is a sequence of event
counts ``[T, 2, n_mels]`` (``[100, 2, 32]`` with the defaults: time, polarity ON/OFF, mel band
from low to high); ``x.transpose(0, 1)`` of a batch gives the time-major ``[T, B, ...]`` that
snn5 models take.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from snn5.data import download as _download
from snn5.data.audio import AudioFrontend, read_wav
from snn5.data.base import ArrayDataset, DatasetFileError, SplitData, stratified_split
from snn5.data.root import DATA_ENV_VAR

__all__ = ["FSDD_COMMIT", "FSDD_FILES", "FSDD_SHA256", "FSDD_URL", "download_fsdd", "load_fsdd",
           "load_fsdd_logmel"]

logger = logging.getLogger(__name__)

FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
"""Upstream commit whose ``recordings/`` the files must match (2024-05-02, v1.0.10-27)."""

FSDD_URL = ("https://raw.githubusercontent.com/Jakobovski/free-spoken-digit-dataset/"
            f"{FSDD_COMMIT}/recordings/")
"""Base URL of the recordings at :data:`FSDD_COMMIT` (immutable: the commit is pinned)."""

FSDD_SHA256 = "dbd573d7cafe79c4b49f65718115e1304e24e067fa39eff18a660dc6cb9c360f"
"""sha256 of the lines ``"<file name> <sha256 of the file>\\n"`` of all 3,000 recordings,
sorted by name: one checksum for the whole set (also the dataset checksum of every run)."""

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TAKES = 50
TEST_TAKES = 5  # takes 0..4 are the official test set
SAMPLE_RATE = 8000

FSDD_FILES: tuple[str, ...] = tuple(sorted(
    f"{digit}_{speaker}_{take}.wav"
    for digit in range(10) for speaker in SPEAKERS for take in range(TAKES)))
"""The 3,000 file names."""


def _fix(directory: Path) -> str:
    return (f"To fix: copy the FSDD recordings (GitHub Jakobovski/free-spoken-digit-dataset, "
            f"commit {FSDD_COMMIT[:7]}, folder recordings/) into {directory}, "
            f"or point {DATA_ENV_VAR} / --data-dir at the folder that contains fsdd/, "
            "or fetch them with download=True (DataConfig(download=True)).")


def _listing(paths: list[Path], limit: int = 10) -> str:
    lines = [f"  - {p}" for p in paths[:limit]]
    if len(paths) > limit:
        lines.append(f"  ... and {len(paths) - limit} more")
    return "\n".join(lines)


def _set_digest(directory: Path) -> tuple[str, dict[str, str]]:
    per_file = {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
                for name in FSDD_FILES}
    text = "".join(f"{name} {per_file[name]}\n" for name in FSDD_FILES)
    return hashlib.sha256(text.encode()).hexdigest(), per_file


def _manifest(directory: Path) -> dict[str, str]:
    """``name -> sha256`` from a ``MANIFEST.tsv`` beside ``recordings/`` (if there is one)."""
    path = directory.parent / "MANIFEST.tsv"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].startswith("recordings/"):
            out[parts[0].removeprefix("recordings/")] = parts[2]
    return out


def _verify_checksum(directory: Path) -> None:
    digest, per_file = _set_digest(directory)
    if digest == FSDD_SHA256:
        return
    known = _manifest(directory)
    bad = [directory / n for n in FSDD_FILES if n in known and known[n] != per_file[n]]
    where = (f"these files differ from MANIFEST.tsv:\n{_listing(bad)}" if bad else
             "(no MANIFEST.tsv with per-file checksums to say which file differs)")
    raise DatasetFileError(f"FSDD: the recordings in {directory} do not match commit "
                           f"{FSDD_COMMIT[:7]}: set sha256 {digest}, expected {FSDD_SHA256}; "
                           f"{where}\nReplace the corrupt files. {_fix(directory)}",
                           paths=bad or [directory])


def download_fsdd(root: Path) -> None:
    """Download the FSDD recordings missing under ``<root>/fsdd/recordings/``.

    Each file comes from :data:`FSDD_URL` (the pinned commit), is written to a temp file and
    renamed into place. The whole set is then checked against :data:`FSDD_SHA256`.

    Raises:
        DatasetFileError: A file could not be fetched, or the set does not match the checksum.
    """
    directory = Path(root) / "fsdd" / "recordings"
    directory.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FSDD_FILES if not (directory / name).is_file()]
    if missing:
        logger.info("downloading %d FSDD recordings from %s", len(missing), FSDD_URL)
    for name in missing:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                _download.fetch_url(FSDD_URL + name, out)
            os.replace(tmp, directory / name)
        except OSError as exc:
            raise DatasetFileError(f"could not download {FSDD_URL + name} -> {directory / name} "
                                   f"({type(exc).__name__}: {exc}). {_fix(directory)}",
                                   paths=[directory / name]) from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
    _verify_checksum(directory)


def load_fsdd_logmel(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
                     download: bool = False) -> SplitData:
    """FSDD as normalised log-mel images ``[1, 100, 32]`` (:func:`load_fsdd` with
    ``representation="log_mel"``): the ANN input of the conversion track."""
    return load_fsdd(root, val_fraction=val_fraction, split_seed=split_seed, download=download,
                     representation="log_mel")


def load_fsdd(root: Path, *, val_fraction: float = 0.1, split_seed: int = 0,
              download: bool = False, frontend: AudioFrontend = AudioFrontend(),
              representation: str = "events") -> SplitData:
    """Load FSDD from ``<root>/fsdd/recordings/`` as spike trains (or log-mel images), split
    train / val / test.

    Every load checks that all 3,000 files are present, readable 8 kHz mono 16-bit WAV, and
    match :data:`FSDD_SHA256`. The test set is the official one (takes 0-4); the validation set
    is a stratified ``val_fraction`` of the 2,700 training recordings drawn with ``split_seed``.

    Args:
        root: Data root (see :func:`snn5.data.resolve_data_dir`).
        val_fraction: Share of the training recordings used for validation, ``0 < v < 1``.
        split_seed: Seed of the validation split.
        download: Fetch missing files first (needs internet).
        frontend: The audio front end (:class:`~snn5.data.audio.AudioFrontend`).
        representation: ``"events"`` (spike trains for SNNs) or ``"log_mel"`` (the normalised
            log-mel spectrogram as a one-channel image ``[1, T, n_mels]`` in ``[0, 1]``, the
            input of an ANN to convert; registered as ``fsdd_logmel``).

    Returns:
        The split dataset. ``x``: float32 event counts ``[N, T, 2, n_mels]`` (polarity 0 = ON,
        1 = OFF; one step per ``frontend.hop_length`` seconds), or log-mel images
        ``[N, 1, T, n_mels]``; ``y``: int64 digits 0..9. With the defaults: 2,430 train / 270
        val / 300 test, samples ``[100, 2, 32]`` (``[1, 100, 32]``).

    Raises:
        DatasetFileError: A file is missing, unreadable, not 8 kHz mono 16-bit, or the set does
            not match the checksum; the message names the file(s) and the fix.
    """
    if not isinstance(frontend, AudioFrontend):
        raise TypeError(f"frontend must be an AudioFrontend, got {type(frontend).__name__}")
    if representation not in ("events", "log_mel"):
        raise ValueError(f"representation must be 'events' or 'log_mel', got {representation!r}")
    if frontend.sample_rate != SAMPLE_RATE:
        raise ValueError(f"FSDD is sampled at {SAMPLE_RATE} Hz; build the front end with "
                         f"AudioFrontend(sample_rate={SAMPLE_RATE}), got {frontend.sample_rate}")
    directory = Path(root) / "fsdd" / "recordings"
    if download:
        download_fsdd(root)
    missing = [directory / name for name in FSDD_FILES if not (directory / name).is_file()]
    if missing:
        raise DatasetFileError(f"FSDD: {len(missing)} of {len(FSDD_FILES)} recordings missing:\n"
                               f"{_listing(missing)}\n{_fix(directory)}", paths=missing)
    signals, labels, test, bad = [], [], [], []
    for name in FSDD_FILES:
        path = directory / name
        try:
            signal, rate = read_wav(path)
        except DatasetFileError as exc:
            bad.append((path, str(exc)))
            continue
        if rate != SAMPLE_RATE:
            bad.append((path, f"{path} is sampled at {rate} Hz, expected {SAMPLE_RATE} Hz"))
            continue
        digit, _speaker, take = name.removesuffix(".wav").split("_")
        signals.append(signal)
        labels.append(int(digit))
        test.append(int(take) < TEST_TAKES)
    if bad:
        text = "\n".join(f"  - {msg}" for _, msg in bad[:10])
        raise DatasetFileError(f"FSDD: {len(bad)} recording(s) unreadable or malformed:\n{text}"
                               f"\n{_fix(directory)}", paths=[p for p, _ in bad])
    _verify_checksum(directory)

    level = torch.stack([frontend.levels(s) for s in signals], dim=1)        # [T, N, n_mels]
    if representation == "events":
        x_all = frontend.events(level).transpose(0, 1).contiguous()          # [N, T, 2, n_mels]
        shape = (frontend.num_frames, *frontend.event_shape)
        kind = (f"ON/OFF threshold-crossing events every {frontend.hop_length * 1e3:g} ms, "
                f"{frontend.num_frames} steps")
    else:
        x_all = level.transpose(0, 1).unsqueeze(1).contiguous()              # [N, 1, T, n_mels]
        shape = (1, frontend.num_frames, frontend.n_mels)
        kind = (f"normalised log-mel image, {frontend.num_frames} frames of "
                f"{frontend.hop_length * 1e3:g} ms, {frontend.floor_db:g} dB range")
    y_all = torch.tensor(labels, dtype=torch.int64)
    is_test = np.asarray(test)
    train_all = np.flatnonzero(~is_test)
    train_pos, val_pos = stratified_split(y_all.numpy()[train_all], val_fraction, split_seed)

    def subset(idx: np.ndarray) -> ArrayDataset:
        index = torch.from_numpy(idx.astype(np.int64))
        return ArrayDataset(x_all[index], y_all[index])

    train, val = subset(train_all[train_pos]), subset(train_all[val_pos])
    test_set = subset(np.flatnonzero(is_test))
    description = (f"FSDD (Free Spoken Digit Dataset, {len(FSDD_FILES)} recordings at 8 kHz -> "
                   f"{frontend.n_mels} mel bands, {kind}): "
                   f"train {len(train)} / val {len(val)} / test {len(test_set)}")
    logger.debug("loaded fsdd: %s", description)
    name = "fsdd" if representation == "events" else "fsdd_logmel"
    return SplitData(name=name, train=train, val=val, test=test_set,
                     input_shape=shape, num_classes=10,
                     checksum=FSDD_SHA256, description=description)
