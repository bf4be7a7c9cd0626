"""Tests for imgclf.tracking.runs: runs end FINISHED, FAILED or KILLED in a real SQLite store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imgclf.tracking.runs import start_run
from imgclf.tracking.store import connect, default_artifact_root, resolve_tracking_uri


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path):
    """A real SQLite MLflow store in a throw-away project; MLflow's globals restored after."""
    from mlflow.tracking._tracking_service import utils

    project = tmp_path_factory.mktemp("project")
    shutil.copyfile(mlflow_db_template, project / "mlflow.db")  # tables made once
    uri = resolve_tracking_uri({}, project)
    with pytest.MonkeyPatch.context() as patch:
        # mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI into os.environ: undo it after.
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setattr(utils, "_tracking_uri", utils._tracking_uri)
        yield uri, project


def finished_run(store, name: str, body) -> tuple:
    import mlflow

    uri, project = store
    experiment_id = connect(uri, name, default_artifact_root({}, project))
    params = {"reg.l2": 0.0005, "data.path": None, "train.epochs": 3}
    captured = {}
    try:
        with start_run(experiment_id, "exp-1", {"data.hash": "abc"}, params) as run:
            captured["run_id"] = run.info.run_id
            body()
    finally:
        assert mlflow.active_run() is None
    return mlflow.MlflowClient().get_run(captured["run_id"])


def test_start_run_ends_finished_and_logs_params(store) -> None:
    run = finished_run(store, "finished", lambda: None)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "exp-1"
    assert run.data.params == {"reg.l2": "0.0005", "data.path": "", "train.epochs": "3"}
    assert run.data.tags["data.hash"] == "abc"


def test_start_run_ends_failed_on_an_exception(store) -> None:
    def crash() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        finished_run(store, "failed", crash)
    import mlflow

    experiment = mlflow.get_experiment_by_name("failed")
    (run,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert run.info.status == "FAILED"


def test_start_run_ends_killed_on_ctrl_c(store) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finished_run(store, "killed", interrupt)
    import mlflow

    experiment = mlflow.get_experiment_by_name("killed")
    (run,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert run.info.status == "KILLED"
