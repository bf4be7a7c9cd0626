"""A tracking server that stops answering mid-run: training goes on and nothing is lost.

A real `mlflow server` on loopback is frozen with SIGSTOP (the way a hung host or a network
partition looks to a client: connections open, answers never come) and thawed with SIGCONT.
The train stage runs in-process on tiny data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from support.mlflow_server import RunningServer, sqlite_mlflow_server
from support.train_stage import make_workspace, run_train, state_folder, when

# A real `mlflow server` (slow) and train runs in-process (integration).
pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with sqlite_mlflow_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def use_server(patch: pytest.MonkeyPatch, server: RunningServer, retry_seconds: float) -> None:
    patch.setenv("MLFLOW_TRACKING_URI", server.url)
    # One quick try per call, so the test need not wait out MLflow's own back-off.
    patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    patch.setenv("IMGCLF_MLFLOW_RETRY_SECONDS", str(retry_seconds))


def server_run(server: RunningServer, workspace: Path):
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
    server: RunningServer,
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
    server: RunningServer,
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
