"""Fetching dataset files from mirrors, verified by md5 and written atomically."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from snn5.data.base import DatasetFileError

__all__ = ["download_file", "fetch_url", "file_md5"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes read per step while streaming / hashing


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex md5 of a file's bytes (an integrity check against the published value)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_url(url: str, out: BinaryIO, *, timeout: float = 60.0) -> int:
    """Stream the body of ``url`` into the open binary file ``out``, logging progress.

    Args:
        url: ``http(s)://`` address of the file.
        out: File opened for binary writing.
        timeout: Seconds to wait for the connection and for each read.

    Returns:
        Number of bytes written.

    Raises:
        OSError: Network failure (``urllib.error.URLError`` and ``HTTPError`` are OSErrors).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "snn5"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0)
        written, next_report = 0, 0.25
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            written += len(chunk)
            if total and written / total >= next_report:
                logger.info("  %s: %d%% (%d / %d bytes)", url, int(100 * written / total),
                            written, total)
                next_report += 0.25
    return written


def download_file(filename: str, directory: Path, *, md5: str, mirrors: Sequence[str] = (),
                  urls: Sequence[str] = (), fix: str = "") -> Path:
    """Download ``filename`` into ``directory`` from the first mirror that serves it intact.

    Each attempt streams into a temp file in ``directory`` and is renamed onto
    ``directory / filename`` only after its md5 matches, so an interrupted or corrupt
    download never leaves a partial file under the real name.

    Args:
        filename: File name, appended to each mirror's base URL.
        directory: Destination folder (created if missing).
        md5: Expected hex md5 of the file.
        mirrors: Base URLs ending in ``/``, tried in order (``filename`` is appended).
        urls: Full URLs of the file, tried after the mirrors (for hosts such as figshare whose
            addresses do not end in the file name).
        fix: Sentence telling the user what to do when every mirror fails.

    Returns:
        Path of the verified file.

    Raises:
        DatasetFileError: Every mirror failed; the message lists each URL and why.
    """
    directory = Path(directory)
    dest = directory / filename
    failures: list[str] = []
    candidates = [(base if base.endswith("/") else base + "/") + filename for base in mirrors]
    for url in [*candidates, *urls]:
        tmp: str | None = None
        start = time.perf_counter()
        logger.info("downloading %s -> %s", url, dest)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
            with os.fdopen(fd, "wb") as out:
                size = fetch_url(url, out)
                out.flush()
                os.fsync(out.fileno())
            found = file_md5(tmp)
            if found != md5:
                failures.append(f"{url}: got {size} bytes with md5 {found}, expected md5 {md5}")
                logger.warning("rejected %s: md5 %s, expected %s", url, found, md5)
                continue
            os.replace(tmp, dest)
            tmp = None
            logger.info("saved %s (%d bytes, md5 ok, %.1f s)", dest, size,
                        time.perf_counter() - start)
            return dest
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
            logger.warning("download of %s failed: %s", url, exc)
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    tried = "\n".join(f"  - {line}" for line in failures) or "  (no mirror given)"
    raise DatasetFileError(f"could not download {dest}; every mirror failed:\n{tried}\n{fix}",
                           paths=[dest])
