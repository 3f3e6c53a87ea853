"""Audio front end written for snn5: WAV reading, a mel filterbank, log energies per frame and a
threshold-crossing (send-on-delta) spike encoder. torch/numpy and the standard library only.

The chain, for a mono signal ``s`` sampled at ``sample_rate`` Hz:

1. frames of ``frame_length`` seconds every ``hop_length`` seconds, Hann window;
2. power spectrum ``|rfft(frame, n_fft)|^2`` of each frame;
3. a bank of ``n_mels`` triangular filters equally spaced on the mel scale
   (``mel = 2595 log10(1 + f / 700)``, O'Shaughnessy 1987, the HTK formula); peak gain 1;
4. log energy per band in dB, ``10 log10(E + eps)``;
5. per-utterance gain control: dB relative to the loudest band/frame of the utterance, floored at
   ``-floor_db`` and mapped to ``[0, 1]`` (0: the floor, 1: the loudest band);
6. threshold crossing (send-on-delta, Miskowicz 2006): a band emits an ON event each time its
   level rises by ``threshold`` above a reference that follows it, an OFF event each time it falls
   by ``threshold`` (the event coding of a silicon cochlea's level-crossing channels).

Example:
    >>> front = AudioFrontend()                       # 8 kHz, 1 s, 10 ms frames, 32 mel bands
    >>> spikes = front(torch.randn(8000) * 0.1)       # [T=100, 2, 32]: ON events, OFF events
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from snn5.data.base import DatasetFileError

__all__ = [
    "AudioFrontend", "frame_signal", "hz_to_mel", "log_mel_spectrogram", "mel_filterbank",
    "mel_to_hz", "normalize_db", "read_wav", "threshold_crossing",
]

EPS = 1e-10
"""Energy floor of the log mel energies: silence is ``10 log10(EPS) = -100`` dB."""


def read_wav(path: str | Path) -> tuple[Tensor, int]:
    """Read a mono 16-bit PCM WAV file with Python's ``wave`` module.

    Args:
        path: The ``.wav`` file.

    Returns:
        ``(signal, sample_rate)``: float32 samples in ``[-1, 1)`` (shape ``[S]``) and the rate
        in Hz.

    Raises:
        DatasetFileError: The file is missing, is not a readable WAV file, is not mono 16-bit
            PCM, or holds no samples; the message names the file.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as f:
            channels, width, rate = f.getnchannels(), f.getsampwidth(), f.getframerate()
            n = f.getnframes()
            raw = f.readframes(n)
    except (OSError, EOFError, wave.Error) as exc:
        raise DatasetFileError(f"{path} is not a readable WAV file ({type(exc).__name__}: {exc}). "
                               "Replace it with an intact copy.", paths=[path]) from exc
    if channels != 1 or width != 2:
        raise DatasetFileError(f"{path} has {channels} channel(s) of {8 * width}-bit samples; "
                               "expected mono 16-bit PCM. Convert it (e.g. `sox in.wav -c 1 -b 16 "
                               "out.wav`) or replace it with an intact copy.", paths=[path])
    if n == 0 or len(raw) != 2 * n:
        raise DatasetFileError(f"{path} holds {len(raw)} bytes of samples, expected {2 * n} "
                               f"({n} frames, at least 1): the file is truncated. Replace it "
                               "with an intact copy.", paths=[path])
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return torch.from_numpy(samples), rate


