"""The life of an MLflow run: start or reopen it, end it with the right status, retry calls."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from imgclf.errors import first_line
from imgclf.tracking.store import TrackingError

Result = TypeVar("Result")


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
                    f"(retried for {retry_seconds:.0f} s): {first_line(error)}"
                ) from error
            print(
                f"warning: could not {what} ({first_line(error)}); retrying in "
                f"{wait_seconds:.0f} s",
                file=sys.stderr,
            )
            time.sleep(wait_seconds)
            wait_seconds = min(wait_seconds * 2, 30.0)


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


def run_model_id(client: Any, run_id: str) -> str | None:
    """The MLflow 3 LoggedModel id of the run's last logged model; None when it logged none."""
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        return None
    return max(outputs, key=lambda output: output.step).model_id
