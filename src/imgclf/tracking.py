"""Everything MLflow: store resolution, runs, tags, per-epoch metrics and artifacts."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from imgclf.errors import ImgclfError

# DVC runs queued and --temp experiments in <project>/.dvc/tmp/exps/<workspace>/; runs from
# there must still land in the user's own store, so that prefix is cut from DVC_ROOT.
_TEMP_WORKSPACE_PARTS = (".dvc", "tmp", "exps")


class TrackingError(ImgclfError, RuntimeError):
    """The MLflow store cannot be reached or used."""


Result = TypeVar("Result")


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


def training_tags(
    environ: Mapping[str, str],
    project_root: Path,
    data_hash: str,
    source_info: Mapping[str, Any],
    accelerator: Any,
) -> dict[str, str]:
    """run_tags plus what only training knows: data source and checksum, precision, XLA.

    accelerator is the training.AcceleratorSetup in force.
    """
    tags = run_tags(environ, project_root, data_hash)
    # augment, upstream, refuses data that failed validate: a training run's data passed.
    tags["data.validation"] = "passed"
    tags["data.source"] = str(source_info["source"])
    if source_info.get("checksum"):
        tags["data.checksum"] = str(source_info["checksum"])
    tags["precision.policy"] = accelerator.precision_policy
    tags["jit_compile"] = str(accelerator.jit_compile)
    return tags


@contextlib.contextmanager
def start_run(
    experiment_id: str,
    run_name: str | None,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    log_system_metrics: bool = False,
    reopen_run_id: str | None = None,
) -> Iterator[Any]:
    """An MLflow run that ends FINISHED on success, KILLED on Ctrl+C and FAILED otherwise.

    reopen_run_id continues a run that an interrupted training left (its params are logged
    already); a run that no longer exists gives way to a new one. log_system_metrics samples
    CPU, memory and (with nvidia-ml-py) GPU use into the run.
    """
    import mlflow

    if reopen_run_id is not None and _run_is_live(reopen_run_id):
        run = mlflow.start_run(
            run_id=reopen_run_id, tags=dict(tags), log_system_metrics=log_system_metrics
        )
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name,
            tags=dict(tags),
            log_system_metrics=log_system_metrics,
        )
        reopen_run_id = None
    try:
        if reopen_run_id is None:
            mlflow.log_params(
                {key: "" if value is None else value for key, value in params.items()}
            )
        yield run
    except KeyboardInterrupt:
        _end_run("KILLED")
        raise
    except BaseException:
        _end_run("FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def _run_is_live(run_id: str) -> bool:
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException:
        return False


def _end_run(status: str) -> None:
    """End the active run with `status`; a store that is gone must not hide the first error."""
    import mlflow

    try:
        mlflow.end_run(status=status)
    except Exception as error:  # the store is unreachable: the run stays RUNNING there
        print(f"warning: could not mark the MLflow run {status}: {error}", file=sys.stderr)


def retry(action: Callable[[], Result], retry_seconds: float, what: str) -> Result:
    """Run `action` until it succeeds, waiting 1, 2, 4 ... s between tries, for retry_seconds.

    Raises TrackingError naming the store when the time is up.
    """
    import mlflow

    deadline = time.monotonic() + retry_seconds
    wait_seconds = 1.0
    while True:
        try:
            return action()
        except (mlflow.exceptions.MlflowException, OSError) as error:
            if time.monotonic() + wait_seconds > deadline:
                raise TrackingError(
                    f"could not {what} in the MLflow store at {mlflow.get_tracking_uri()} "
                    f"(retried for {retry_seconds:.0f} s): {_first_line(error)}"
                ) from error
            print(
                f"warning: could not {what} ({_first_line(error)}); retrying in "
                f"{wait_seconds:.0f} s",
                file=sys.stderr,
            )
            time.sleep(wait_seconds)
            wait_seconds = min(wait_seconds * 2, 30.0)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


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


PendingEpoch = tuple[int, dict[str, float], int]  # (step, metrics, timestamp in ms)


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics (loss, accuracy, val_*, learning_rate) to the run.

    Sending happens on a background thread, so a store that hangs or is down delays the
    logging, never the training: unsent epochs wait, and each epoch's end tries them again.
    `flush` retries what is left once fit is done. Each epoch keeps the timestamp of its end,
    so a retry of metrics the store did receive adds no duplicates.
    """

    def __init__(self, run_id: str | None = None, pending: Sequence[PendingEpoch] = ()) -> None:
        super().__init__()
        self.run_id = run_id
        self._pending: list[PendingEpoch] = list(pending)
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None

    @property
    def pending_steps(self) -> list[int]:
        with self._lock:
            return [step for step, _, _ in self._pending]

    def on_train_begin(self, logs: dict | None = None) -> None:
        import mlflow

        # MLflow's active run is per thread: the sender needs the id itself.
        if self.run_id is None:
            self.run_id = mlflow.active_run().info.run_id
        self._send_in_background()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items()}
        with self._lock:
            self._pending.append((epoch + 1, metrics, int(time.time() * 1000)))
        self._send_in_background()

    def on_train_end(self, logs: dict | None = None) -> None:
        # One last try before fit returns, so no send is left running behind the caller.
        if self._sender is not None:
            self._sender.join()
        self._try_send()

    def flush(self, retry_seconds: float) -> None:
        """Send every pending epoch, retrying for up to retry_seconds (TrackingError after)."""
        if self._sender is not None:
            self._sender.join()
        retry(self._send, retry_seconds, f"log the metrics of epochs {self.pending_steps}")

    def _send_in_background(self) -> None:
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(target=self._try_send, daemon=True)
            self._sender.start()

    def _try_send(self) -> None:
        try:
            self._send()
        except Exception as error:  # kept for the next epoch or flush
            print(
                f"warning: MLflow store unreachable ({_first_line(error)}); epochs "
                f"{self.pending_steps} kept, training goes on and logging is retried",
                file=sys.stderr,
            )

    def _send(self) -> None:
        import mlflow

        while True:
            with self._lock:
                if not self._pending:
                    return
                step, metrics, timestamp = self._pending[0]
            mlflow.log_metrics(metrics, step=step, run_id=self.run_id, timestamp=timestamp)
            with self._lock:
                self._pending.pop(0)


