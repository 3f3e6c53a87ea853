"""Readers for jAER / cAER event files: AEDAT 2.0 (DVS128 addresses) and AEDAT 3.1 (polarity
packets), returning Tonic-style structured arrays ``(t, x, y, p)``.

Tonic's own ``tonic.io`` AEDAT readers are not used here: for 3.1 files they read every packet
as polarity events, keep the validity bit in the address and drop the timestamp overflow; for
2.0 files they swap x and y relative to jAER's DVS128 layout. These readers follow the format
specifications (jAER ``AEFileInputStream``, iniVation "AEDAT 3.1" docs) and check what they
read, raising :class:`DatasetFileError` naming the file.

AEDAT 2.0 (jAER, big-endian):
    text header lines starting with ``#`` (the first is ``#!AER-DAT2.0``), then events of two
    int32: address, timestamp (1 us ticks). A DVS128 address holds polarity in bit 0 (1 = OFF),
    x in bits 1-7 and y in bits 8-14.

AEDAT 3.1 (cAER, little-endian):
    text header from ``#!AER-DAT3.1`` to ``#!END-HEADER``, then packets of a 28-byte header
    (int16 eventType, int16 eventSource, int32 eventSize, eventTSOffset, eventTSOverflow,
    eventCapacity, eventNumber, eventValid) followed by ``eventCapacity * eventSize`` bytes.
    Polarity events (eventType 1, 8 bytes): uint32 data (bit 0 valid, bit 1 polarity, bits
    2-16 y, bits 17-31 x) and int32 timestamp; the full time is ``eventTSOverflow << 31 | ts``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from snn5.data.base import DatasetFileError

__all__ = ["EVENT_DTYPE", "decode_dvs128", "parse_aedat_header", "read_aedat2", "read_aedat31"]

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
"""Events as Tonic's transforms take them: time in microseconds, pixel column x, row y,
polarity 1 = ON (brighter), 0 = OFF."""

_PACKET_HEADER = struct.Struct("<hhiiiiii")
_POLARITY_EVENT = 1


def parse_aedat_header(data: bytes, path: Path) -> tuple[str, int, list[str]]:
    """Split the text header off an AEDAT file.

    Args:
        data: The file's bytes (or at least its header).
        path: Where they came from, for the error message.

    Returns:
        ``(version, offset, lines)``: the version after ``#!AER-DAT`` (``"2.0"``, ``"3.1"``),
        the byte offset of the first event, and the header lines without line ends.

    Raises:
        DatasetFileError: The file does not start with ``#!AER-DAT``.
    """
    if not data.startswith(b"#!AER-DAT"):
        raise DatasetFileError(f"{path} is not an AEDAT file: it starts with {data[:16]!r}, "
                               "expected '#!AER-DAT'. Replace it with an intact copy.",
                               paths=[path])
    lines: list[str] = []
    offset = 0
    while data.startswith(b"#", offset):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end + 1
        line = data[offset:end].decode("latin-1").rstrip("\r\n")
        lines.append(line)
        offset = end
        if line.startswith("#!END-HEADER"):
            break
    version = lines[0][len("#!AER-DAT"):].strip()
    return version, offset, lines


def decode_dvs128(address: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, polarity of jAER DVS128 addresses (polarity 1 = ON, i.e. address bit 0 clear)."""
    address = address.astype(np.uint32, copy=False)
    x = ((address >> 1) & 0x7F).astype(np.int16)
    y = ((address >> 8) & 0x7F).astype(np.int16)
    p = (1 - (address & 1)).astype(np.int8)
    return x, y, p


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DatasetFileError(f"{path} cannot be read ({type(exc).__name__}: {exc}); check "
                               "that it exists and is readable.", paths=[path]) from exc


