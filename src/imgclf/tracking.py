"""Everything MLflow: store resolution, runs, tags, per-epoch metrics and artifacts."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from imgclf.errors import ImgclfError

# DVC runs queued and --temp experiments in <project>/.dvc/tmp/exps/<workspace>/; runs from
# there must still land in the user's own store, so that prefix is cut from DVC_ROOT.
_TEMP_WORKSPACE_PARTS = (".dvc", "tmp", "exps")


class TrackingError(ImgclfError, RuntimeError):
    """The MLflow store cannot be reached or used."""


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
    import fcntl

    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_server(tracking_uri: str, timeout_seconds: float = 10.0) -> None:
    """Fail in seconds on a server that is down: MLflow's own retries take minutes."""
    import urllib.error
    import urllib.request

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

    if tracking_uri.startswith(("http://", "https://")):
        _check_server(tracking_uri)
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


def hash_files(paths: Sequence[Path]) -> str:
    """One MD5 over the bytes of the given files, in order: the data a run trained on."""
    digest = hashlib.md5()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _git_commit(project_root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def describe_device() -> dict[str, str]:
    """The device training runs on and its name, for run tags."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return {"device": "GPU", "accelerator": device.device_kind}
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return {"device": "GPU", "accelerator": details.get("device_name", gpus[0].name)}
    return {"device": "CPU", "accelerator": _cpu_name()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_tags(environ: Mapping[str, str], project_root: Path, data_hash: str) -> dict[str, str]:
    """Tags every training run carries: code, DVC experiment, data, device and versions."""
    from imgclf import __version__

    tags = {
        "data.hash": data_hash,
        "keras.version": keras.__version__,
        "keras.backend": keras.backend.backend(),
        "imgclf.version": __version__,
        **describe_device(),
    }
    for package in ("tensorflow", "jax"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"{package}.version"] = importlib.metadata.version(package)
    commit = _git_commit(project_root)
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    for variable, tag in (
        ("DVC_EXP_NAME", "dvc.exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev"),
    ):
        if environ.get(variable):
            tags[tag] = environ[variable]
    return tags


@contextlib.contextmanager
def start_run(
    experiment_id: str,
    run_name: str | None,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    log_system_metrics: bool = False,
) -> Iterator[Any]:
    """An MLflow run that ends FINISHED on success, KILLED on Ctrl+C and FAILED otherwise.

    log_system_metrics samples CPU, memory and (with nvidia-ml-py) GPU use into the run.
    """
    import mlflow

    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags=dict(tags),
        log_system_metrics=log_system_metrics,
    )
    try:
        mlflow.log_params({key: "" if value is None else value for key, value in params.items()})
        yield run
    except KeyboardInterrupt:
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


@contextlib.contextmanager
def resume_run(run_id: str) -> Iterator[Any]:
    """Reopen a finished run (evaluate logs into the training run) and close it again."""
    import mlflow

    client = mlflow.MlflowClient()
    previous_status = client.get_run(run_id).info.status
    run = mlflow.start_run(run_id=run_id)
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status=previous_status if previous_status != "RUNNING" else "FINISHED")


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics (loss, accuracy, val_*, learning_rate) to the active run."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import mlflow

        metrics = {key: float(value) for key, value in (logs or {}).items()}
        mlflow.log_metrics(metrics, step=epoch + 1)


def log_keras_model(model: keras.Model, example_images: Any) -> None:
    """Log the model with a signature (raw uint8 pixels in, class probabilities out)."""
    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    signature = infer_signature(example_images, model.predict(example_images, verbose=0))
    # Explicit requirements skip MLflow's slow requirement inference (a model reload).
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=requirements)


def log_artifacts(paths: Sequence[Path], artifact_path: str | None = None) -> None:
    """Log files (and folders) that exist; a missing optional report is skipped."""
    import mlflow

    for path in paths:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
