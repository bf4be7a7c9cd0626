"""Tests for imgclf.data.download against a local HTTP server and local files."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from imgclf.checksums import md5_of
from imgclf.data.download import DownloadError, fetch_verified
from support.http import RecordedRequest, closed_port_url, serve_directory

FILE_NAME = "archive.tar.gz"


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes, str]:
    """Write 300 kB of random bytes into a served folder; return (folder, bytes, md5)."""
    served = tmp_path / "served"
    served.mkdir()
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (served / FILE_NAME).write_bytes(data)
    return served, data, hashlib.md5(data).hexdigest()


def test_downloads_and_verifies(payload, tmp_path: Path) -> None:
    served, data, md5 = payload
    destination = tmp_path / "raw" / FILE_NAME
    with serve_directory(served) as base_url:
        result = fetch_verified(
            base_url + FILE_NAME, destination, md5, partial_dir=tmp_path / "part", progress=False
        )
    assert result == destination
    assert destination.read_bytes() == data
    assert not (tmp_path / "part" / f"{FILE_NAME}.part").exists()


def test_md5_mismatch_leaves_nothing_behind(payload, tmp_path: Path) -> None:
    served, data, md5 = payload
    wrong = "0" * 32
    destination_dir = tmp_path / "raw"
    partial_dir = tmp_path / "part"
    with serve_directory(served) as base_url, pytest.raises(DownloadError) as caught:
        fetch_verified(
            base_url + FILE_NAME,
            destination_dir / FILE_NAME,
            wrong,
            partial_dir=partial_dir,
            progress=False,
        )
    message = str(caught.value)
    assert wrong in message and md5 in message
    assert base_url + FILE_NAME in message
    assert "data.url" in message and "data.md5" in message
    assert not destination_dir.exists() or list(destination_dir.iterdir()) == []
    assert list(partial_dir.iterdir()) == []


def test_interrupted_download_resumes(payload, tmp_path: Path) -> None:
    served, data, md5 = payload
    log: list[RecordedRequest] = []
    destination = tmp_path / "raw" / FILE_NAME
    with serve_directory(served, drop_after_bytes=100_000, request_log=log) as base_url:
        fetch_verified(
            base_url + FILE_NAME, destination, md5, partial_dir=tmp_path / "part", progress=False
        )
    assert md5_of(destination) == md5
    assert [(r.range_header, r.status) for r in log] == [(None, 200), ("bytes=100000-", 206)]


def test_partial_from_earlier_run_is_resumed(payload, tmp_path: Path) -> None:
    served, data, md5 = payload
    partial_dir = tmp_path / "part"
    partial_dir.mkdir()
    (partial_dir / f"{FILE_NAME}.part").write_bytes(data[:123_456])
    log: list[RecordedRequest] = []
    with serve_directory(served, request_log=log) as base_url:
        fetch_verified(
            base_url + FILE_NAME, tmp_path / FILE_NAME, md5, partial_dir=partial_dir, progress=False
        )
    assert (tmp_path / FILE_NAME).read_bytes() == data
    assert [(r.range_header, r.status) for r in log] == [("bytes=123456-", 206)]


def test_server_ignoring_range_restarts_from_zero(payload, tmp_path: Path) -> None:
    served, data, md5 = payload
    partial_dir = tmp_path / "part"
    partial_dir.mkdir()
    # Garbage on disk: appending the full body to it would corrupt the file.
    (partial_dir / f"{FILE_NAME}.part").write_bytes(b"\xff" * 5000)
    log: list[RecordedRequest] = []
    with serve_directory(served, honour_ranges=False, request_log=log) as base_url:
        fetch_verified(
            base_url + FILE_NAME, tmp_path / FILE_NAME, md5, partial_dir=partial_dir, progress=False
        )
    assert (tmp_path / FILE_NAME).read_bytes() == data
    assert [(r.range_header, r.status) for r in log] == [("bytes=5000-", 200)]


def test_valid_cache_copy_is_used_without_network(payload, tmp_path: Path) -> None:
    _, data, md5 = payload
    stale_cache = tmp_path / "stale"
    stale_cache.mkdir()
    (stale_cache / FILE_NAME).write_bytes(b"not the file")
    good_cache = tmp_path / "keras" / "datasets"
    good_cache.mkdir(parents=True)
    (good_cache / FILE_NAME).write_bytes(data)
    destination = tmp_path / "raw" / FILE_NAME
    fetch_verified(
        closed_port_url(FILE_NAME),
        destination,
        md5,
        partial_dir=tmp_path / "part",
        cached_copies=[
            tmp_path / "missing" / FILE_NAME,
            stale_cache / FILE_NAME,
            good_cache / FILE_NAME,
        ],
        progress=False,
    )
    assert destination.read_bytes() == data
    assert sorted(p.name for p in destination.parent.iterdir()) == [FILE_NAME]


def test_existing_valid_destination_is_kept(payload, tmp_path: Path) -> None:
    _, data, md5 = payload
    destination = tmp_path / FILE_NAME
    destination.write_bytes(data)
    before = destination.stat().st_mtime_ns
    result = fetch_verified(
        closed_port_url(FILE_NAME), destination, md5, partial_dir=tmp_path / "p", progress=False
    )
    assert result == destination
    assert destination.stat().st_mtime_ns == before


def test_file_url_is_copied_and_verified(payload, tmp_path: Path) -> None:
    served, data, md5 = payload
    destination = tmp_path / "raw" / FILE_NAME
    url = (served / FILE_NAME).as_uri()
    fetch_verified(url, destination, md5, partial_dir=tmp_path / "part", progress=False)
    assert destination.read_bytes() == data


def test_missing_file_url_names_path(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(DownloadError, match="nowhere.tar.gz") as caught:
        fetch_verified(url, tmp_path / "out", "0" * 32, partial_dir=tmp_path, progress=False)
    assert "data.url" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://example.org/a.tar.gz", "/data/a.tar.gz"])
def test_unsupported_scheme_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        fetch_verified(url, tmp_path / "out", "0" * 32, partial_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert url in message and "http, https, file" in message


def test_http_404_names_url_and_status(payload, tmp_path: Path) -> None:
    served, _, md5 = payload
    with serve_directory(served) as base_url, pytest.raises(DownloadError) as caught:
        fetch_verified(
            base_url + "missing.tar.gz", tmp_path / "o", md5, partial_dir=tmp_path, progress=False
        )
    assert base_url + "missing.tar.gz" in str(caught.value)
    assert "404" in str(caught.value)


def test_unreachable_host_fails_fast_and_keeps_partial(tmp_path: Path) -> None:
    url = closed_port_url(FILE_NAME)
    partial_dir = tmp_path / "part"
    partial_dir.mkdir()
    partial = partial_dir / f"{FILE_NAME}.part"
    partial.write_bytes(b"first bytes")
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch_verified(url, tmp_path / "raw" / FILE_NAME, "0" * 32, partial_dir=partial_dir)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < 10
    assert url in message and "data.url" in message and "data.source" in message
    assert partial.read_bytes() == b"first bytes"
    assert not (tmp_path / "raw").exists()


def test_bad_md5_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="data.md5"):
        fetch_verified(
            closed_port_url(), tmp_path / "o", "abc", partial_dir=tmp_path, progress=False
        )
