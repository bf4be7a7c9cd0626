"""End to end: a queued grid on two workers, `imgclf tune`, and the MLflow UI's REST API.

The tests share one project and run in file order: grid, then tune, then the UI test and plain
MLflow in the checkout read back the runs both recorded.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from support.mlflow_server import free_port, serve
from support.project import (
    STUDY_EVALUATE,
    TINY_PARAMS,
    make_project,
    pipeline_env,
    run,
    start_queue,
    wait_for_queue,
)

pytestmark = pytest.mark.slow

# The model artifact is not what these tests compare; skipping it saves seconds per run. The
# search space suits the tiny Adam recipe: the shipped one searches around the fast recipe's
# SGD learning rate (0.1-0.75), which Adam does not survive.
PARAMS = {
    **TINY_PARAMS,
    "mlflow": {"log_model": False},
    "evaluate": STUDY_EVALUATE,
    "tune": {
        # Every trial here trains and has its own MLflow run: a warm start's first trial would
        # be the baseline's own params, which DVC restores from its run cache instead.
        "warm_start": False,
        "space": {
            "optimizer.name": {"choices": ["adam", "adamw", "sgd"]},
            "optimizer.lr": {"low": 3.0e-4, "high": 1.0e-2, "log": True},
            "reg.l2": {"low": 0.0, "high": 1.0e-3},
            "loss.name": {"choices": ["categorical_crossentropy", "focal"]},
            "loss.label_smoothing": {"low": 0.0, "high": 0.2},
        },
    },
}
GRID = {
    ("categorical_crossentropy", "0.0"),
    ("categorical_crossentropy", "0.0001"),
    ("focal", "0.0"),
    ("focal", "0.0001"),
}
COMPARED_PARAMS = {"loss.name", "reg.l2", "optimizer.name", "optimizer.lr", "train.epochs"}
COMPARED_METRICS = {"val_accuracy", "test_accuracy", "test_ece", "train_seconds"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = make_project(tmp_path_factory.mktemp("experiments"), PARAMS)
    run(["dvc", "repro"], path)  # the baseline: queued experiments re-run train and evaluate only
    yield path
    # A failed test must not leave queue workers training in the background.
    subprocess.run(
        ["dvc", "queue", "stop", "--kill"], cwd=path, env=pipeline_env(), capture_output=True
    )


def _client(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def _runs_named(project: Path, names: set[str]) -> dict[str, list]:
    client = _client(project)
    experiment = client.get_experiment_by_name("imgclf")
    found: dict[str, list] = {name: [] for name in names}
    for recorded in client.search_runs([experiment.experiment_id], max_results=1000):
        if recorded.info.run_name in found:
            found[recorded.info.run_name].append(recorded)
    return found


def _experiment_rows(project: Path) -> tuple[str, dict[str, dict]]:
    """The baseline commit and, by name, each experiment's data in `dvc exp show --json`."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    (baseline,) = [row for row in shown if row["rev"] != "workspace"]
    rows = {}
    for experiment in baseline["experiments"] or []:
        for revision in experiment["revs"]:
            rows[revision["name"]] = revision["data"]
    return baseline["rev"], rows


def test_queued_grid_on_two_workers(project: Path) -> None:
    queued = run(
        [
            "dvc", "exp", "run", "--queue",
            "-S", "loss.name=categorical_crossentropy,focal", "-S", "reg.l2=0,1e-4",
        ],
        project,
    ).stdout  # fmt: skip
    names = set(re.findall(r"Queued experiment '([\w-]+)'", queued))
    assert len(names) == 4, queued
    # Refused by the params check at start-up: it fails alone, the grid is not lost.
    run(["dvc", "exp", "run", "--queue", "--name", "broken-l2", "-S", "reg.l2=-1"], project)
    start_queue(project, jobs=2)
    polls: list[str] = []
    status = wait_for_queue(project, polls=polls)
    states = dict(re.findall(r"^\w+\s+([\w-]+)\s+.*?\b(Success|Failed)\b", status, re.M))
    assert states == {**dict.fromkeys(names, "Success"), "broken-l2": "Failed"}, status
    broken = subprocess.run(
        ["dvc", "queue", "logs", "broken-l2"], cwd=project, env=pipeline_env(), capture_output=True
    )
    assert b"reg.l2" in broken.stdout + broken.stderr

    baseline_rev, rows = _experiment_rows(project)
    assert names <= set(rows)
    runs = _runs_named(project, names)
    assert {name: len(found) for name, found in runs.items()} == dict.fromkeys(names, 1)
    for name, (recorded,) in runs.items():
        # DVC experiment -> MLflow run (dvc exp show) and back (the run's tags).
        assert rows[name]["metrics"]["reports/metrics/train.json"]["data"]["mlflow_run_id"] == (
            recorded.info.run_id
        )
        assert recorded.data.tags["dvc.exp_name"] == name
        assert recorded.data.tags["dvc.baseline_rev"] == baseline_rev
        assert recorded.info.status == "FINISHED"
        logs = subprocess.run(
            ["dvc", "queue", "logs", name], cwd=project, env=pipeline_env(), capture_output=True
        )
        assert b"database is locked" not in logs.stdout + logs.stderr
        assert b"Running stage 'train'" in logs.stdout
    grid = {(r.data.params["loss.name"], r.data.params["reg.l2"]) for (r,) in runs.values()}
    assert grid == GRID
    # Two workers really ran at once: some pair of MLflow runs overlaps in time or, where the
    # short train stages happened not to (CI saw that once), the queue showed two running.
    spans = sorted((r.info.start_time, r.info.end_time) for (r,) in runs.values())
    overlap = any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    running_at_once = max(len(re.findall(r"\bRunning\b", poll)) for poll in polls)
    assert overlap or running_at_once == 2, (spans, polls)


