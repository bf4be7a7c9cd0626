"""A real `mlflow server` (or a command that becomes one) on loopback, for tests.

`serve` starts any such command in its own process group, waits for `/health`, and stops the
whole group afterwards (uvicorn runs as a child of `mlflow server`). `mlflow_server` builds the
plain `mlflow server` command most tests want.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.project import pipeline_env

HEALTH_TIMEOUT_SECONDS = 120  # two shared cores: a cold server start has taken ~40 s


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    """A started server: its base URL, process and log file."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def freeze(self) -> None:
        """Stop answering, connections left open: how a hung host looks to a client."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)


@contextmanager
def serve(
    command: Sequence[str],
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[RunningServer]:
    """Run `command` (which must serve on 127.0.0.1:port), yield once /health answers 200.

    env defaults to `pipeline_env()` (no MLFLOW_* from the caller) with MLflow's job runner off:
    no test needs it, and it adds processes and a slow shutdown.
    """
    if env is None:
        env = pipeline_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        server = RunningServer(url, process, log_path)
        try:
            wait_until_healthy(server)
            yield server
        finally:
            stop(process)


def wait_until_healthy(server: RunningServer) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"server exited {server.process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            waited = f"server not healthy after {HEALTH_TIMEOUT_SECONDS} s"
            pytest.fail(f"{waited}:\n{server.log_tail()}")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (thawed first, in case a test froze it), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def mlflow_server(
    root: Path,
    backend_store_uri: str,
    *,
    artifacts_destination: Path | None = None,
    default_artifact_root: Path | None = None,
) -> Iterator[RunningServer]:
    """`mlflow server` on a free loopback port, one worker, its log in root/server.log."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", backend_store_uri,
    ]  # fmt: skip
    if artifacts_destination is not None:
        command += ["--artifacts-destination", str(artifacts_destination)]
    if default_artifact_root is not None:
        command += ["--default-artifact-root", str(default_artifact_root)]
    with serve(command, port, root / "server.log") as server:
        yield server


@contextmanager
def sqlite_mlflow_server(root: Path) -> Iterator[RunningServer]:
    """`mlflow server` on a SQLite store in root, proxying artifacts to root/artifacts."""
    with mlflow_server(
        root, f"sqlite:///{root / 'mlflow.db'}", artifacts_destination=root / "artifacts"
    ) as running:
        yield running
