"""Array files between stages: split .npz files and classes.json."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import ImgclfError


class ArrayFormatError(ImgclfError, ValueError):
    """A split file does not follow the images/labels contract."""


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Round computed pixel values to the nearest integer in 0-255, as uint8 (the contract)."""
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def save_split(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write one split as uint8 images [N, H, W, C] and int64 labels [N], atomically."""
    check_split(images, labels, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, images=images, labels=labels.astype(np.int64))
    os.replace(temporary, path)


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one split written by save_split, checking the contract."""
    with np.load(path, allow_pickle=False) as archive:
        missing = {"images", "labels"} - set(archive.files)
        if missing:
            raise ArrayFormatError(f"{path}: missing arrays {sorted(missing)}")
        images, labels = archive["images"], archive["labels"]
    check_split(images, labels, str(path))
    return images, labels


def check_split(images: np.ndarray, labels: np.ndarray, name: str) -> None:
    """Raise ArrayFormatError unless images and labels follow the data contract."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ArrayFormatError(
            f"{name}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ArrayFormatError(
            f"{name}: labels must be [N] with N={len(images)}, got shape {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ArrayFormatError(f"{name}: labels must be integers, got {labels.dtype}")


def write_classes(path: Path, class_names: list[str], image_shape: tuple[int, ...]) -> None:
    """Write the ordered class names and the image shape the model will take."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"classes": list(class_names), "image_shape": [int(n) for n in image_shape]}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_classes(path: Path) -> tuple[list[str], tuple[int, int, int]]:
    """Read classes.json: (class names, image shape)."""
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return list(payload["classes"]), tuple(payload["image_shape"])  # type: ignore[return-value]


def read_json(path: Path) -> Any:
    """Read a JSON report another stage wrote (run info, metrics, validation result)."""
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, payload: Any) -> None:
    """Write a JSON report (metrics, run info), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows of one shape as CSV with a header (the layout DVC plots read), atomically.

    Readers during a run (`dvc plots show`, the VS Code extension) see the old rows or the new
    ones, never a half-written file: the rows go to a temporary sibling renamed over `path`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
