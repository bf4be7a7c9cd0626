"""A tracking server that stops answering mid-run: training goes on and nothing is lost.

A real `mlflow server` on loopback is frozen with SIGSTOP (the way a hung host or a network
partition looks to a client: connections open, answers never come) and thawed with SIGCONT.
The train stage runs in-process on tiny data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from test_reliability_training import isolated_stage, make_workspace, run_train, state_folder, when

from support.project import pipeline_env

pytestmark = pytest.mark.slow


@pytest.fixture
def isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield from isolated_stage(monkeypatch)


class Server:
    def __init__(self, url: str, process: subprocess.Popen) -> None:
        self.url, self.process = url, process

    def freeze(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed at teardown
    env = pipeline_env({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server not healthy after 90 s"
            time.sleep(0.3)
        yield Server(url, process)
    finally:
        os.killpg(process.pid, signal.SIGCONT)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def use_server(patch: pytest.MonkeyPatch, server: Server, retry_seconds: float) -> None:
    patch.setenv("MLFLOW_TRACKING_URI", server.url)
    # One quick try per call, so the test need not wait out MLflow's own back-off.
    patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    patch.setenv("IMGCLF_MLFLOW_RETRY_SECONDS", str(retry_seconds))


def server_run(server: Server, workspace: Path):
    run_id = json.loads((workspace / "reports/mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=server.url)
    return client.get_run(run_id), client


def latest_epoch(workspace: Path) -> int:
    saved = [
        int(path.name.removeprefix("epoch-")) for path in state_folder(workspace).glob("epoch-*")
    ]
    return max(saved, default=0)


def loss_steps(client: mlflow.MlflowClient, run_id: str) -> list[int]:
    return sorted(point.step for point in client.get_metric_history(run_id, "loss"))


def test_store_down_mid_run_training_goes_on_and_logging_catches_up(
    server: Server,
    tmp_path: Path,
    isolate,
    capsys,
) -> None:
    workspace = make_workspace(tmp_path, train={"epochs": 4})
    use_server(isolate, server, retry_seconds=60)
    when((workspace / "reports/mlflow_run.json").exists, server.freeze)  # the run exists
    # Back once three epochs trained without the store and the first epoch's logging try
    # (started as epoch 1 ended, one 1 s timeout long) has surely failed.
    first_epoch_seen: list[float] = []

    def back_when_due() -> bool:
        if not first_epoch_seen and latest_epoch(workspace) >= 1:
            first_epoch_seen.append(time.monotonic())
        return latest_epoch(workspace) >= 3 and time.monotonic() - first_epoch_seen[0] > 2.5

    when(back_when_due, server.thaw)
    assert run_train(workspace, isolate) == 0
    stderr = capsys.readouterr().err
    assert "MLflow store unreachable" in stderr or "could not log the metrics" in stderr
    run, client = server_run(server, workspace)
    assert run.info.status == "FINISHED"
    assert loss_steps(client, run.info.run_id) == [1, 2, 3, 4]  # each epoch once, none lost


def test_store_that_never_returns_fails_keeps_the_model_and_a_rerun_logs_the_rest(
    server: Server,
    tmp_path: Path,
    isolate,
    capsys,
) -> None:
    workspace = make_workspace(tmp_path, train={"epochs": 3})
    use_server(isolate, server, retry_seconds=3)
    when((workspace / "reports/mlflow_run.json").exists, server.freeze)
    try:
        assert run_train(workspace, isolate) == 2
    finally:
        server.thaw()
    stderr = capsys.readouterr().err
    assert server.url in stderr and "left unfinished" in stderr
    assert (workspace / "models/model.keras").is_file()
    run, client = server_run(server, workspace)
    assert run.info.status != "FINISHED"
    assert (state_folder(workspace) / "epoch-00003").is_dir()

    # The store is back: the rerun trains nothing, logs what was missing and finishes the run.
    assert run_train(workspace, isolate) == 0
    again, _ = server_run(server, workspace)
    assert again.info.run_id == run.info.run_id
    assert again.info.status == "FINISHED"
    assert again.data.tags["resumed_from_epoch"] == "3"
    assert loss_steps(client, run.info.run_id) == [1, 2, 3]
    assert not state_folder(workspace).exists()
