"""Classify image files with a trained model: gather inputs, decode, predict, write the table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from imgclf.data.user_files import (
    DECODE_WORKERS,
    IGNORED_FOLDERS,
    FolderFormatError,
    decode_image,
    extract_archive,
    is_archive,
)
from imgclf.errors import ImgclfError

if TYPE_CHECKING:
    import keras

# A model reference that MLflow resolves, not a path on disk.
MLFLOW_SCHEMES = ("models:/", "runs:/")
OUTPUT_FORMATS = ("csv", "json", "jsonl")


class PredictionError(ImgclfError, ValueError):
    """The model or its class names cannot be used for prediction."""


@dataclass(frozen=True)
class ImageInput:
    """One image to classify: the name the output shows, the file to decode, or why not."""

    name: str
    path: Path | None
    error: str | None = None


@dataclass(frozen=True)
class Classifier:
    """A loaded model with its ordered class names and where it came from."""

    model: keras.Model
    class_names: list[str]
    source: str


@dataclass
class Prediction:
    """One output row: the top-k classes and probabilities, or the error that prevented it."""

    name: str
    top: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def collect_inputs(inputs: Sequence[Path], scratch: Path) -> list[ImageInput]:
    """Expand files, folders (recursively, sorted) and archives (extracted into scratch).

    Every visible file becomes an input: one that is no image fails later, by name. Hidden
    files and archiver folders (__MACOSX) are no data; an archive that cannot be extracted
    safely is one failed input.
    """
    collected: list[ImageInput] = []
    for number, source in enumerate(Path(item) for item in inputs):
        if source.is_dir():
            collected += [ImageInput(str(path), path) for path in _walk(source)]
        elif source.is_file() and is_archive(source):
            destination = scratch / f"archive-{number}"
            try:
                extract_archive(source, destination)
            except FolderFormatError as error:
                collected.append(ImageInput(str(source), None, str(error)))
                continue
            collected += [
                ImageInput(str(source / path.relative_to(destination)), path)
                for path in _walk(destination)
            ]
        else:
            collected.append(ImageInput(str(source), source))
    return collected


def _walk(folder: Path) -> list[Path]:
    """The visible files under folder, at any depth, in path order."""
    files = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        hidden = any(part.startswith(".") or part in IGNORED_FOLDERS for part in parts)
        if path.is_file() and not hidden:
            files.append(path)
    return sorted(files)


def load_classifier(
    model_ref: str,
    classes_path: Path,
    download: Callable[[str], tuple[Path, list[str] | None]],
    top_k: int | None = None,
) -> Classifier:
    """Load a `.keras` file, or an MLflow model (`models:/...`, `runs:/...`) via `download`.

    download(uri) returns the MLflow model's `.keras` file and its class names (None for a
    model logged without them); a local file takes its class names from classes_path. A top_k
    above the number of classes fails here, before the model loads.
    """
    from imgclf.data.arrays import read_classes
    from imgclf.model.loading import load_model_file

    if model_ref.startswith(MLFLOW_SCHEMES):
        path, class_names = download(model_ref)
    else:
        path, class_names = Path(model_ref), None
    if class_names is None:
        if not classes_path.is_file():
            raise PredictionError(
                f"{classes_path} not found, and {model_ref} carries no class names: pass "
                "--classes with the model's classes.json"
            )
        class_names = read_classes(classes_path)[0]
    if top_k is not None:
        check_top_k(top_k, class_names, model_ref)
    model = load_model_file(path)
    outputs = model.output_shape[-1]
    if outputs != len(class_names):
        raise PredictionError(
            f"{model_ref} predicts {outputs} classes but {len(class_names)} class names were "
            f"found ({', '.join(class_names[:5])}...)"
        )
    return Classifier(model, list(class_names), model_ref)


def check_top_k(top_k: int, class_names: Sequence[str], source: str) -> None:
    """Raise when top_k asks for more classes than the model has."""
    if top_k > len(class_names):
        shown = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
        raise PredictionError(
            f"--top-k {top_k} asks for more classes than {source} has: {len(class_names)} "
            f"({shown}); pass --top-k {len(class_names)} or less"
        )


def _decode(item: ImageInput, size: tuple[int, int] | None, channels: int):
    if item.error is not None:
        return None, item.error
    try:
        return decode_image(item.path, size, channels), None
    except FolderFormatError as error:
        return None, str(error)


def predict_images(
    classifier: Classifier,
    inputs: Sequence[ImageInput],
    *,
    batch_size: int,
    top_k: int,
    progress: bool = False,
) -> list[Prediction]:
    """Decode and classify every input, batch by batch; a file that fails gets its error."""
    height, width, channels = classifier.model.input_shape[1:4]
    size = (height, width) if height and width else None
    top_k = min(top_k, len(classifier.class_names))
    predictions: list[Prediction] = []
    with (
        ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool,
        tqdm(total=len(inputs), desc="predict", unit="img", disable=not progress) as bar,
    ):
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            decoded = list(pool.map(lambda item: _decode(item, size, channels), batch))
            good = [pixels for pixels, error in decoded if error is None]
            probabilities = iter(classifier.model.predict_on_batch(np.stack(good)) if good else [])
            for item, (_, error) in zip(batch, decoded, strict=True):
                if error is not None:
                    predictions.append(Prediction(item.name, error=error))
                else:
                    row = np.asarray(next(probabilities), dtype=np.float64)
                    predictions.append(Prediction(item.name, top_classes(row, classifier, top_k)))
            bar.update(len(batch))
    return predictions


def top_classes(row: np.ndarray, classifier: Classifier, top_k: int) -> list[tuple[str, float]]:
    """The top_k (class name, probability) pairs; ties rank like argmax (lower index first)."""
    order = np.argsort(-row, kind="stable")[:top_k]
    # Six decimals: float32 softmax carries no more, and the table stays readable.
    return [(classifier.class_names[index], round(float(row[index]), 6)) for index in order]


def choose_format(requested: str | None, out: Path | None) -> str:
    """The output format: the one requested, else the one --out's suffix names, else CSV."""
    if requested is not None:
        return requested
    suffix = out.suffix.lower().lstrip(".") if out is not None else ""
    return suffix if suffix in OUTPUT_FORMATS else "csv"


