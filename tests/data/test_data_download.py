"""Downloading MNIST without the network: the fetch function is replaced by local bytes."""

from __future__ import annotations

import io
import logging
import urllib.error
from pathlib import Path

import pytest

from snn5.data import DatasetFileError, download_mnist
from snn5.data import download as download_module
from snn5.data.download import download_file, fetch_url, file_md5
from snn5.data.mnist import MNIST_FILES, MNIST_MIRRORS, load_mnist

GOOD, BAD = MNIST_MIRRORS


class FakeMirrors:
    """Serves the real MNIST bytes; ``broken`` mirrors send a byte-flipped or cut payload."""

    def __init__(self, source: Path, broken: dict[str, str] | None = None) -> None:
        self.source = source
        self.broken = broken or {}
        self.calls: list[str] = []

    def __call__(self, url: str, out, *, timeout: float = 60.0) -> int:
        self.calls.append(url)
        base, name = url.rsplit("/", 1)
        data = bytearray((self.source / name).read_bytes())
        mode = self.broken.get(base + "/")
        if mode == "flip":
            data[len(data) // 3] ^= 0x01
        elif mode == "refuse":
            raise urllib.error.URLError("Name or service not known")
        elif mode == "cut":
            out.write(data[:100])
            raise ConnectionResetError("connection reset by peer")
        out.write(data)
        return len(data)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in MNIST_FILES)


def test_download_then_load(mnist_dir, tmp_path, monkeypatch, caplog):
    fake = FakeMirrors(mnist_dir)
    monkeypatch.setattr(download_module, "fetch_url", fake)
    with caplog.at_level(logging.INFO, logger="snn5.data"):
        data = load_mnist(tmp_path, val_fraction=0.1, split_seed=0, download=True)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert fake.calls == [GOOD + name for name in MNIST_FILES]
    directory = tmp_path / "mnist"
    for name, (md5, size) in MNIST_FILES.items():
        assert file_md5(directory / name) == md5 and (directory / name).stat().st_size == size
    assert leftovers(directory) == []
    assert "saved" in caplog.text and GOOD in caplog.text


def test_intact_files_are_not_fetched_again(mnist_dir, tmp_path, monkeypatch):
    fake = FakeMirrors(mnist_dir)
    monkeypatch.setattr(download_module, "fetch_url", fake)
    download_mnist(tmp_path)
    fake.calls.clear()
    download_mnist(tmp_path)
    assert fake.calls == []


def test_corrupt_payload_is_rejected_and_next_mirror_used(mnist_dir, tmp_path, monkeypatch):
    fake = FakeMirrors(mnist_dir, broken={GOOD: "flip"})
    monkeypatch.setattr(download_module, "fetch_url", fake)
    download_mnist(tmp_path)
    assert fake.calls == [m + name for name in MNIST_FILES for m in MNIST_MIRRORS]
    directory = tmp_path / "mnist"
    assert all(file_md5(directory / n) == md5 for n, (md5, _) in MNIST_FILES.items())
    assert leftovers(directory) == []


@pytest.mark.parametrize("modes", [("flip", "flip"), ("refuse", "cut"), ("cut", "flip")])
def test_all_mirrors_failing_leaves_nothing_behind(mnist_dir, tmp_path, monkeypatch, modes):
    fake = FakeMirrors(mnist_dir, broken=dict(zip(MNIST_MIRRORS, modes, strict=True)))
    monkeypatch.setattr(download_module, "fetch_url", fake)
    with pytest.raises(DatasetFileError) as info:
        download_mnist(tmp_path)
    first = next(iter(MNIST_FILES))
    dest = tmp_path / "mnist" / first
    message = str(info.value)
    assert f"could not download {dest}" in message
    assert GOOD + first in message and BAD + first in message
    for hint in ("copy the original MNIST files into", "SNN5_DATA", "--data-dir"):
        assert hint in message
    if "flip" in modes:
        assert "expected md5 " + MNIST_FILES[first][0] in message
    assert info.value.paths == (dest,)
    assert list((tmp_path / "mnist").iterdir()) == []  # no partial or temp file


def test_existing_corrupt_file_is_replaced_only_by_a_good_one(mnist_dir, tmp_path, monkeypatch):
    directory = tmp_path / "mnist"
    directory.mkdir()
    name = "t10k-labels-idx1-ubyte.gz"
    (directory / name).write_bytes(b"garbage")
    monkeypatch.setattr(download_module, "fetch_url",
                        FakeMirrors(mnist_dir, broken={GOOD: "flip", BAD: "flip"}))
    with pytest.raises(DatasetFileError):
        download_file(name, directory, md5=MNIST_FILES[name][0], mirrors=MNIST_MIRRORS)
    assert (directory / name).read_bytes() == b"garbage"  # untouched by the failed download
    monkeypatch.setattr(download_module, "fetch_url", FakeMirrors(mnist_dir))
    download_mnist(tmp_path)
    assert file_md5(directory / name) == MNIST_FILES[name][0]


def test_fetch_url_streams_a_real_url(mnist_dir):
    """urllib path without the network: a file:// URL."""
    source = mnist_dir / "t10k-labels-idx1-ubyte.gz"
    out = io.BytesIO()
    assert fetch_url(source.as_uri(), out) == source.stat().st_size
    assert out.getvalue() == source.read_bytes()


def test_download_file_through_urllib(mnist_dir, tmp_path):
    name = "train-labels-idx1-ubyte.gz"
    missing_mirror = (tmp_path / "nowhere").as_uri() + "/"
    path = download_file(name, tmp_path / "out", md5=MNIST_FILES[name][0],
                         mirrors=[missing_mirror, mnist_dir.as_uri()])
    assert path == tmp_path / "out" / name
    assert file_md5(path) == MNIST_FILES[name][0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [name]
