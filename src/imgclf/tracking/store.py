"""Where the MLflow store is, and `open_store`: the one way every command opens it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError

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
        tracking_uri, experiment_name, default_artifact_location(environ, project_root)
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
    """MLFLOW_TRACKING_URI when set, else the project's SQLite store under mlruns/."""
    explicit = environ.get("MLFLOW_TRACKING_URI")
    if explicit:
        return explicit
    return f"sqlite:///{project_root / 'mlruns' / 'mlflow.db'}"


def default_artifact_location(environ: Mapping[str, str], project_root: Path) -> str | None:
    """Where a new experiment keeps artifacts: mlruns/artifacts unless a server decides."""
    if environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (project_root / "mlruns" / "artifacts").as_uri()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive file lock, so parallel queue workers create the store only once."""
    import filelock

    # filelock, not fcntl: the same lock on Windows; it waits as long as the holder needs.
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
            "Start it, fix MLFLOW_TRACKING_URI, or unset it to use the project's mlruns/ store."
        ) from error


def connect(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> str:
    """Point MLflow at the store, fail fast if it is unusable, and return the experiment id."""
    import mlflow

    check_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    guard: contextlib.AbstractContextManager = contextlib.nullcontext()
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        # The first connection creates the tables; two workers doing that at once collide.
        guard = _exclusive(database.with_name(database.name + ".lock"))
    try:
        with guard:
            experiment = mlflow.get_experiment_by_name(experiment_name)
            if experiment is not None:
                return experiment.experiment_id
            return mlflow.create_experiment(experiment_name, artifact_location=artifact_location)
    except Exception as error:  # MLflow raises many types for an unreachable store
        raise TrackingError(
            f"cannot use the MLflow store at {tracking_uri}: {error}\n"
            "Check MLFLOW_TRACKING_URI (unset it to use the project's mlruns/ store)."
        ) from error
