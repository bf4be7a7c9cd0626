"""Checksum-verified, resumable downloads from http(s) and file:// URLs."""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from imgclf.checksums import md5_of
from imgclf.errors import ImgclfError

ALLOWED_SCHEMES = ("http", "https", "file")
CHUNK_BYTES = 1024 * 1024
# A host that refused us or has no DNS entry is rarely back a second later: two quick retries
# ride out a restarting server without making an offline user wait.
UNREACHABLE_RETRIES = 2
RETRY_PAUSE_SECONDS = 0.5
OFFLINE_WAYS_OUT = (
    "To work without this host, set data.url to a local copy (a file:// URL or a mirror you "
    "can reach), or set data.source to 'folder' or 'synthetic'."
)


class DownloadError(ImgclfError, RuntimeError):
    """A download failed, could not be verified, or its URL is unusable."""


class _Unreachable(Exception):
    """The host could not be reached at all."""

    def __init__(self, reason: object, *, timed_out: bool) -> None:
        super().__init__(str(reason))
        self.timed_out = timed_out


class _Interrupted(Exception):
    """The transfer stopped early; what is on disk can be resumed."""


def fetch_verified(
    url: str,
    destination: Path,
    md5: str,
    *,
    partial_dir: Path,
    cached_copies: Sequence[Path] = (),
    timeout_seconds: float = 15.0,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Make `destination` hold the file at `url` with the given md5, downloading only if needed.

    Args:
        cached_copies: files that may already hold the same bytes (such as the Keras cache's
            copy); the first one with the right md5 is used instead of the network.
        partial_dir: where the incomplete download lives, so that a later run resumes it.
    """
    scheme = _check_scheme(url)
    expected = _check_md5(md5)
    if destination.is_file() and md5_of(destination) == expected:
        return destination
    name = _basename_of(url)
    cached = _first_valid_copy(cached_copies, expected)
    if cached is not None:
        _copy_atomically(cached, destination)
        return destination
    partial_dir.mkdir(parents=True, exist_ok=True)
    partial = partial_dir / f"{name}.part"
    if scheme == "file":
        _copy_local_file(_local_path_of(url), partial, progress=progress)
    else:
        _download_http(
            url, partial, timeout_seconds=timeout_seconds, retries=retries, progress=progress
        )
    _verify_or_discard(partial, expected, url)
    _move_atomically(partial, destination)
    return destination


def _check_scheme(url: str) -> str:
    """Return the URL's scheme, refusing anything but http, https and file."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadError(
            f"Cannot download {url!r}: scheme {scheme or '(none)'!r} is not supported. "
            f"data.url must use one of {', '.join(ALLOWED_SCHEMES)} "
            "(for a local file write file:///absolute/path/to/file)."
        )
    return scheme


def _check_md5(md5: str) -> str:
    """Return the md5 in lower case, refusing anything that is not 32 hex digits."""
    if not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise DownloadError(f"data.md5 {md5!r} is not an md5 digest (32 hexadecimal digits).")
    return md5.lower()


def _basename_of(url: str) -> str:
    """Return the file name at the end of the URL's path."""
    name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name:
        raise DownloadError(f"{url} names no file; data.url must point at the file itself.")
    return name


def _first_valid_copy(candidates: Sequence[Path], expected_md5: str) -> Path | None:
    """Return the first existing candidate file whose md5 matches, or None."""
    for candidate in candidates:
        if candidate.is_file() and md5_of(candidate) == expected_md5:
            return candidate
    return None


def file_url_path(url: str) -> Path | None:
    """The path a file:// URL names on this machine; None when it names another host."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        return None
    return Path(urllib.request.url2pathname(parts.path))


def _local_path_of(url: str) -> Path:
    """Return the existing local file a file:// URL points at."""
    path = file_url_path(url)
    if path is None:
        raise DownloadError(
            f"{url} names host {urllib.parse.urlsplit(url).netloc!r}; file:// URLs must be local "
            "(file:///absolute/path). Fix data.url."
        )
    if not path.is_file():
        raise DownloadError(f"{url}: there is no file at {path}. Fix data.url to name a copy.")
    return path


def _copy_local_file(source: Path, partial: Path, *, progress: bool) -> None:
    """Copy a local file into the partial file with a progress bar."""
    with (
        source.open("rb") as reader,
        partial.open("wb") as writer,
        _make_progress_bar(source.stat().st_size, 0, source.name, progress) as bar,
    ):
        while chunk := reader.read(CHUNK_BYTES):
            writer.write(chunk)
            bar.update(len(chunk))