def unlogged_epochs(run_id: str, history: Sequence[Mapping[str, float]]) -> list[PendingEpoch]:
    """History rows (from a resumed training) whose metrics the run does not hold yet."""
    import mlflow

    try:
        logged = {point.step for point in mlflow.MlflowClient().get_metric_history(run_id, "loss")}
    except mlflow.exceptions.MlflowException:
        logged = set()  # resend them all: a repeated point beats a lost one
    now = int(time.time() * 1000)
    return [
        (int(row["epoch"]), {k: float(v) for k, v in row.items() if k != "epoch"}, now)
        for row in history
        if int(row["epoch"]) not in logged
    ]


# The models-from-code file MLflow copies into each logged model (see its docstring).
PYFUNC_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
PYFUNC_KERAS_ARTIFACT = "keras_model"  # pyfunc_model.KERAS_ARTIFACT: that file imports no imgclf


def log_model(
    model: keras.Model, model_path: Path, example_images: Any, class_names: Sequence[str]
) -> Any:
    """Log the saved model as a pyfunc that answers class names; return MLflow's ModelInfo.

    The pyfunc wraps the very `.keras` file at model_path (an artifact, loaded in safe mode)
    with the ordered class names (model config and metadata), a signature (raw uint8 pixels in;
    label, confidence and per-class probabilities out) and the example images as input example.
    """
    import mlflow
    import pandas as pd
    import tensorflow as tf
    from mlflow.models import infer_signature

    names = [str(name) for name in class_names]
    probabilities = np.asarray(model.predict(example_images, verbose=0), dtype=np.float64)
    if probabilities.shape[-1] != len(names):
        raise ValueError(
            f"the model predicts {probabilities.shape[-1]} classes but {len(names)} class names "
            "were given"
        )
    best = probabilities.argmax(axis=1)
    example_output = pd.DataFrame(
        {
            "label": [names[index] for index in best],
            "confidence": probabilities[np.arange(len(best)), best],
            "probabilities": [dict(zip(names, row.tolist(), strict=True)) for row in probabilities],
        }
    )
    # Explicit requirements skip MLflow's slow requirement inference (a model reload).
    requirements = [
        f"mlflow=={mlflow.__version__}",
        f"tensorflow=={tf.__version__}",
        f"keras=={keras.__version__}",
        f"pandas=={pd.__version__}",
    ]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_MODEL_CODE),
        artifacts={PYFUNC_KERAS_ARTIFACT: str(model_path)},
        model_config={"class_names": names},
        metadata={"class_names": names},
        signature=infer_signature(example_images, example_output),
        input_example=example_images,
        pip_requirements=requirements,
    )


