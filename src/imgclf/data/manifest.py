"""One row per image: the table the Great Expectations suite validates."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

MANIFEST_COLUMNS = (
    "split",
    "index",
    "label",
    "class_name",
    "content_hash",
    "height",
    "width",
    "channels",
    "dtype",
    "pixel_min",
    "pixel_max",
    "pixel_mean",
    "hash_split_count",
)
HASH_DIGEST_BYTES = 16


def build_manifest(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str]
) -> pd.DataFrame:
    """Describe every image of every split, with a content hash for leakage checks."""
    frames = [
        describe_split(name, images, labels, class_names)
        for name, (images, labels) in splits.items()
    ]
    manifest = (
        pd.concat(frames, ignore_index=True)
        if frames
        else describe_split(
            "", np.zeros((0, 1, 1, 1), np.uint8), np.zeros(0, np.int64), class_names
        )
    )
    manifest["hash_split_count"] = count_splits_per_hash(manifest)
    return manifest.loc[:, list(MANIFEST_COLUMNS)]


def describe_split(
    split: str, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> pd.DataFrame:
    """Return the manifest rows of one split (without the cross-split columns)."""
    images = np.ascontiguousarray(images)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"split {split!r}: {len(images)} images but {len(labels)} labels")
    height, width, channels = image_dims(images)
    pixel_min, pixel_max, pixel_mean = compute_pixel_stats(images)
    count = len(images)
    return pd.DataFrame(
        {
            "split": pd.Series([split] * count, dtype="str"),
            "index": np.arange(count, dtype=np.int64),
            "label": labels,
            "class_name": pd.Series(name_labels(labels, class_names), dtype="str"),
            "content_hash": pd.Series(hash_images(images), dtype="str"),
            "height": np.full(count, height, dtype=np.int64),
            "width": np.full(count, width, dtype=np.int64),
            "channels": np.full(count, channels, dtype=np.int64),
            "dtype": pd.Series([str(images.dtype)] * count, dtype="str"),
            "pixel_min": pixel_min,
            "pixel_max": pixel_max,
            "pixel_mean": pixel_mean,
        }
    )


def image_dims(images: np.ndarray) -> tuple[int, int, int]:
    """Return (height, width, channels); a 3-d stack counts as single-channel."""
    shape = images.shape[1:]
    channels = shape[2] if len(shape) > 2 else 1
    return int(shape[0]), int(shape[1]), int(channels)


def compute_pixel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per-image min, max and mean, vectorised over the whole array."""
    flat = images.reshape(len(images), -1)
    stat_dtype = np.int64 if np.issubdtype(images.dtype, np.integer) else np.float64
    if flat.shape[1] == 0:
        empty = np.full(len(images), np.nan)
        return empty, empty, empty
    pixel_min = flat.min(axis=1).astype(stat_dtype)
    pixel_max = flat.max(axis=1).astype(stat_dtype)
    pixel_mean = flat.mean(axis=1, dtype=np.float64)
    return pixel_min, pixel_max, pixel_mean


def hash_images(images: np.ndarray) -> list[str]:
    """Return a blake2b hex digest of each image's shape, dtype and bytes."""
    # Shape and dtype go into the hash so equal bytes of different geometry never collide.
    prefix = hashlib.blake2b(digest_size=HASH_DIGEST_BYTES)
    prefix.update(f"{images.shape[1:]}|{images.dtype.str}|".encode())
    digests = []
    for image in images:
        hasher = prefix.copy()
        hasher.update(image)
        digests.append(hasher.hexdigest())
    return digests


def name_labels(labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Map labels to class names; out-of-range labels become '<unknown:LABEL>'."""
    names = np.asarray(list(class_names), dtype=object)
    known = (labels >= 0) & (labels < len(names))
    result = np.empty(len(labels), dtype=object)
    result[known] = names[labels[known]]
    # Kept, not raised: the validation suite is what reports bad labels.
    result[~known] = [f"<unknown:{label}>" for label in labels[~known]]
    return result


def count_splits_per_hash(manifest: pd.DataFrame) -> pd.Series:
    """Return, per row, the number of distinct splits holding its content hash."""
    counts = manifest.groupby("content_hash", sort=False)["split"].transform("nunique")
    return counts.astype(np.int64)


def write_manifest(manifest: pd.DataFrame, path: Path | str) -> Path:
    """Write the manifest as parquet and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(path, engine="pyarrow", index=False)
    return path


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Read a manifest written by write_manifest."""
    return pd.read_parquet(Path(path), engine="pyarrow")
