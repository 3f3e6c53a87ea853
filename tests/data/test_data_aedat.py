"""AEDAT 2.0 / 3.1 readers: generated files in the real encodings, the shipped jAER header and
the original POKER-DVS recordings (checked event by event against Tonic's npy copies)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from event_formats import (HEADER_SAMPLE, SHARED, aedat2_bytes, aedat31_bytes, aedat31_packet,
                           aedat31_special_packet)
from snn5.data import DatasetFileError
from snn5.data.aedat import parse_aedat_header, read_aedat2, read_aedat31

POKER = SHARED / "poker-dvs"


def test_aedat2_round_trip(tmp_path):
    x, y, p, t = [0, 127, 5, 64], [0, 3, 127, 64], [1, 0, 1, 0], [10, 20, 2**31 + 5, 2**32 - 1]
    path = tmp_path / "rec.aedat"
    path.write_bytes(aedat2_bytes(x, y, p, t))
    ev = read_aedat2(path)
    assert ev["x"].tolist() == x and ev["y"].tolist() == y
    assert ev["p"].tolist() == p and ev["t"].tolist() == t          # uint32 time, no wrap
    assert read_aedat2(path.read_bytes(), name="in.zip:rec.aedat")["x"].tolist() == x


def test_aedat2_errors_name_the_file(tmp_path):
    bad = tmp_path / "cut.aedat"
    bad.write_bytes(aedat2_bytes([1], [2], [1], [3])[:-3])
    with pytest.raises(DatasetFileError, match=r"cut\.aedat: 5 bytes after the header.*truncated"):
        read_aedat2(bad)
    other = tmp_path / "v3.aedat"
    other.write_bytes(aedat31_bytes())
    with pytest.raises(DatasetFileError, match=r"v3\.aedat is AEDAT 3\.1, expected AEDAT 2\.0"):
        read_aedat2(other)
    junk = tmp_path / "junk.aedat"
    junk.write_bytes(b"hello")
    with pytest.raises(DatasetFileError, match=r"junk\.aedat is not an AEDAT file"):
        read_aedat2(junk)
    with pytest.raises(DatasetFileError, match=r"gone\.aedat cannot be read"):
        read_aedat2(tmp_path / "gone.aedat")


def test_shipped_jaer_header_is_parsed():
    if not HEADER_SAMPLE.is_file():
        pytest.skip(f"{HEADER_SAMPLE} not found (../shared/data absent)")
    data = HEADER_SAMPLE.read_bytes()
    version, offset, lines = parse_aedat_header(data, HEADER_SAMPLE)
    assert version == "2.0" and offset == len(data) == 599
    assert any("Davis346red" in line for line in lines)
    assert len(read_aedat2(HEADER_SAMPLE)) == 0                     # header only, no events


def test_original_pokerdvs_recordings_match_tonics_arrays():
    """Each of the 20 test recordings of Tonic's npy tarball is one of the 131 original AEDAT
    2.0 files: same events with t from the first event, x = bits 1-7, y = bits 8-14, ON = 1."""
    if not (POKER / "poker_dvs.tar.gz").is_file():
        pytest.skip(f"{POKER}/poker_dvs.tar.gz not found (../shared/data absent)")
    originals = {}
    with tarfile.open(POKER / "poker_dvs.tar.gz") as tar:
        for m in tar.getmembers():
            if m.name.endswith(".aedat"):
                ev = read_aedat2(tar.extractfile(m).read(), name=m.name)
                originals.setdefault(len(ev), []).append(ev)
    assert sum(map(len, originals.values())) == 131
    with tarfile.open(POKER / "pips_test.tar.gz") as tar:
        arrays = [np.load(io.BytesIO(tar.extractfile(m).read())) for m in tar.getmembers()
                  if m.name.endswith(".npy")]
    assert len(arrays) == 20
    for a in arrays:                                                # columns t, x, y, p
        matches = [ev for ev in originals.get(len(a), [])
                   if np.array_equal(ev["t"] - ev["t"][0], a[:, 0].astype(np.int64))]
        assert len(matches) == 1
        ev = matches[0]
        assert np.array_equal(ev["x"], a[:, 1]) and np.array_equal(ev["y"], a[:, 2])
        assert np.array_equal(ev["p"], a[:, 3])


def test_aedat31_polarity_packets(tmp_path):
    path = tmp_path / "user01_fluorescent.aedat"
    path.write_bytes(aedat31_bytes(
        aedat31_packet([3, 127, 9], [4, 0, 9], [1, 0, 1], [100, 200, 300], valid=[1, 1, 0]),
        aedat31_special_packet(),
        aedat31_packet([0], [127], [0], [7], overflow=1)))
    ev = read_aedat31(path)
    assert ev["x"].tolist() == [3, 127, 0] and ev["y"].tolist() == [4, 0, 127]
    assert ev["p"].tolist() == [1, 0, 0]
    assert ev["t"].tolist() == [100, 200, 2**31 + 7]               # invalid event dropped
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetFileError, match=r"user01_fluorescent\.aedat: the packet .*"
                                               r"truncated"):
        read_aedat31(path)
    two = tmp_path / "two.aedat"
    two.write_bytes(aedat2_bytes([1], [1], [1], [1]))
    with pytest.raises(DatasetFileError, match=r"two\.aedat is AEDAT 2\.0, expected AEDAT 3\.1"):
        read_aedat31(two)


def test_aedat31_header_lines_end_at_end_header():
    data = aedat31_bytes(aedat31_packet([1], [2], [1], [5]))
    version, offset, lines = parse_aedat_header(data, Path("x.aedat"))
    assert version == "3.1" and lines[-1] == "#!END-HEADER" and offset == data.index(b"\x01\x00")
