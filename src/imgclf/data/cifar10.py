"""Read the official CIFAR-10 python tarball without extracting it or trusting its pickles."""

from __future__ import annotations

import codecs
import functools
import importlib
import io
import pickle
import posixpath
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.errors import ImgclfError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_FOLDER = "cifar-10-batches-py"
META_MEMBER = "batches.meta"
TEST_MEMBER = "test_batch"
TRAIN_MEMBER_PATTERN = re.compile(r"data_batch_(\d+)")
NUM_CLASSES = 10
IMAGE_SIDE = 32
VALUES_PER_IMAGE = 3 * IMAGE_SIDE * IMAGE_SIDE
REFETCH_HINT = (
    "Delete the archive and run the download stage again, and check that data.url and data.md5 "
    "name the official cifar-10-python.tar.gz."
)


class DatasetFormatError(ImgclfError, ValueError):
    """A data set file does not have the layout or content it should."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and refuses every other global."""

    def __init__(self, file: io.BufferedIOBase, source_name: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source_name = source_name

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global; refuse anything else before it can run."""
        allowed = _allowed_globals()
        if (module, name) not in allowed:
            raise DatasetFormatError(
                f"{self.source_name}: refused to load the global {module}.{name}; CIFAR-10 "
                f"batches need only numpy arrays, so this file is not genuine. {REFETCH_HINT}"
            )
        return allowed[(module, name)]


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Map the (module, name) pairs a numpy-array pickle may use to their objects."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # older numpy has only numpy.core
        multiarray = importlib.import_module("numpy.core.multiarray")
    return {
        # The official files were written by numpy 1.x (numpy.core); numpy 2 writes numpy._core.
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }


def read_cifar10_archive(
    archive: Path,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Read train and test splits and class names from the CIFAR-10 python tarball.

    Returns:
        ({"train": (images, labels), "test": (images, labels)}, class_names), with images
        uint8 [N, 32, 32, 3] and labels int64 [N].
    """
    members = _load_members(archive)
    label = f"{archive}:{ARCHIVE_FOLDER}/"
    class_names = _parse_class_names(members.pop(META_MEMBER), label + META_MEMBER)
    test = _parse_batch(members.pop(TEST_MEMBER), label + TEST_MEMBER)
    train_names = sorted(members, key=lambda n: int(TRAIN_MEMBER_PATTERN.fullmatch(n).group(1)))
    if not train_names:
        raise DatasetFormatError(
            f"{archive} holds no {ARCHIVE_FOLDER}/data_batch_* files. {REFETCH_HINT}"
        )
    batches = [_parse_batch(members[name], label + name) for name in train_names]
    train = (
        np.concatenate([images for images, _ in batches]),
        np.concatenate([labels for _, labels in batches]),
    )
    return {"train": train, "test": test}, class_names


def _load_members(archive: Path) -> dict[str, Any]:
    """Unpickle the meta, test and training batch members in one pass over the tarball."""
    wanted: dict[str, Any] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = _member_name(member)
                if name is None or not member.isfile():
                    continue
                wanted[name] = _unpickle(tar.extractfile(member), f"{archive}:{member.name}")
    except (OSError, EOFError, tarfile.TarError) as error:
        raise DatasetFormatError(
            f"{archive} is not a readable tar archive ({error}). {REFETCH_HINT}"
        ) from error
    for required in (META_MEMBER, TEST_MEMBER):
        if required not in wanted:
            raise DatasetFormatError(
                f"{archive} has no {ARCHIVE_FOLDER}/{required}. {REFETCH_HINT}"
            )
    return wanted


def _member_name(member: tarfile.TarInfo) -> str | None:
    """Return the batch file name if the member is one this reader needs, else None."""
    folder, name = posixpath.split(posixpath.normpath(member.name))
    if folder != ARCHIVE_FOLDER:
        return None
    if name in (META_MEMBER, TEST_MEMBER) or TRAIN_MEMBER_PATTERN.fullmatch(name):
        return name
    return None


def _unpickle(file: io.BufferedIOBase | None, source_name: str) -> Any:
    """Unpickle one member with the restricted unpickler."""
    if file is None:
        raise DatasetFormatError(f"{source_name} is not a regular file. {REFETCH_HINT}")
    with file:
        try:
            return RestrictedUnpickler(file, source_name).load()
        except DatasetFormatError:
            raise
        except Exception as error:  # a damaged pickle can fail in many ways
            raise DatasetFormatError(
                f"{source_name} is not a readable pickle ({type(error).__name__}: {error}). "
                f"{REFETCH_HINT}"
            ) from error


def _parse_class_names(meta: Any, source_name: str) -> list[str]:
    """Return the ten class names from batches.meta."""
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DatasetFormatError(
            f"{source_name} should hold {NUM_CLASSES} label_names, found "
            f"{names if names is None else len(names)}. {REFETCH_HINT}"
        )
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


def _parse_batch(batch: Any, source_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Check one batch dict and return its images as HWC uint8 and its labels as int64."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetFormatError(f"{source_name} lacks b'data' or b'labels'. {REFETCH_HINT}")
    data = batch[b"data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[0] == 0
        or data.shape[1] != VALUES_PER_IMAGE
    ):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise DatasetFormatError(
            f"{source_name}: data should be uint8 [n, {VALUES_PER_IMAGE}], found {found}. "
            f"{REFETCH_HINT}"
        )
    labels = _parse_labels(batch[b"labels"], len(data), source_name)
    # Each row is channel-planar: 1024 red, then 1024 green, then 1024 blue values.
    images = data.reshape(-1, 3, IMAGE_SIDE, IMAGE_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _parse_labels(raw_labels: Any, count: int, source_name: str) -> np.ndarray:
    """Return labels as int64, checking there is one per image and each is a class index."""
    labels = np.asarray(raw_labels)
    if labels.shape != (count,) or labels.dtype.kind not in "iu":
        raise DatasetFormatError(
            f"{source_name}: labels should be {count} integers, found {labels.dtype} "
            f"{labels.shape}. {REFETCH_HINT}"
        )
    bad = labels[(labels < 0) | (labels >= NUM_CLASSES)]
    if bad.size:
        raise DatasetFormatError(
            f"{source_name}: label {bad[0]} is outside 0..{NUM_CLASSES - 1}. {REFETCH_HINT}"
        )
    return labels.astype(np.int64)
