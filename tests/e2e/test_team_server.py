"""End to end: the team tracking server (`imgclf server --auth`) on a real PostgreSQL.

A throw-away cluster (scripts/postgres-dev.sh) on a loopback port holds the MLflow store and the
basic-auth users; the tiny pipeline and `imgclf promote` run against the server with a user's
credentials, and the run and the champion alias are read back through the server and straight
from PostgreSQL. Skipped, with the reason, where PostgreSQL's server programs are not installed
(.ci/run installs them).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from support.mlflow_server import RunningServer, free_port, serve
from support.postgres import throwaway_postgres
from support.project import TINY_PARAMS, make_project, pipeline_env, run

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "team-server-test-pw"  # MLflow wants at least 12 characters
MODEL_NAME = "imgclf-team-server"
# The decision is tested in test_promote.py; here any first model becomes the champion.
PARAMS = {
    **TINY_PARAMS,
    "mlflow": {"registered_model": MODEL_NAME},
    "promote": {"min_accuracy": 0.0},
}


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a free loopback port; yields the store's URI."""
    with throwaway_postgres("mlflow", "mlflow_auth") as uri:
        yield uri


@pytest.fixture(scope="module")
def team_server(
    postgres: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path]]:
    """`imgclf server --auth` as docs/guide/scaling.md starts it; yields the server and the
    artifact root."""
    root = tmp_path_factory.mktemp("team-server")
    port = free_port()
    env = pipeline_env(
        {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_BACKEND_STORE_URI": postgres,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-csrf-key",
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
    )
    command = [
        sys.executable, "-m", "imgclf.cli", "server", "--auth",
        "--port", str(port), "--workers", "1", "--artifacts", str(root / "artifacts"),
    ]  # fmt: skip
    with serve(command, port, root / "server.log", env=env) as server:
        yield server, root / "artifacts"


def test_server_asks_for_credentials(team_server: tuple[RunningServer, Path]) -> None:
    server, _ = team_server
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1")
    assert refused.value.code == 401
    # The store's URI (and password) never reaches a command line, where `ps` shows it.
    command_lines = _group_command_lines(server.process.pid)
    assert any("mlflow" in line and "server" in line for line in command_lines), command_lines
    assert not any("postgresql" in line for line in command_lines), command_lines


def _group_command_lines(group: int) -> list[str]:
    """The command lines of every process in a process group (Linux /proc)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("reading other processes' command lines needs Linux /proc")
    lines = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised name: state, ppid, pgrp, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                lines.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return lines


def test_pipeline_and_promotion_land_in_postgres(
    team_server: tuple[RunningServer, Path],
    postgres: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg

    server, artifact_root = team_server
    credentials = {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD,
    }
    project = make_project(tmp_path / "project", PARAMS)
    run(["dvc", "repro"], project, **credentials)
    promoted = run([sys.executable, "-m", "imgclf.cli", "promote"], project, **credentials)
    assert "Promotion decision: PROMOTE" in promoted.stdout

    run_id = json.loads((project / "reports/mlflow_run.json").read_text())["run_id"]
    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    recorded = client.get_run(run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params["loss.name"] == "categorical_crossentropy"
    assert recorded.data.params["train.epochs"] == str(TINY_PARAMS["train"]["epochs"])
    assert recorded.data.metrics["test_accuracy"] == pytest.approx(evaluation["accuracy"])
    assert all(ADMIN_PASSWORD not in value for value in recorded.data.tags.values())

    champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.run_id == run_id
    report = json.loads((project / "reports/promotion.json").read_text())
    assert report["decision"] == "promoted" and report["version"] == champion.version

    # The server stored all of it in PostgreSQL, and the run's files under its artifact root.
    with psycopg.connect(postgres) as connection:
        status = connection.execute(
            "SELECT status FROM runs WHERE run_uuid = %s", (run_id,)
        ).fetchone()
        alias = connection.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'",
            (MODEL_NAME,),
        ).fetchone()
    assert status == ("FINISHED",)
    assert alias == (int(champion.version),)
    stored = {path.name for path in artifact_root.rglob("*") if path.is_file()}
    assert {"params.yaml", "eval.json"} <= stored, sorted(stored)
