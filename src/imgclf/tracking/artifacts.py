"""What a run keeps: the model (as a pyfunc), data sets and files; and fetching a model back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from imgclf.errors import first_line
from imgclf.tracking.runs import resume_run, retry, run_model_id
from imgclf.tracking.store import TrackingError, check_server

if TYPE_CHECKING:
    import keras

# The models-from-code file MLflow copies into each logged model (see its docstring).
PYFUNC_MODEL_CODE = Path(__file__).parents[1] / "serving" / "pyfunc_model.py"
# pyfunc_model.KERAS_ARTIFACT and INPUT_NAME: that file imports nothing from imgclf.
PYFUNC_KERAS_ARTIFACT = "keras_model"
PYFUNC_INPUT = "image"


def log_model(
    model: keras.Model, model_path: Path, example_images: Any, class_names: Sequence[str]
) -> Any:
    """Log the saved model as a pyfunc that answers class names; return MLflow's ModelInfo."""
    import mlflow

    arguments = pyfunc_arguments(model, model_path, example_images, class_names)
    return mlflow.pyfunc.log_model(name="model", **arguments)


def pyfunc_arguments(
    model: keras.Model, model_path: Path, example_images: Any, class_names: Sequence[str]
) -> dict[str, Any]:
    """What log_model (and mlflow.pyfunc.save_model) hands MLflow for the serving model.

    The pyfunc wraps the very `.keras` file at model_path (an artifact, loaded in safe mode)
    with the ordered class names (model config and metadata), a signature (one input, "image":
    encoded images or raw pixels; label, confidence and per-class probabilities out) and the
    example images, as base64 PNG files, for input example.
    """
    import keras
    import mlflow
    import pandas as pd
    import PIL
    import tensorflow as tf

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
        f"pillow=={PIL.__version__}",  # pyfunc_model.py decodes PNG and JPEG
    ]
    return {
        "python_model": str(PYFUNC_MODEL_CODE),
        "artifacts": {PYFUNC_KERAS_ARTIFACT: str(model_path)},
        "model_config": {"class_names": names},
        "metadata": {"class_names": names},
        "signature": _serving_signature(example_output),
        "input_example": {PYFUNC_INPUT: np.asarray(_encode_png(example_images), dtype=object)},
        "pip_requirements": requirements,
    }


def _serving_signature(example_output: Any) -> Any:
    """One input, "image", that MLflow passes through as it comes; the outputs of the example.

    A typed spec would make MLflow cast first: under the old uint8 spec, pixels scaled to
    [0, 1] became black images and confident labels. An object tensor of shape (-1,) is the
    one spec MLflow enforces nothing on, so the model sees base64 strings and float pixels
    as sent and refuses, with a 400, what it cannot use.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(object), (-1,), name=PYFUNC_INPUT)])
    return ModelSignature(inputs=inputs, outputs=infer_signature(None, example_output).outputs)


def _encode_png(images: Any) -> list[str]:
    """uint8 [N, H, W, C] images as base64 PNG files: what a client of the served model sends."""
    import base64
    import io

    from PIL import Image

    encoded = []
    for pixels in np.asarray(images, dtype=np.uint8):
        buffer = io.BytesIO()
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, "PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return encoded


def log_datasets(splits: Mapping[str, tuple[Path, Any, Any]]) -> None:
    """Record each split (context -> (file, images, labels)) as a dataset input of the run."""
    import mlflow

    for context, (path, images, labels) in splits.items():
        mlflow.log_input(_dataset(path, images, labels), context=context)


def _dataset(path: Path, images: Any, labels: Any) -> Any:
    """An MLflow dataset of a split, named after its file."""
    import mlflow

    return mlflow.data.from_numpy(
        images, targets=labels, source=Path(path).resolve().as_uri(), name=Path(path).name
    )


def log_evaluation(
    run_id: str,
    test: tuple[Path, Any, Any],
    metrics: Mapping[str, float],
    files: Sequence[Path],
) -> None:
    """Log test metrics and report files into the (finished) training run.

    test is (file, images, labels). The metrics belong to the model scored (the run's MLflow 3
    LoggedModel) and to the test data set; the files go under eval/.
    """
    import mlflow

    with resume_run(run_id):
        model_id = run_model_id(mlflow.MlflowClient(), run_id)
        test_data = _dataset(*test)
        mlflow.log_input(test_data, context="testing")
        mlflow.log_metrics(dict(metrics), model_id=model_id, dataset=test_data)
        log_artifacts(files, artifact_path="eval")


class PendingMetrics(Protocol):
    """What finish_logging needs of the epoch logger (kept free of Keras here)."""

    def flush(self, retry_seconds: float) -> None: ...


def finish_logging(
    logger: PendingMetrics, log_outputs: Callable[[], None], retry_seconds: float, model_path: Path
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

    check_server(tracking_uri)
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
            f"cannot fetch {model_uri} from the MLflow store at {tracking_uri}: {first_line(error)}"
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