def test_tune_runs_trials_as_experiments_and_prints_the_best_line(project: Path) -> None:
    result = run(["imgclf", "tune", "--trials", "2", "--study", "e2e"], project)
    best_line = result.stdout.strip().splitlines()[-1]
    words = shlex.split(best_line)
    assert words[:3] == ["dvc", "exp", "run"] and words[3::2] == ["-S"] * (len(words[3:]) // 2)
    best = dict(item.split("=", 1) for item in words[4::2])
    assert set(best) == {
        "optimizer.name",
        "optimizer.lr",
        "reg.l2",
        "loss.name",
        "loss.label_smoothing",
    }

    names = {"tune-e2e-0", "tune-e2e-1"}
    _, rows = _experiment_rows(project)
    assert names <= set(rows)
    runs = _runs_named(project, names | {"tune-e2e"})
    (parent,) = runs.pop("tune-e2e")
    values = {}
    for name, (recorded,) in runs.items():
        tags = recorded.data.tags
        assert (tags["tune.study"], tags["tune.trial"]) == ("e2e", name[-1])
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["dvc.exp_name"] == name
        values[name] = rows[name]["metrics"]["reports/metrics/train.json"]["data"][
            "best_val_accuracy"
        ]
    best_name = max(values, key=values.get)
    assert parent.data.tags["tune.best_experiment"] == best_name
    assert parent.data.metrics["best_value"] == pytest.approx(values[best_name])
    assert parent.data.tags["tune.best_command"] == best_line
    # The printed line holds the values the best trial trained with, as MLflow recorded them.
    (best_run,) = runs[best_name]
    for key, text in best.items():
        recorded = best_run.data.params[key]
        assert recorded == text or float(recorded) == pytest.approx(float(text)), key


@pytest.fixture
def ui(project: Path, tmp_path: Path) -> Iterator[str]:
    """Plain `mlflow server` started in the checkout: no store named, MLflow's defaults."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with serve(command, port, tmp_path / "server.log", cwd=project) as running:
        yield running.url


def _api(url: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_ui_shows_the_compared_params_and_metrics(project: Path, ui: str) -> None:
    with urllib.request.urlopen(ui, timeout=30) as page:  # the UI's single-page app
        assert b"<html" in page.read().lower()
    listed = _api(ui, "experiments/search", {"max_results": 100})["experiments"]
    assert "imgclf" in {experiment["name"] for experiment in listed}
    experiment = _api(ui, "experiments/get-by-name?experiment_name=imgclf")["experiment"]
    # The same call the UI's run table makes.
    found = _api(
        ui,
        "runs/search",
        {"experiment_ids": [experiment["experiment_id"]], "max_results": 200},
    )["runs"]
    trained = {}
    for recorded in found:
        tags = {tag["key"]: tag["value"] for tag in recorded["data"].get("tags", [])}
        if tags.get("tune.role") == "study":
            continue
        trained[recorded["info"]["run_name"]] = recorded
    # The baseline (repro), the grid's four experiments and tune's two trials.
    assert len(trained) == 7, sorted(trained)
    assert {"tune-e2e-0", "tune-e2e-1"} <= trained.keys()
    for name, recorded in trained.items():
        params = {param["key"]: param["value"] for param in recorded["data"]["params"]}
        metrics = {metric["key"]: metric["value"] for metric in recorded["data"]["metrics"]}
        assert params.keys() >= COMPARED_PARAMS, name
        assert metrics.keys() >= COMPARED_METRICS, name
        assert 0 <= metrics["test_ece"] <= 1 and metrics["train_seconds"] > 0, name
        assert recorded["info"]["status"] == "FINISHED", name
    # It serves a queued run's files from the checkout's mlruns/.
    run_id = trained["tune-e2e-0"]["info"]["run_id"]
    served_url = f"{ui}/get-artifact?run_uuid={run_id}&path=params.yaml"
    with urllib.request.urlopen(served_url, timeout=30) as file:
        served = file.read()
    artifact_uri = trained["tune-e2e-0"]["info"]["artifact_uri"]
    assert served == Path(artifact_uri.removeprefix("file://"), "params.yaml").read_bytes()


# What a new user types in the checkout, with no MLFLOW_TRACKING_URI: MLflow's own default store.
_COUNT_RUNS = "import mlflow; print(len(mlflow.search_runs(search_all_experiments=True)))"


def test_plain_mlflow_in_the_checkout_sees_every_run(project: Path) -> None:
    client = _client(project)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    recorded = client.search_runs(experiments, max_results=1000)
    # The baseline, the grid's four, tune's two trials and its study run.
    assert len(recorded) >= 8
    counted = run([sys.executable, "-c", _COUNT_RUNS], project).stdout.strip().splitlines()[-1]
    assert int(counted) == len(recorded)
    # Queued workers ran in .dvc/tmp/exps, yet the store and every artifact are in the checkout,
    # in MLflow's own layout (mlruns/<experiment id>/<run id>/artifacts).
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db*"))
    artifact_root = (project.resolve() / "mlruns").as_uri()
    for one in recorded:
        root = f"{artifact_root}/{one.info.experiment_id}/{one.info.run_id}/"
        assert one.info.artifact_uri.startswith(root), one.info.artifact_uri
