"""A local HTTP file server for download tests: byte ranges and a dropped first transfer."""

from __future__ import annotations

import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple


class RecordedRequest(NamedTuple):
    """One request the server answered."""

    method: str
    path: str
    range_header: str | None
    status: int


@contextmanager
def serve_directory(
    root: Path,
    *,
    drop_after_bytes: int | None = None,
    honour_ranges: bool = True,
    request_log: list[RecordedRequest] | None = None,
) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 and yield the base URL `http://127.0.0.1:<port>/`.

    Args:
        drop_after_bytes: the first GET of each file closes the connection after this many
            body bytes, although its Content-Length promised the whole file.
        honour_ranges: when False, Range headers are ignored and the whole file comes back (200).
        request_log: when given, every answered request is appended to it.
    """
    handler = make_handler(root.resolve(), drop_after_bytes, honour_ranges, request_log)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url(path: str = "file.bin") -> str:
    """Return an http URL on 127.0.0.1 at a port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"


def make_handler(
    root: Path,
    drop_after_bytes: int | None,
    honour_ranges: bool,
    request_log: list[RecordedRequest] | None,
) -> type[BaseHTTPRequestHandler]:
    """Build a request handler class bound to one served folder and its options."""
    dropped: set[Path] = set()
    lock = threading.Lock()

    class RangeFileHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.answer(send_body=True)

        def do_HEAD(self) -> None:
            self.answer(send_body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

        def answer(self, *, send_body: bool) -> None:
            range_header = self.headers.get("Range")
            path = self.resolve_path()
            if path is None:
                self.record(range_header, 404)
                self.send_error(404)
                return
            data = path.read_bytes()
            start, end = 0, len(data) - 1
            status = 200
            if range_header and honour_ranges:
                parsed = parse_range(range_header, len(data))
                if parsed is None:
                    self.record(range_header, 416)
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = parsed
                status = 206
            self.record(range_header, status)
            body = data[start : end + 1]
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if honour_ranges else "none")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if not send_body:
                return
            if self.should_drop(path):
                self.wfile.write(body[:drop_after_bytes])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        def resolve_path(self) -> Path | None:
            relative = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            path = (root / relative).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                return None
            return path

        def should_drop(self, path: Path) -> bool:
            if drop_after_bytes is None:
                return False
            with lock:
                if path in dropped:
                    return False
                dropped.add(path)
                return True

        def record(self, range_header: str | None, status: int) -> None:
            if request_log is not None:
                with lock:
                    request_log.append(
                        RecordedRequest(self.command, self.path, range_header, status)
                    )

    return RangeFileHandler


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Return the inclusive byte span of a single `bytes=A-B` range, or None if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        return None
    return start, end