def format_predictions(predictions: Iterable[Prediction], top_k: int, output_format: str) -> str:
    """CSV (path, class, confidence, top<i>_class/_probability..., error), a JSON list of rows,
    or JSON Lines (one row per line, for streaming tools)."""
    if output_format not in OUTPUT_FORMATS:
        raise PredictionError(f"unknown format {output_format!r}: use one of {OUTPUT_FORMATS}")
    if output_format == "csv":
        return _format_csv(predictions, top_k)
    rows = [_json_row(prediction) for prediction in predictions]
    if output_format == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    return json.dumps(rows, indent=2) + "\n"


def _json_row(prediction: Prediction) -> dict[str, Any]:
    best = prediction.top[0] if prediction.top else (None, None)
    return {
        "path": prediction.name,
        "class": best[0],
        "confidence": best[1],
        "top_k": [{"class": name, "probability": p} for name, p in prediction.top],
        "error": prediction.error,
    }


def _format_csv(predictions: Iterable[Prediction], top_k: int) -> str:
    fields = ["path", "class", "confidence"]
    fields += [
        f"top{rank + 1}_{part}" for rank in range(top_k) for part in ("class", "probability")
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*fields, "error"], lineterminator="\n")
    writer.writeheader()
    for prediction in predictions:
        best = prediction.top[0] if prediction.top else (None, None)
        row: dict[str, Any] = {"path": prediction.name, "class": best[0], "confidence": best[1]}
        for rank in range(top_k):
            name, probability = prediction.top[rank] if rank < len(prediction.top) else (None, None)
            row[f"top{rank + 1}_class"] = name
            row[f"top{rank + 1}_probability"] = probability
        row["error"] = prediction.error
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def summarize(predictions: Sequence[Prediction], seconds: float) -> str:
    """One line: how many images were classified, how many failed, and how fast."""
    failed = [prediction for prediction in predictions if prediction.error is not None]
    classified = len(predictions) - len(failed)
    rate = classified / seconds if seconds > 0 else float("inf")
    images = "image" if classified == 1 else "images"
    line = f"{classified} {images} classified in {seconds:.1f} s ({rate:.0f} images/s)"
    if failed:
        names = ", ".join(prediction.name for prediction in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        line += f"; {len(failed)} unreadable: {names}{more}"
    return line