def hz_to_mel(f: Tensor | float) -> Tensor:
    """Mel of a frequency in Hz: ``2595 log10(1 + f / 700)`` (HTK)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: Tensor | float) -> Tensor:
    """Inverse of :func:`hz_to_mel`: ``700 (10^(m / 2595) - 1)``."""
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: float, *, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    """Triangular filters equally spaced on the mel scale, as a matrix on the rfft bins.

    Filter ``m`` rises linearly from the edge frequency ``f[m]`` to its centre ``f[m + 1]``
    (gain 1) and falls back to 0 at ``f[m + 2]``, where ``f`` are ``n_mels + 2`` points equally
    spaced in mel between ``f_min`` and ``f_max``.

    Args:
        n_mels: Number of bands.
        n_fft: FFT length; the spectrum has ``n_fft // 2 + 1`` bins at ``k * sample_rate / n_fft``.
        sample_rate: Hz.
        f_min: Lower edge of the first band, Hz.
        f_max: Upper edge of the last band, Hz (default: Nyquist, ``sample_rate / 2``).

    Returns:
        ``[n_mels, n_fft // 2 + 1]`` float32 weights.

    Raises:
        ValueError: Bad sizes or frequencies, or a band so narrow that it covers no FFT bin.
    """
    nyquist = sample_rate / 2.0
    f_max = nyquist if f_max is None else f_max
    if not (isinstance(n_mels, int) and n_mels >= 1 and isinstance(n_fft, int) and n_fft >= 2):
        raise ValueError(f"need n_mels >= 1 and n_fft >= 2 (ints), got {n_mels!r}, {n_fft!r}")
    if not 0.0 <= f_min < f_max <= nyquist:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2 = {nyquist:g} Hz, got "
                         f"f_min={f_min:g}, f_max={f_max:g}")
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)),
                                     n_mels + 2, dtype=torch.float64))     # [n_mels + 2] Hz
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]      # [n_mels, 1]
    rise = (bins - lo) / (mid - lo)
    fall = (hi - bins) / (hi - mid)
    weights = torch.minimum(rise, fall).clamp_min(0.0)                       # [n_mels, bins]
    empty = (weights.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"mel bands {empty} cover no FFT bin (bin spacing "
                         f"{sample_rate / n_fft:g} Hz); increase n_fft, reduce n_mels or raise "
                         "f_min")
    return weights.float()


def frame_signal(signal: Tensor, frame_length: int, hop_length: int, num_frames: int) -> Tensor:
    """Cut ``signal: [S]`` into ``num_frames`` frames ``[num_frames, frame_length]`` starting every
    ``hop_length`` samples; the signal is zero-padded at its end (or cut) to fit exactly."""
    if signal.ndim != 1:
        raise ValueError(f"expected a mono signal [S], got shape {tuple(signal.shape)}")
    if min(frame_length, hop_length, num_frames) < 1:
        raise ValueError(f"frame_length, hop_length and num_frames must be >= 1, got "
                         f"{frame_length}, {hop_length}, {num_frames}")
    needed = (num_frames - 1) * hop_length + frame_length
    signal = signal[:needed]
    signal = torch.nn.functional.pad(signal, (0, needed - signal.shape[0]))
    return signal.unfold(0, frame_length, hop_length)                        # [T, frame_length]


def log_mel_spectrogram(signal: Tensor, sample_rate: float, *, n_mels: int, frame_length: int,
                        hop_length: int, n_fft: int, num_frames: int, f_min: float = 0.0,
                        f_max: float | None = None, eps: float = EPS) -> Tensor:
    """Log mel energies ``10 log10(mel_filterbank @ |rfft(hann * frame)|^2 + eps)`` in dB.

    Args:
        signal: ``[S]`` samples (float, full scale 1).
        sample_rate: Hz.
        n_mels: Number of mel bands.
        frame_length, hop_length, n_fft: In samples; ``n_fft >= frame_length``.
        num_frames: Frames to return (the signal is zero-padded or cut to fit).
        f_min, f_max: Band edges in Hz (see :func:`mel_filterbank`).
        eps: Energy floor (a silent frame gives ``10 log10(eps)`` dB).

    Returns:
        ``[num_frames, n_mels]`` float32 dB.
    """
    if n_fft < frame_length:
        raise ValueError(f"n_fft={n_fft} must be >= frame_length={frame_length} samples")
    frames = frame_signal(signal.float(), frame_length, hop_length, num_frames)  # [T, L]
    window = torch.hann_window(frame_length, periodic=True, dtype=frames.dtype)
    power = torch.fft.rfft(frames * window, n=n_fft).abs().square()          # [T, n_fft//2+1]
    bank = mel_filterbank(n_mels, n_fft, sample_rate, f_min=f_min, f_max=f_max)
    return 10.0 * torch.log10(power @ bank.T + eps)                          # [T, n_mels]


def normalize_db(db: Tensor, floor_db: float, *, min_peak_db: float = -math.inf) -> Tensor:
    """Per-utterance gain control: ``clip((db - peak) / floor_db + 1, 0, 1)``,
    ``peak = max(max(db), min_peak_db)``.

    The loudest entry of ``db: [T, F]`` maps to 1, everything ``floor_db`` or more below it to 0.
    ``min_peak_db`` keeps silence silent: a recording whose loudest entry lies below it is not
    amplified to full scale.
    """
    if not floor_db > 0:
        raise ValueError(f"floor_db must be > 0 dB, got {floor_db}")
    peak = max(float(db.max()), min_peak_db)
    return ((db - peak) / floor_db + 1.0).clamp(0.0, 1.0)


def threshold_crossing(x: Tensor, threshold: float, *, initial: Tensor | None = None) -> Tensor:
    """Send-on-delta encoding of ``x: [T, *F]`` with ON and OFF channels.

    A reference ``r`` (``initial``, zeros by default) follows each channel in steps of
    ``threshold``: at step ``t`` the channel emits ``n = trunc((x[t] - r) / threshold)`` events
    (ON if ``n > 0``, OFF if ``n < 0``) and ``r <- r + n * threshold``. A step can hold several
    events, so a level rising by ``k * threshold`` within one frame yields ``k`` ON events.

    Returns:
        ``[T, *F[:-1], 2, F[-1]]`` event counts (float): index 0 of the new polarity axis holds
        the ON events, index 1 the OFF events.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"expected a sequence [T, ..., F] with T >= 1, got {tuple(x.shape)}")
    ref = torch.zeros_like(x[0]) if initial is None else initial.to(x.dtype)
    out = []
    for frame in x.unbind(0):                                                # [*F]
        n = torch.trunc((frame - ref) / threshold)
        ref = ref + n * threshold
        out.append(torch.stack([n.clamp_min(0.0), (-n).clamp_min(0.0)], dim=-2))
    return torch.stack(out)                                                  # [T, ..., 2, F]