def log_datasets(splits: Mapping[str, tuple[Path, Any, Any]]) -> None:
    """Record each split (context -> (file, images, labels)) as a dataset input of the run."""
    import mlflow

    for context, (path, images, labels) in splits.items():
        dataset = mlflow.data.from_numpy(
            images, targets=labels, source=Path(path).resolve().as_uri(), name=Path(path).name
        )
        mlflow.log_input(dataset, context=context)


def run_model_id(client: Any, run_id: str) -> str | None:
    """The MLflow 3 LoggedModel id of the run's last logged model; None when it logged none."""
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        return None
    return max(outputs, key=lambda output: output.step).model_id


def finish_logging(
    logger: EpochLogger, log_outputs: Callable[[], None], retry_seconds: float, model_path: Path
) -> None:
    """Send the pending epochs, then the run's files and model, retrying each for a while.

    Raises TrackingError (the run left unfinished) when the store stays out of reach.
    """
    try:
        logger.flush(retry_seconds)
        retry(log_outputs, retry_seconds, "log the run's files and model")
    except TrackingError as error:
        raise TrackingError(
            f"{error}\nThe model is saved at {model_path} and the run is left unfinished; run "
            "the stage again once the store is back: it resumes from the saved state and logs "
            "what is missing."
        ) from error


def log_training_outputs(
    metrics: Mapping[str, float],
    files: Sequence[Path],
    validation_report: Path,
    datasets: Mapping[str, tuple[Path, Any, Any]],
    model: tuple[keras.Model, Path, Sequence[str]] | None,
    example_images: Any,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Log the end-of-training metrics, files, validation report, data sets and the model.

    model is (the saved model, its .keras path, the class names), or None to log no model.
    tags are what only the end of training knows (such as whether a tuning trial was pruned).
    """
    import mlflow

    mlflow.set_tags(dict(tags or {}))
    mlflow.log_metrics(dict(metrics))
    log_artifacts(files)
    log_artifacts([validation_report], artifact_path="validation")
    log_datasets(datasets)
    if model is not None:
        log_model(model[0], model[1], example_images, model[2])


def log_artifacts(paths: Sequence[Path], artifact_path: str | None = None) -> None:
    """Log files (and folders) that exist; a missing optional report is skipped."""
    import mlflow

    for path in paths:
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def download_model(
    model_uri: str, tracking_uri: str, destination: Path
) -> tuple[Path, list[str] | None]:
    """Fetch a logged or registered model (`models:/name@alias`, `runs:/id/model`) into
    destination; return its `.keras` file and the class names its metadata carries (or None).
    """
    import mlflow

    if tracking_uri.startswith(("http://", "https://")):
        _check_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(destination), tracking_uri=tracking_uri
            )
        )
    except (mlflow.exceptions.MlflowException, OSError) as error:
        raise TrackingError(
            f"cannot fetch {model_uri} from the MLflow store at {tracking_uri}: "
            f"{_first_line(error)}"
        ) from error
    files = sorted(local.rglob("*.keras"))
    if len(files) != 1:
        raise TrackingError(f"{model_uri} holds {len(files)} .keras files, expected one")
    description = local / "MLmodel"
    metadata = (
        mlflow.models.Model.load(str(description)).metadata if description.is_file() else None
    )
    names = (metadata or {}).get("class_names")
    return files[0], None if names is None else [str(name) for name in names]
