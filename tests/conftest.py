"""Fixtures every tier shares: a project folder to run a stage in, and a stage run isolated.

Test tiers (markers registered in pyproject.toml, `--strict-markers` rejects any other):
- unmarked: fast unit and data tests (`pytest -m "not slow and not integration"`);
- `integration`: stage runs in-process that train a model (seconds to a minute each);
- `slow`: end-to-end runs of the real `dvc` and `mlflow` commands (tests/e2e and a few more).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder as cwd, with caches inside it and environment changes undone after."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    # Stages set these with setdefault; setting them here lets monkeypatch restore them.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return project


@pytest.fixture
def isolate(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Undo what a stage run changes in this process: env, MLflow's URI, signals, determinism."""
    from support.train_stage import isolated_stage  # imports TensorFlow: only where needed

    yield from isolated_stage(monkeypatch)


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with every table, made once by MLflow itself.

    Creating the tables takes seconds per store; tests about something else copy this file
    (`with_mlflow_store`). Store creation itself is tested in test_tracking_store.py.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    database = folder / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{database}", (folder / "artifacts").as_uri())
    store.engine.dispose()
    return database


@pytest.fixture
def with_mlflow_store(mlflow_db_template: Path):
    """Give a project folder an empty MLflow store at mlflow.db, where stages look."""

    def seed(project: Path) -> Path:
        target = project / "mlflow.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mlflow_db_template, target)
        return project

    return seed
