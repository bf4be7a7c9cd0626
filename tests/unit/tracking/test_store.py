"""Tests for imgclf.tracking.store: where the store is, and opening it (a real SQLite store)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from imgclf.tracking.store import (
    HTTP_DEFAULTS,
    TrackingError,
    connect,
    default_artifact_location,
    open_store,
    resolve_project_root,
    resolve_tracking_uri,
)
from support.http import closed_port_url


def test_project_root_leaves_a_dvc_temporary_workspace(tmp_path: Path) -> None:
    project = tmp_path / "checkout"
    for workspace in ("tmpabc", "tmpabc/nested"):
        environ = {"DVC_ROOT": str(project / ".dvc" / "tmp" / "exps" / workspace)}
        assert resolve_project_root(environ, tmp_path / "elsewhere") == project.resolve()


def test_project_root_keeps_a_normal_dvc_root(tmp_path: Path) -> None:
    project = tmp_path / "checkout"
    assert resolve_project_root({"DVC_ROOT": str(project)}, tmp_path) == project.resolve()
    # Only the whole .dvc/tmp/exps sequence marks a temporary workspace.
    near_miss = project / ".dvc" / "tmp" / "runs"
    assert resolve_project_root({"DVC_ROOT": str(near_miss)}, tmp_path) == near_miss.resolve()


def test_project_root_falls_back_to_cwd(tmp_path: Path) -> None:
    assert resolve_project_root({}, tmp_path) == tmp_path.resolve()
    assert resolve_project_root({"DVC_ROOT": ""}, tmp_path) == tmp_path.resolve()


def test_tracking_uri_prefers_the_environment(tmp_path: Path) -> None:
    server = "http://mlflow.example:5000"
    assert resolve_tracking_uri({"MLFLOW_TRACKING_URI": server}, tmp_path) == server
    assert resolve_tracking_uri({}, tmp_path) == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert resolve_tracking_uri({"MLFLOW_TRACKING_URI": ""}, tmp_path).startswith("sqlite:///")


def test_artifact_location_only_for_the_project_store(tmp_path: Path) -> None:
    assert default_artifact_location({"MLFLOW_TRACKING_URI": "http://x:5000"}, tmp_path) is None
    location = default_artifact_location({}, tmp_path)
    assert location == f"file://{tmp_path}/mlruns/artifacts"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """A real SQLite MLflow store in a throw-away project; MLflow's globals restored after."""
    from mlflow.tracking._tracking_service import utils

    project = tmp_path_factory.mktemp("project")
    uri = resolve_tracking_uri({}, project)
    with pytest.MonkeyPatch.context() as patch:
        # mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI into os.environ: undo it after.
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setattr(utils, "_tracking_uri", utils._tracking_uri)
        yield uri, project


def test_connect_creates_the_experiment_once(store) -> None:
    import mlflow

    uri, project = store
    location = default_artifact_location({}, project)
    first = connect(uri, "once", location)
    assert connect(uri, "once", location) == first
    assert (project / "mlruns" / "mlflow.db").is_file()
    experiments = mlflow.MlflowClient().search_experiments(filter_string="name = 'once'")
    assert [experiment.experiment_id for experiment in experiments] == [first]
    assert experiments[0].artifact_location == location
    assert connect(uri, "another", location) != first


def test_open_store_sets_http_defaults_and_opens_the_experiment(store) -> None:
    uri, project = store
    environ = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    opened = open_store(environ, project, "opened")
    assert opened.tracking_uri == uri
    assert opened.project_root == project.resolve()
    assert opened.experiment_id == connect(uri, "opened", None)
    # A value the environment sets wins; a missing one gets the short default.
    assert environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
    assert (
        environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        == HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    )


def test_unreachable_server_fails_fast_naming_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking._tracking_service import utils

    # MLflow's default retries (minutes) stay in force: connect must not wait for them.
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "restored-after-the-test")
    monkeypatch.setattr(utils, "_tracking_uri", utils._tracking_uri)
    uri = closed_port_url("").rstrip("/")
    started = time.monotonic()
    with pytest.raises(TrackingError) as caught:
        connect(uri, "unreachable", None)
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert uri in message and "MLFLOW_TRACKING_URI" in message


def test_store_creation_lock_makes_a_second_holder_wait(tmp_path: Path) -> None:
    import threading

    from imgclf.tracking.store import _exclusive

    lock_path, order = tmp_path / "mlflow.db.lock", []

    def second() -> None:
        with _exclusive(lock_path):
            order.append("second")

    with _exclusive(lock_path):
        waiter = threading.Thread(target=second)
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # blocked while the first holds the lock
        order.append("first")
    waiter.join(timeout=10)
    assert order == ["first", "second"]
