"""File checksums: the one MD5 reader behind download checks and the data hash runs record."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

CHUNK_BYTES = 1 << 20  # read 1 MiB at a time: data sets may not fit in memory


def hash_files(paths: Sequence[Path]) -> str:
    """One MD5 over the bytes of the given files, in order: the data a run trained on."""
    digest = hashlib.md5()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()


def md5_of(path: Path) -> str:
    """Return the hex md5 digest of a file, read in chunks."""
    return hash_files([path])
