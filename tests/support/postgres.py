"""A throw-away PostgreSQL cluster (scripts/postgres-dev.sh) on a free loopback port."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.mlflow_server import free_port
from support.project import REPO_ROOT

POSTGRES_DEV = REPO_ROOT / "scripts" / "postgres-dev.sh"


@contextlib.contextmanager
def throwaway_postgres(*databases: str) -> Iterator[str]:
    """Start a cluster holding databases; yield the first one's URI. Skips without PostgreSQL."""
    found = subprocess.run([str(POSTGRES_DEV), "bindir"], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(
            "PostgreSQL server programs (initdb, pg_ctl) are not on PATH or in "
            "/usr/lib/postgresql/*/bin; `apt-get install postgresql` (as .ci/run does) runs this"
        )
    # Under /tmp, not pytest's private tmp folder: as root, the cluster's owner must reach it.
    folder = Path(tempfile.mkdtemp(prefix="imgclf-pg-"))
    try:
        started = subprocess.run(
            [str(POSTGRES_DEV), "start", str(folder), str(free_port()), *databases],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(POSTGRES_DEV), "stop", str(folder)], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