@dataclass(frozen=True)
class AudioFrontend:
    """The front end as one transform: mono signal ``[S]`` -> ON/OFF events ``[T, 2, n_mels]``.

    Args:
        sample_rate: Expected input rate, Hz.
        duration: Seconds kept per utterance: longer ones are cut, shorter ones zero-padded, so
            every utterance gives ``T = round(duration / hop_length)`` frames.
        frame_length: Analysis window, seconds (25 ms).
        hop_length: Frame step, seconds (10 ms): the time step of the events.
        n_fft: FFT length in samples.
        n_mels: Number of mel bands.
        f_min, f_max: Band edges, Hz (``f_max=None``: Nyquist).
        floor_db: Dynamic range kept below the utterance's loudest band (:func:`normalize_db`);
            the reference never drops below ``floor_db`` above the energy floor, so silence
            stays silent.
        threshold_db: Level change per event, dB (:func:`threshold_crossing`).
    """

    sample_rate: int = 8000
    duration: float = 1.0
    frame_length: float = 25e-3
    hop_length: float = 10e-3
    n_fft: int = 256
    n_mels: int = 32
    f_min: float = 20.0
    f_max: float | None = None
    floor_db: float = 60.0
    threshold_db: float = 3.0

    def __post_init__(self) -> None:
        for name in ("duration", "frame_length", "hop_length", "floor_db", "threshold_db"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"AudioFrontend.{name} must be a positive number, got {value!r}"
                                 " (times are in seconds: 10 ms is 10e-3)")
        if self.frame_length * self.sample_rate < 2:
            raise ValueError(f"frame_length={self.frame_length} s is under 2 samples at "
                             f"{self.sample_rate} Hz; times are in seconds (25 ms is 25e-3)")
        for name in ("frame_length", "hop_length"):
            if getattr(self, name) > self.duration:
                raise ValueError(f"AudioFrontend.{name}={getattr(self, name)} s exceeds "
                                 f"duration={self.duration} s; times are in seconds (10 ms is "
                                 "10e-3)")
        mel_filterbank(self.n_mels, self.n_fft, self.sample_rate, f_min=self.f_min,
                       f_max=self.f_max)                                     # validates the bank

    @property
    def num_frames(self) -> int:
        """Frames per utterance, ``T``."""
        return int(round(self.duration / self.hop_length))

    @property
    def event_shape(self) -> tuple[int, int]:
        """Shape of one frame of events, ``(2, n_mels)``: polarity (ON, OFF) x band."""
        return (2, self.n_mels)

    def log_mel(self, signal: Tensor) -> Tensor:
        """``[S]`` -> ``[T, n_mels]`` log mel energies, dB."""
        return log_mel_spectrogram(
            signal, self.sample_rate, n_mels=self.n_mels,
            frame_length=int(round(self.frame_length * self.sample_rate)),
            hop_length=int(round(self.hop_length * self.sample_rate)), n_fft=self.n_fft,
            num_frames=self.num_frames, f_min=self.f_min, f_max=self.f_max)

    def levels(self, signal: Tensor) -> Tensor:
        """``[S]`` -> ``[T, n_mels]`` band levels in ``[0, 1]`` (:func:`normalize_db`)."""
        return normalize_db(self.log_mel(signal), self.floor_db,
                            min_peak_db=10.0 * math.log10(EPS) + self.floor_db)

    def events(self, levels: Tensor) -> Tensor:
        """Band levels ``[T, ..., n_mels]`` -> ON/OFF event counts ``[T, ..., 2, n_mels]``."""
        return threshold_crossing(levels, self.threshold_db / self.floor_db)

    def __call__(self, signal: Tensor) -> Tensor:
        """``[S]`` -> ``[T, 2, n_mels]`` event counts per frame."""
        return self.events(self.levels(signal))
