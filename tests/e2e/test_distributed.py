"""End to end: multi-worker training, two real train processes on 127.0.0.1 over gRPC.

The chief runs in the project, worker 1 in a copy of it (as on a second machine), both with
TF_CONFIG and MultiWorkerMirroredStrategy on CPU; the store is the project's SQLite one.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from support.project import TINY_PARAMS, make_project, pipeline_env, run

pytestmark = pytest.mark.slow

PARAMS = {
    **TINY_PARAMS,
    "train": {**TINY_PARAMS["train"], "distribution": "multi_worker", "batch_size": 16},
    "mlflow": {"log_model": False},
}
OUTPUTS = ("models/model.keras", "reports/metrics/train.json", "reports/mlflow_run.json")
# Each process imports TensorFlow (tens of seconds on a busy machine) before it joins.
JOIN_SECONDS = 240


def _train_command(project: Path) -> list[str]:
    """The train stage's command, exactly as dvc.yaml writes it."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return [sys.executable, "-m", *stages["train"]["cmd"].split()[2:]]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Worker:
    """One train process with its TF_CONFIG; its output is collected line by line."""

    def __init__(self, project: Path, ports: list[int], index: int, **env: str) -> None:
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            _train_command(project),
            cwd=project,
            env=pipeline_env({"TF_CONFIG": json.dumps(tf_config), **env}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} in the worker's output:\n{self.output[-4000:]}")
            time.sleep(0.2)

    def finish(self, timeout_seconds: float) -> int:
        try:
            code = self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"still running after {timeout_seconds} s:\n{self.output[-4000:]}"
            ) from None
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _runs(project: Path) -> list:
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("imgclf")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The chief's project with its data prepared, and worker 1's copy of it."""
    chief = make_project(tmp_path_factory.mktemp("chief"), PARAMS)
    run(["dvc", "repro", "augment"], chief)
    worker = tmp_path_factory.mktemp("worker") / "project"
    shutil.copytree(chief, worker, symlinks=True)
    return chief, worker


def test_two_workers_train_one_model_and_one_run(projects: tuple[Path, Path]) -> None:
    chief_project, worker_project = projects
    ports = _free_ports(2)
    chief = Worker(chief_project, ports, 0)
    worker = Worker(worker_project, ports, 1)
    try:
        chief_code = chief.finish(JOIN_SECONDS)
        worker_code = worker.finish(60)
    finally:
        chief.kill()
        worker.kill()
    assert chief_code == 0, chief.output[-4000:]
    assert worker_code == 0, worker.output[-4000:]
    assert "worker:1 done" in worker.output

    assert all((chief_project / name).is_file() for name in OUTPUTS)
    # Worker 1 trained, but wrote no output and never touched a store.
    assert not any((worker_project / name).exists() for name in OUTPUTS)
    assert not (worker_project / "mlflow.db").exists()
    assert not (worker_project / "mlruns").exists()
    assert not (worker_project / ".dvc" / "tmp" / "imgclf-train-backup").exists()

    runs = _runs(chief_project)
    assert len(runs) == 1
    recorded = runs[0]
    assert recorded.info.status == "FINISHED"
    tags = recorded.data.tags
    assert tags["distribution.strategy"] == "multi_worker"
    assert tags["distribution.num_workers"] == "2"
    assert tags["distribution.num_replicas"] == "2"
    assert tags["distribution.task"] == "worker:0"
    # batch_size 16 per replica, lr scaled linearly by the two replicas.
    assert tags["distribution.global_batch_size"] == "32"
    assert float(tags["distribution.learning_rate"]) == pytest.approx(2 * PARAMS["optimizer"]["lr"])
    assert recorded.data.params["train.distribution"] == "multi_worker"
    metrics = json.loads((chief_project / "reports/metrics/train.json").read_text())
    assert metrics["mlflow_run_id"] == recorded.info.run_id and metrics["epochs"] == 1
    assert 0.0 <= metrics["best_val_accuracy"] <= 1.0


def test_losing_a_worker_fails_the_chief_quickly(projects: tuple[Path, Path]) -> None:
    chief_project, worker_project = projects
    before = {recorded.info.run_id for recorded in _runs(chief_project)}
    ports = _free_ports(2)
    chief = Worker(chief_project, ports, 0)
    worker = Worker(worker_project, ports, 1)
    try:
        worker.wait_for("worker:1 training with 2 workers", JOIN_SECONDS)
        worker.kill()
        killed = time.monotonic()
        code = chief.finish(120)
        seconds = time.monotonic() - killed
    finally:
        chief.kill()
        worker.kill()
    assert code != 0
    assert seconds < 120
    assert f"lost worker:1 (127.0.0.1:{ports[1]}) during training" in chief.output
    assert "restart every worker with the same TF_CONFIG" in chief.output
    new = [recorded for recorded in _runs(chief_project) if recorded.info.run_id not in before]
    assert [recorded.info.status for recorded in new] == ["FAILED"]


def test_a_worker_that_never_starts_stops_the_chief(projects: tuple[Path, Path]) -> None:
    chief_project, _ = projects
    before = {recorded.info.run_id for recorded in _runs(chief_project)}
    ports = _free_ports(2)
    chief = Worker(chief_project, ports, 0, IMGCLF_WORKER_WAIT_SECONDS="5")
    try:
        code = chief.finish(JOIN_SECONDS)
    finally:
        chief.kill()
    assert code == 2, chief.output[-4000:]
    assert f"worker:1 (127.0.0.1:{ports[1]}) did not join the cluster in time" in chief.output
    assert "IMGCLF_WORKER_WAIT_SECONDS" in chief.output
    # It stopped before training: no run was started.
    assert {recorded.info.run_id for recorded in _runs(chief_project)} == before
