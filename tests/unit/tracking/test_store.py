"""Tests for imgclf.tracking.store: where the store is, and opening it (a real SQLite store)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgclf.tracking.store import (
    HTTP_DEFAULTS,
    TrackingError,
    _exclusive,
    connect,
    default_artifact_root,
    move_legacy_store,
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
    # MLflow's own default, sqlite:///mlflow.db, at the checkout rather than the cwd.
    assert resolve_tracking_uri({}, tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri({"MLFLOW_TRACKING_URI": ""}, tmp_path).startswith("sqlite:///")


def test_artifact_root_only_for_the_project_store(tmp_path: Path) -> None:
    assert default_artifact_root({"MLFLOW_TRACKING_URI": "http://x:5000"}, tmp_path) is None
    assert default_artifact_root({}, tmp_path) == f"file://{tmp_path}/mlruns"


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
    root = default_artifact_root({}, project)
    first = connect(uri, "once", root)
    assert connect(uri, "once", root) == first
    assert (project / "mlflow.db").is_file()
    client = mlflow.MlflowClient()
    experiments = client.search_experiments(filter_string="name = 'once'")
    assert [experiment.experiment_id for experiment in experiments] == [first]
    # MLflow's own layout under the checkout's mlruns/, though the cwd is elsewhere.
    assert Path.cwd() != project
    assert experiments[0].artifact_location == f"{root}/{first}"
    assert client.get_experiment("0").artifact_location == f"{root}/0"
    assert connect(uri, "another", root) != first


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


def test_a_queued_experiment_records_in_the_checkout(store) -> None:
    import mlflow

    _, project = store
    workspace = project / ".dvc" / "tmp" / "exps" / "tmpq1"
    workspace.mkdir(parents=True)
    opened = open_store({"DVC_ROOT": str(workspace)}, workspace, "queued")
    checkout = project.resolve()
    assert opened.tracking_uri == f"sqlite:///{checkout / 'mlflow.db'}"
    location = mlflow.MlflowClient().get_experiment(opened.experiment_id).artifact_location
    assert location == f"{(checkout / 'mlruns').as_uri()}/{opened.experiment_id}"
    assert not list((project / ".dvc").rglob("mlflow.db*"))


def _legacy_project(root: Path, template: Path) -> tuple[Path, str]:
    """A checkout as imgclf left it before the move: mlruns/mlflow.db, artifacts in
    mlruns/artifacts/, one finished run with a logged file."""
    from mlflow import MlflowClient

    project = root / "checkout"
    legacy = project / "mlruns" / "mlflow.db"
    legacy.parent.mkdir(parents=True)
    shutil.copyfile(template, legacy)
    client = MlflowClient(f"sqlite:///{legacy}")
    artifacts = (project / "mlruns" / "artifacts").as_uri()
    experiment_id = client.create_experiment("imgclf", artifact_location=artifacts)
    run_id = client.create_run(experiment_id, run_name="before-the-move").info.run_id
    client.log_param(run_id, "reg.l2", 0.0005)
    client.log_text(run_id, "recorded before the move", "notes/old.txt")
    client.set_terminated(run_id)
    return project, run_id


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_store_at_the_old_place_moves_once_keeping_its_runs(
    tmp_path: Path, mlflow_db_template: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import mlflow
    from mlflow.tracking._tracking_service import utils

    project, run_id = _legacy_project(tmp_path, mlflow_db_template)
    legacy, database = project / "mlruns" / "mlflow.db", project / "mlflow.db"
    before = _digest(legacy)
    assert resolve_tracking_uri({}, project) == f"sqlite:///{database}"
    message = capsys.readouterr().err
    assert f"moved the MLflow store {legacy} -> {database}" in message
    assert "artifacts stay in mlruns/" in message
    assert not legacy.exists() and _digest(database) == before
    assert resolve_tracking_uri({}, project) == f"sqlite:///{database}"
    assert capsys.readouterr().err == ""  # once
    # What a user types in the checkout, with no MLFLOW_TRACKING_URI: MLflow's own default.
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(utils, "_tracking_uri", None)
    assert mlflow.get_tracking_uri() == f"sqlite:///{database}"
    (found,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert found.info.run_id == run_id and found.data.params == {"reg.l2": "0.0005"}
    # Its artifact still lives, and is read, where the old store recorded it.
    assert found.info.artifact_uri.startswith((project / "mlruns" / "artifacts").as_uri())
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/notes/old.txt")
    assert text == "recorded before the move"


def test_the_environment_wins_and_leaves_an_old_store_alone(tmp_path: Path) -> None:
    legacy = tmp_path / "mlruns" / "mlflow.db"
    legacy.parent.mkdir()
    legacy.write_bytes(b"old store")
    server = "http://127.0.0.1:5000"
    assert resolve_tracking_uri({"MLFLOW_TRACKING_URI": server}, tmp_path) == server
    assert legacy.read_bytes() == b"old store" and not (tmp_path / "mlflow.db").exists()


def test_sqlite_journal_files_move_with_the_store(tmp_path: Path) -> None:
    # A hot journal or write-ahead log left beside a database belongs to it.
    legacy, database = tmp_path / "mlruns" / "mlflow.db", tmp_path / "mlflow.db"
    legacy.parent.mkdir()
    for suffix in ("", "-journal", "-wal"):
        legacy.with_name(legacy.name + suffix).write_text(f"contents{suffix}")
    move_legacy_store(legacy, database)
    assert sorted(path.name for path in legacy.parent.iterdir()) == []
    for suffix in ("", "-journal", "-wal"):
        assert database.with_name(database.name + suffix).read_text() == f"contents{suffix}"


def test_two_stores_are_refused_touching_neither(tmp_path: Path, mlflow_db_template: Path) -> None:
    project, _ = _legacy_project(tmp_path, mlflow_db_template)
    legacy, database = project / "mlruns" / "mlflow.db", project / "mlflow.db"
    shutil.copyfile(mlflow_db_template, database)  # as a plain `mlflow ui` would leave it
    digests = (_digest(legacy), _digest(database))
    with pytest.raises(TrackingError) as caught:
        resolve_tracking_uri({}, project)
    message = str(caught.value)
    assert f"{legacy} (imgclf's old place, 1 run)" in message
    assert f"{database} (MLflow's default place, 0 runs)" in message
    assert f"rm {database}" in message and "MLFLOW_TRACKING_URI=sqlite:///" in message
    with pytest.raises(TrackingError):
        open_store({}, project, "imgclf")  # every command stops, before any compute
    assert (_digest(legacy), _digest(database)) == digests


# Two queue workers that start at once: each resolves the store, at most one moves it.
_WORKER = (
    "import pathlib, sys; from imgclf.tracking.store import resolve_tracking_uri; "
    "print(resolve_tracking_uri({}, pathlib.Path(sys.argv[1])))"
)


def test_parallel_workers_move_the_store_once_under_the_creation_lock(
    tmp_path: Path, mlflow_db_template: Path
) -> None:
    legacy, database = tmp_path / "mlruns" / "mlflow.db", tmp_path / "mlflow.db"
    legacy.parent.mkdir()
    shutil.copyfile(mlflow_db_template, legacy)
    before = _digest(legacy)
    command = [sys.executable, "-c", _WORKER, str(tmp_path)]
    with _exclusive(tmp_path / "mlflow.db.lock"):  # the lock that creating the store takes
        workers = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        time.sleep(3)  # time to start and reach the lock: neither may move the store meanwhile
        assert legacy.exists() and not database.exists()
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [f"sqlite:///{database}"] * 2
    assert sum("moved the MLflow store" in err for _, err in outputs) == 1, outputs
    assert not legacy.exists() and _digest(database) == before
