"""Where the MLflow store is, and `open_store`: the one way every command opens it.

Without MLFLOW_TRACKING_URI the store is MLflow's own default, anchored at the user's checkout:
`sqlite:///<project>/mlflow.db`, artifacts in `<project>/mlruns/<experiment id>/`, so plain
`mlflow ui` and `mlflow.search_runs()` run there see every run. A store at imgclf's old place,
`mlruns/mlflow.db`, moves there once.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError

# MLflow 3's defaults, relative to the working directory: sqlite:///mlflow.db and ./mlruns.
STORE_FILE = "mlflow.db"
ARTIFACT_FOLDER = "mlruns"
# Where imgclf kept the store before it moved to MLflow's default place.
LEGACY_STORE = Path("mlruns", "mlflow.db")
# SQLite's rollback journal or write-ahead log belongs to its database: they move together.
_SQLITE_COMPANIONS = ("-journal", "-wal", "-shm")
# DVC runs queued and --temp experiments in <project>/.dvc/tmp/exps/<workspace>/; runs from
# there must still land in the user's own store, so that prefix is cut from DVC_ROOT.
_TEMP_WORKSPACE_PARTS = (".dvc", "tmp", "exps")
# An unreachable tracking server costs seconds per call, not MLflow's default seven retries
# with exponential back-off (minutes); the variables, when set, win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def masked(uri: str) -> str:
    """The URI with any password replaced by ***, fit for messages and logs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URI>"


class TrackingError(ImgclfError, RuntimeError):
    """The MLflow store cannot be reached or used."""


@dataclass(frozen=True)
class Store:
    """An opened MLflow store: the user's checkout, the store's URI and the experiment's id."""

    project_root: Path
    tracking_uri: str
    experiment_id: str


def open_store(environ: MutableMapping[str, str], cwd: Path, experiment_name: str) -> Store:
    """Set the HTTP time-outs, find the store, fail fast if it is unusable, open the experiment.

    environ is the process environment (os.environ): MLflow reads its HTTP settings there.
    """
    set_http_defaults(environ)
    project_root = resolve_project_root(environ, cwd)
    tracking_uri = resolve_tracking_uri(environ, project_root)
    experiment_id = connect(
        tracking_uri, experiment_name, default_artifact_root(environ, project_root)
    )
    return Store(project_root, tracking_uri, experiment_id)


def set_http_defaults(environ: MutableMapping[str, str]) -> None:
    """Give MLflow's HTTP client short time-outs unless the environment sets its own."""
    for variable, value in HTTP_DEFAULTS.items():
        environ.setdefault(variable, value)


def resolve_project_root(environ: Mapping[str, str], cwd: Path) -> Path:
    """The user's checkout: DVC_ROOT (outside any temporary experiment workspace) or cwd."""
    root = Path(environ.get("DVC_ROOT") or cwd).resolve()
    parts = root.parts
    span = len(_TEMP_WORKSPACE_PARTS)
    for start in range(len(parts) - span + 1):
        if parts[start : start + span] == _TEMP_WORKSPACE_PARTS:
            return Path(*parts[:start])
    return root