def _download_http(
    url: str, partial: Path, *, timeout_seconds: float, retries: int, progress: bool
) -> None:
    """Fetch `url` into `partial`, resuming from its bytes and retrying broken transfers."""
    interruptions = 0
    unreachable = 0
    while True:
        try:
            _stream_once(url, partial, timeout_seconds=timeout_seconds, progress=progress)
            return
        except _Unreachable as error:
            unreachable += 1
            # A timeout already cost timeout_seconds; waiting that long again helps nobody.
            if error.timed_out or unreachable > min(retries, UNREACHABLE_RETRIES):
                raise DownloadError(
                    f"Could not reach {url} ({error}). Any bytes already fetched stay in "
                    f"{partial} and the next run resumes from there. {OFFLINE_WAYS_OUT}"
                ) from error
        except _Interrupted as error:
            interruptions += 1
            if interruptions > retries:
                kept = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(
                    f"Downloading {url} broke off {interruptions} times (last: {error}). "
                    f"{kept} bytes stay in {partial}; re-run to resume. {OFFLINE_WAYS_OUT}"
                ) from error
        time.sleep(RETRY_PAUSE_SECONDS)


def _stream_once(url: str, partial: Path, *, timeout_seconds: float, progress: bool) -> None:
    """Make one request for the rest of the file and append what arrives to `partial`."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": "imgclf"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        error.close()
        raise _classify_http_error(url, error, partial, offset) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _classify_connect_error(error) from error
    with response:
        offset = _resume_offset(response, offset, partial)
        total = _expected_total(response)
        _copy_body(response, partial, offset=offset, total=total, progress=progress)


def _classify_http_error(
    url: str, error: urllib.error.HTTPError, partial: Path, offset: int
) -> Exception:
    """Turn an HTTP error status into a retryable interruption or a final DownloadError."""
    if error.code == 416 and offset:
        # The bytes on disk do not fit the file the server holds now: start again.
        partial.unlink()
        return _Interrupted("server refused to resume from the bytes on disk")
    if error.code >= 500:
        return _Interrupted(f"HTTP {error.code} {error.reason}")
    return DownloadError(
        f"{url} answered HTTP {error.code} {error.reason}. Check data.url. {OFFLINE_WAYS_OUT}"
    )


def _classify_connect_error(error: Exception) -> Exception:
    """Tell an unreachable host apart from a connection that broke while being set up."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError)):
        return _Interrupted(str(reason))
    if isinstance(reason, http.client.HTTPException):
        return _Interrupted(f"{type(reason).__name__}: {reason}")
    timed_out = isinstance(reason, (TimeoutError, socket.timeout))
    return _Unreachable(reason, timed_out=timed_out)


def _resume_offset(response: http.client.HTTPResponse, offset: int, partial: Path) -> int:
    """Return where this response's body starts in the file (0 when the server ignored Range)."""
    if not offset or response.status != 206:
        return 0
    start = _parse_content_range(response.headers.get("Content-Range", ""))[0]
    if start != offset:
        partial.unlink()
        raise _Interrupted(f"server resumed at byte {start} instead of {offset}")
    return offset


def _expected_total(response: http.client.HTTPResponse) -> int | None:
    """Return the size of the whole file if the response says it, else None."""
    if response.status == 206:
        return _parse_content_range(response.headers.get("Content-Range", ""))[1]
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _parse_content_range(header: str) -> tuple[int | None, int | None]:
    """Return (first byte, total size) from a `bytes START-END/TOTAL` header."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header)
    if match is None:
        return None, None
    total = match.group(2)
    return int(match.group(1)), (int(total) if total.isdigit() else None)


def _copy_body(
    response: http.client.HTTPResponse,
    partial: Path,
    *,
    offset: int,
    total: int | None,
    progress: bool,
) -> None:
    """Write the response body into `partial` at `offset`, then check nothing is missing."""
    name = partial.name.removesuffix(".part")
    with (
        partial.open("ab" if offset else "wb") as writer,
        _make_progress_bar(total, offset, name, progress) as bar,
    ):
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (http.client.HTTPException, OSError) as error:
                raise _Interrupted(f"{type(error).__name__}: {error}") from error
            if not chunk:
                break
            writer.write(chunk)
            bar.update(len(chunk))
    size = partial.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"connection closed after {size} of {total} bytes")


def _make_progress_bar(total: int | None, initial: int, name: str, enabled: bool) -> tqdm:
    """Return a byte-counting tqdm bar (a silent one when disabled)."""
    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
    )


def _verify_or_discard(partial: Path, expected_md5: str, url: str) -> None:
    """Delete the partial file and raise when its md5 is not the expected one."""
    actual = md5_of(partial)
    if actual != expected_md5:
        partial.unlink()
        raise DownloadError(
            f"Checksum mismatch for {url}: expected md5 {expected_md5}, got {actual}. "
            "The downloaded file was deleted. Check that data.url and data.md5 describe the "
            "same file, or re-run to download it again."
        )


def _move_atomically(source: Path, destination: Path) -> None:
    """Move a file into place so that `destination` is never seen half-written."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, destination)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        _copy_atomically(source, destination)
        source.unlink()


def _copy_atomically(source: Path, destination: Path) -> None:
    """Copy a file to a temporary name beside `destination`, then rename it into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".tmp")
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        temporary.unlink(missing_ok=True)
