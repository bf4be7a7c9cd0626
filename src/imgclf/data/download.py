"""Checksum-verified, resumable downloads from http(s) and file:// URLs.

The bytes themselves travel in `transfer.py`; this module decides where they come from
(destination, a cached copy, a file:// URL or the network), verifies them, retries and names the
setting to change.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from imgclf.checksums import md5_of
from imgclf.data.transfer import Interrupted, Refused, Unreachable, copy_local_file, stream_once
from imgclf.errors import ImgclfError

ALLOWED_SCHEMES = ("http", "https", "file")
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
        copy_local_file(_local_path_of(url), partial, progress=progress)
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


def _download_http(
    url: str, partial: Path, *, timeout_seconds: float, retries: int, progress: bool
) -> None:
    """Fetch `url` into `partial`, resuming from its bytes and retrying broken transfers."""
    interruptions = 0
    unreachable = 0
    while True:
        try:
            stream_once(url, partial, timeout_seconds=timeout_seconds, progress=progress)
            return
        except Refused as error:
            raise DownloadError(
                f"{url} answered HTTP {error.code} {error.reason}. Check data.url. "
                f"{OFFLINE_WAYS_OUT}"
            ) from error.__cause__
        except Unreachable as error:
            unreachable += 1
            # A timeout already cost timeout_seconds; waiting that long again helps nobody.
            if error.timed_out or unreachable > min(retries, UNREACHABLE_RETRIES):
                raise DownloadError(
                    f"Could not reach {url} ({error}). Any bytes already fetched stay in "
                    f"{partial} and the next run resumes from there. {OFFLINE_WAYS_OUT}"
                ) from error
        except Interrupted as error:
            interruptions += 1
            if interruptions > retries:
                kept = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(
                    f"Downloading {url} broke off {interruptions} times (last: {error}). "
                    f"{kept} bytes stay in {partial}; re-run to resume. {OFFLINE_WAYS_OUT}"
                ) from error
        time.sleep(RETRY_PAUSE_SECONDS)


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