def resolve_tracking_uri(environ: Mapping[str, str], project_root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the project's SQLite store, moved from mlruns/ once."""
    explicit = environ.get("MLFLOW_TRACKING_URI")
    if explicit:
        return explicit
    database = project_root / STORE_FILE
    move_legacy_store(project_root / LEGACY_STORE, database)
    return f"sqlite:///{database}"


def default_artifact_root(environ: Mapping[str, str], project_root: Path) -> str | None:
    """Where new experiments keep artifacts (one folder each): mlruns/ unless a server decides."""
    if environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (project_root / ARTIFACT_FOLDER).as_uri()


def move_legacy_store(legacy: Path, database: Path) -> None:
    """Move a store from imgclf's old place to `database`, once, under the creation lock.

    The runs it holds keep their artifacts: their URIs name absolute paths under
    mlruns/artifacts/, which stays where it is. Refuses, touching neither, when both exist.
    """
    if not legacy.exists():
        return
    with _exclusive(_lock_path(database)):
        if not legacy.exists():
            return  # a parallel queue worker moved it while this one waited
        if database.exists():
            raise TrackingError(_two_stores_message(legacy, database))
        # Companions first, the database last: until it moves, the next command finishes the job.
        for suffix in (*_SQLITE_COMPANIONS, ""):
            source = legacy.with_name(legacy.name + suffix)
            if source.exists():
                shutil.move(source, database.with_name(database.name + suffix))
    print(
        f"imgclf: moved the MLflow store {legacy} -> {database} (once): it now sits where plain "
        "`mlflow ui` and mlflow.search_runs() in the checkout look; artifacts stay in mlruns/.",
        file=sys.stderr,
    )


def _two_stores_message(legacy: Path, database: Path) -> str:
    return (
        f"two MLflow stores: {legacy} (imgclf's old place, {_count_runs(legacy)}) and "
        f"{database} (MLflow's default place, {_count_runs(database)}); imgclf moves the old "
        "one there once, but never over another store, so it touched neither.\n"
        f"If {database.name} holds no runs you need (a plain `mlflow ui` in the checkout creates "
        f"it empty), delete it (rm {database}) and rerun: the old store moves there. "
        f"To keep both, rename the old one (mv {legacy} {legacy.with_name('mlflow-old.db')}) and "
        f"open it with MLFLOW_TRACKING_URI=sqlite:///{legacy.with_name('mlflow-old.db')}."
    )


def _count_runs(database: Path) -> str:
    """How many runs an SQLite MLflow store holds, read-only, in words for a message."""
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM runs").fetchone()
    except sqlite3.Error:
        return "no MLflow runs table"
    return f"{count} run{'' if count == 1 else 's'}"


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive file lock, so parallel queue workers create the store only once."""
    import filelock

    # filelock, not fcntl: the same lock on Windows; it waits as long as the holder needs.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(lock_path):
        yield


def check_server(tracking_uri: str, timeout_seconds: float = 10.0) -> None:
    """Fail in seconds on a server that is down: MLflow's own retries take minutes.

    Only http(s) URIs name a server; any other store is left to MLflow.
    """
    import urllib.error
    import urllib.request

    if not tracking_uri.startswith(("http://", "https://")):
        return
    health = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_seconds):
            return
    except urllib.error.HTTPError:
        return  # it answered: a proxy or auth layer may guard /health, but the server is up
    except (OSError, ValueError) as error:
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {tracking_uri} ({error}).\n"
            "Start it, fix MLFLOW_TRACKING_URI, or unset it to use the project's mlflow.db."
        ) from error


def connect(tracking_uri: str, experiment_name: str, artifact_root: str | None) -> str:
    """Point MLflow at the store, fail fast if it is unusable, and return the experiment id.

    artifact_root: new experiments get `<artifact_root>/<experiment id>`, MLflow's own layout,
    whatever the working directory (a DVC workspace); None leaves it to the tracking server.
    """
    import mlflow

    check_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    guard: contextlib.AbstractContextManager = contextlib.nullcontext()
    if tracking_uri.startswith("sqlite:///"):
        # The first connection creates the tables; two workers doing that at once collide.
        guard = _exclusive(_lock_path(Path(tracking_uri.removeprefix("sqlite:///"))))
    try:
        with guard:
            return _get_or_create_experiment(tracking_uri, experiment_name, artifact_root)
    except Exception as error:  # MLflow raises many types for an unreachable store
        raise TrackingError(
            f"cannot use the MLflow store at {tracking_uri}: {error}\n"
            "Check MLFLOW_TRACKING_URI (unset it to use the project's mlflow.db)."
        ) from error


def _get_or_create_experiment(
    tracking_uri: str, experiment_name: str, artifact_root: str | None
) -> str:
    """The experiment's id, creating it (and a new store's tables) under artifact_root."""
    if artifact_root is None:
        import mlflow

        experiment = mlflow.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return mlflow.create_experiment(experiment_name)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # MLflow's client would root new experiments, and a new store's Default experiment, at
    # ./mlruns of the working directory; a queued DVC run works in a temporary copy.
    store = SqlAlchemyStore(tracking_uri, artifact_root)
    experiment = store.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return store.create_experiment(experiment_name)
