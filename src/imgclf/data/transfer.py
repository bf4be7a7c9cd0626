"""Bytes into a `.part` file: one HTTP(S) request resumed with Range, or a local file's copy.

Apart from `download.py`, which decides what to fetch, verifies it, retries and says which
setting to change: this module knows the protocol (Range and Content-Range, status codes, a
body that stops early) and reports each failure as a kind the caller retries or not
(`Unreachable`, `Interrupted`, `Refused`), naming no setting.
"""

from __future__ import annotations

import http.client
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

CHUNK_BYTES = 1024 * 1024


class Unreachable(Exception):
    """The host could not be reached at all."""

    def __init__(self, reason: object, *, timed_out: bool) -> None:
        super().__init__(str(reason))
        self.timed_out = timed_out


class Interrupted(Exception):
    """The transfer stopped early; what is on disk can be resumed."""


class Refused(Exception):
    """The server answered with a client error: asking again will not help."""

    def __init__(self, code: int, reason: object) -> None:
        super().__init__(f"HTTP {code} {reason}")
        self.code = code
        self.reason = reason


def copy_local_file(source: Path, partial: Path, *, progress: bool) -> None:
    """Copy a local file into the partial file with a progress bar."""
    with (
        source.open("rb") as reader,
        partial.open("wb") as writer,
        _make_progress_bar(source.stat().st_size, 0, source.name, progress) as bar,
    ):
        while chunk := reader.read(CHUNK_BYTES):
            writer.write(chunk)
            bar.update(len(chunk))


def stream_once(url: str, partial: Path, *, timeout_seconds: float, progress: bool) -> None:
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
        raise _classify_http_error(error, partial, offset) from error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _classify_connect_error(error) from error
    with response:
        offset = _resume_offset(response, offset, partial)
        total = _expected_total(response)
        _copy_body(response, partial, offset=offset, total=total, progress=progress)


def _classify_http_error(error: urllib.error.HTTPError, partial: Path, offset: int) -> Exception:
    """Turn an HTTP error status into a retryable interruption or a final refusal."""
    if error.code == 416 and offset:
        # The bytes on disk do not fit the file the server holds now: start again.
        partial.unlink()
        return Interrupted("server refused to resume from the bytes on disk")
    if error.code >= 500:
        return Interrupted(f"HTTP {error.code} {error.reason}")
    return Refused(error.code, error.reason)


def _classify_connect_error(error: Exception) -> Exception:
    """Tell an unreachable host apart from a connection that broke while being set up."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError)):
        return Interrupted(str(reason))
    if isinstance(reason, http.client.HTTPException):
        return Interrupted(f"{type(reason).__name__}: {reason}")
    timed_out = isinstance(reason, (TimeoutError, socket.timeout))
    return Unreachable(reason, timed_out=timed_out)


def _resume_offset(response: http.client.HTTPResponse, offset: int, partial: Path) -> int:
    """Return where this response's body starts in the file (0 when the server ignored Range)."""
    if not offset or response.status != 206:
        return 0
    start = _parse_content_range(response.headers.get("Content-Range", ""))[0]
    if start != offset:
        partial.unlink()
        raise Interrupted(f"server resumed at byte {start} instead of {offset}")
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
                raise Interrupted(f"{type(error).__name__}: {error}") from error
            if not chunk:
                break
            writer.write(chunk)
            bar.update(len(chunk))
    size = partial.stat().st_size
    if total is not None and size < total:
        raise Interrupted(f"connection closed after {size} of {total} bytes")


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
