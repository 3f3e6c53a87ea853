"""Writers of tiny event files in the real on-disk formats, for the loader tests.

AEDAT 2.0 (jAER): '#' header lines, then big-endian int32 (address, timestamp) pairs; DVS128
address = y << 8 | x << 1 | (1 if OFF else 0). AEDAT 3.1 (cAER): '#' header ending in
'#!END-HEADER', then packets of a 28-byte little-endian header and 8-byte polarity events
(data = x << 17 | y << 2 | p << 1 | valid, int32 timestamp). SHD: HDF5 with variable-length
spikes/times (s) and spikes/units per recording, labels, extra/.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
HEADER_SAMPLE = SHARED / "event-format-samples" / "sample_aedat_header.aedat"

AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated "
                 b"for each event\r\n# Timestamps tick is 1 us\r\n"
                 b"# created Mon Jan 09 10:00:00 CET 2017\r\n")
AEDAT31_HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                  b"#Start-Time: 2016-09-02 14:05:08 (TZ+0200)\r\n#!END-HEADER\r\n")


def aedat2_header() -> bytes:
    """The real jAER header shipped in event-format-samples when present, else a jAER-style
    one."""
    return HEADER_SAMPLE.read_bytes() if HEADER_SAMPLE.is_file() else AEDAT2_HEADER


def aedat2_bytes(x, y, p, t, *, header: bytes | None = None) -> bytes:
    x, y, p, t = (np.asarray(v, dtype=np.int64) for v in (x, y, p, t))
    raw = np.empty((len(x), 2), dtype=">u4")
    raw[:, 0] = (y << 8) | (x << 1) | (1 - p)
    raw[:, 1] = t
    return (aedat2_header() if header is None else header) + raw.tobytes()


def aedat31_packet(x, y, p, t, *, valid=None, overflow: int = 0) -> bytes:
    x, y, p, t = (np.asarray(v, dtype=np.int64) for v in (x, y, p, t))
    valid = np.ones(len(x), np.int64) if valid is None else np.asarray(valid, np.int64)
    raw = np.empty((len(x), 2), dtype="<u4")
    raw[:, 0] = (x << 17) | (y << 2) | (p << 1) | valid
    raw[:, 1] = t
    n = len(x)
    return struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, n, n, int(valid.sum())) + raw.tobytes()


def aedat31_special_packet(n: int = 2) -> bytes:
    """A packet of special events (type 0), which a polarity reader must skip."""
    return struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, n, n, n) + bytes(range(8 * n))


def aedat31_bytes(*packets: bytes) -> bytes:
    return AEDAT31_HEADER + b"".join(packets)


def write_shd(path: Path, times: list, units: list, labels: list) -> None:
    """An HDF5 file laid out as shd_train.h5 / shd_test.h5."""
    import h5py

    n = len(labels)
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            t[i] = np.asarray(times[i], np.float32)
            u[i] = np.asarray(units[i], np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/speaker", data=np.arange(n, dtype=np.uint16) % 3)
        f.create_dataset("extra/keys", data=np.array([f"digit-{k}".encode() for k in range(20)]))
