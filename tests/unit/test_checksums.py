"""Tests for imgclf.checksums: the MD5 of one file and the data hash of several."""

from __future__ import annotations

import hashlib
from pathlib import Path

from imgclf.checksums import hash_files, md5_of


def test_hash_files_is_md5_of_the_bytes_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    first.write_bytes(b"\x00" * 1000 + b"train")
    second.write_bytes(b"val")
    digest = hash_files([first, second])
    assert digest == hashlib.md5(first.read_bytes() + second.read_bytes()).hexdigest()
    assert hash_files([second, first]) != digest
    first.write_bytes(b"\x01" + b"\x00" * 999 + b"train")
    assert hash_files([first, second]) != digest


def test_md5_of_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = b"x" * (3 * 1024 * 1024 + 17)  # spans several read chunks
    path.write_bytes(data)
    assert md5_of(path) == hashlib.md5(data).hexdigest()