def read_aedat2(source: str | Path | bytes, *, name: str | Path | None = None) -> np.ndarray:
    """Events of a jAER AEDAT 2.0 recording from a DVS128 sensor.

    Args:
        source: Path of the file, or its bytes (e.g. read from inside a zip).
        name: Name used in error messages when ``source`` is bytes.

    Returns:
        Structured array of :data:`EVENT_DTYPE`, in file order, with the file's timestamps.

    Raises:
        DatasetFileError: Not an AEDAT 2.x file, or its payload is not whole 8-byte events.
    """
    path = Path(name if name is not None else source if not isinstance(source, bytes) else "?")
    data = source if isinstance(source, bytes) else _read(path)
    version, offset, _ = parse_aedat_header(data, path)
    if not version.startswith("2"):
        raise DatasetFileError(f"{path} is AEDAT {version}, expected AEDAT 2.0 (jAER); "
                               "replace it with the original recording.", paths=[path])
    payload = len(data) - offset
    if payload % 8:
        raise DatasetFileError(f"{path}: {payload} bytes after the header are not whole 8-byte "
                               "events (address, timestamp); the file is truncated. Replace it "
                               "with an intact copy.", paths=[path])
    raw = np.frombuffer(data, dtype=">u4", offset=offset).reshape(-1, 2)   # [N, (addr, t)]
    events = np.empty(len(raw), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = decode_dvs128(raw[:, 0])
    events["t"] = raw[:, 1].astype(np.int64)
    return events


def read_aedat31(source: str | Path | bytes, *, name: str | Path | None = None) -> np.ndarray:
    """Polarity events of a cAER AEDAT 3.1 recording (other packet types are skipped, as are
    events whose validity bit is clear).

    Args:
        source: Path of the file, or its bytes.
        name: Name used in error messages when ``source`` is bytes.

    Returns:
        Structured array of :data:`EVENT_DTYPE`, in file order; ``t`` includes the packets'
        timestamp overflow.

    Raises:
        DatasetFileError: Not an AEDAT 3.x file, or a packet runs past the end of the file.
    """
    path = Path(name if name is not None else source if not isinstance(source, bytes) else "?")
    data = source if isinstance(source, bytes) else _read(path)
    version, offset, _ = parse_aedat_header(data, path)
    if not version.startswith("3"):
        raise DatasetFileError(f"{path} is AEDAT {version}, expected AEDAT 3.1 (cAER); "
                               "replace it with the original recording.", paths=[path])
    parts: list[np.ndarray] = []
    while offset < len(data):
        if offset + _PACKET_HEADER.size > len(data):
            raise DatasetFileError(f"{path}: a packet header at byte {offset} is cut off; the "
                                   "file is truncated. Replace it with an intact copy.",
                                   paths=[path])
        etype, _, esize, _, overflow, capacity, _, _ = _PACKET_HEADER.unpack_from(data, offset)
        offset += _PACKET_HEADER.size
        end = offset + capacity * esize
        if esize <= 0 or capacity < 0 or end > len(data):
            raise DatasetFileError(f"{path}: the packet at byte {offset - 28} claims "
                                   f"{capacity} events of {esize} bytes, past the end of the "
                                   f"file ({len(data)} bytes); the file is truncated or "
                                   "corrupt. Replace it with an intact copy.", paths=[path])
        if etype == _POLARITY_EVENT:
            if esize != 8:
                raise DatasetFileError(f"{path}: polarity events of {esize} bytes, expected 8.",
                                       paths=[path])
            raw = np.frombuffer(data, dtype="<u4", count=2 * capacity,
                                offset=offset).reshape(-1, 2)               # [n, (data, ts)]
            raw = raw[(raw[:, 0] & 1) == 1]                                  # valid events only
            ev = np.empty(len(raw), dtype=EVENT_DTYPE)
            ev["x"] = ((raw[:, 0] >> 17) & 0x7FFF).astype(np.int16)
            ev["y"] = ((raw[:, 0] >> 2) & 0x7FFF).astype(np.int16)
            ev["p"] = ((raw[:, 0] >> 1) & 1).astype(np.int8)
            ev["t"] = (np.int64(overflow) << 31) | (raw[:, 1] & 0x7FFFFFFF).astype(np.int64)
            parts.append(ev)
        offset = end
    return np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)
