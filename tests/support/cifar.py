"""Write tarballs in the exact layout of the official CIFAR-10 python archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

ARCHIVE_FOLDER = "cifar-10-batches-py"
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def make_tiny_cifar(
    seed: int, n_train: int = 50, n_test: int = 20
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return random ((train_x, train_y), (test_x, test_y)) that use every class."""
    rng = np.random.default_rng(seed)

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = rng.permutation(np.arange(count) % len(CLASS_NAMES)).astype(np.int64)
        return images, labels

    return draw(n_train), draw(n_test)


def write_cifar10_archive(
    path: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str] = CLASS_NAMES,
    batches: int = 5,
    *,
    python2_pickles: bool = True,
) -> str:
    """Write a CIFAR-10-style .tar.gz at `path` and return its md5."""
    members = cifar10_members(train, test, class_names, batches, python2_pickles)
    return write_tar_gz(path, members)


def cifar10_members(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str] = CLASS_NAMES,
    batches: int = 5,
    python2_pickles: bool = True,
) -> dict[str, bytes]:
    """Return {member path: pickled bytes} for the meta, training and test batches."""
    members = {f"{ARCHIVE_FOLDER}/batches.meta": pickle_meta(class_names, len(train[1]), batches)}
    image_parts = np.array_split(train[0], batches)
    label_parts = np.array_split(train[1], batches)
    for number, (images, labels) in enumerate(zip(image_parts, label_parts, strict=True), 1):
        title = f"training batch {number} of {batches}"
        members[f"{ARCHIVE_FOLDER}/data_batch_{number}"] = pickle_batch(
            images, labels, title, python2_pickles
        )
    members[f"{ARCHIVE_FOLDER}/test_batch"] = pickle_batch(
        test[0], test[1], "testing batch 1 of 1", python2_pickles
    )
    return members


def pickle_meta(class_names: Sequence[str], n_train: int, batches: int) -> bytes:
    """Pickle batches.meta as the official archive has it."""
    meta = {
        b"num_cases_per_batch": -(-n_train // batches),
        b"label_names": [name.encode("utf-8") for name in class_names],
        b"num_vis": 3072,
    }
    return dumps_like_python2(meta)


def pickle_batch(
    images: np.ndarray, labels: np.ndarray, title: str, python2_pickles: bool = True
) -> bytes:
    """Pickle one batch: bytes keys, channel-planar uint8 rows, labels as a list of ints."""
    planar = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)
    batch = {
        b"batch_label": title.encode("ascii"),
        b"labels": [int(label) for label in labels],
        b"data": planar,
        b"filenames": [f"image_{index:05d}.png".encode("ascii") for index in range(len(images))],
    }
    return dumps_like_python2(batch) if python2_pickles else pickle.dumps(batch, protocol=2)


def write_tar_gz(path: Path, members: Mapping[str, bytes]) -> str:
    """Write the members (with their folders) into a reproducible .tar.gz; return its md5."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for folder in sorted({name.rsplit("/", 1)[0] for name in members if "/" in name}):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    # mtime=0 keeps the gzip header, and so the md5, the same from run to run.
    compressed = gzip.compress(buffer.getvalue(), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compressed)
    return hashlib.md5(compressed).hexdigest()


def dumps_like_python2(value: object) -> bytes:
    """Pickle as Python 2 with numpy 1.x did: protocol 2, byte strings as BINSTRING opcodes.

    Python 3's own protocol-2 pickles differ (bytes become `_codecs.encode` calls and arrays
    name `numpy._core`), so this writes the opcodes itself to match the official files.
    """
    out = bytearray(b"\x80\x02")
    emit_python2(value, out)
    out += b"."
    return bytes(out)


def emit_python2(value: object, out: bytearray) -> None:
    """Append the protocol-2 opcodes that push `value` onto the unpickler's stack."""
    if value is None:
        out += b"N"
    elif isinstance(value, bool):
        out += b"\x88" if value else b"\x89"
    elif isinstance(value, int):
        if 0 <= value < 256:
            out += b"K" + value.to_bytes(1, "little")
        elif 0 <= value < 65536:
            out += b"M" + value.to_bytes(2, "little")
        else:
            out += b"J" + value.to_bytes(4, "little", signed=True)
    elif isinstance(value, bytes):
        if len(value) < 256:
            out += b"U" + len(value).to_bytes(1, "little") + value
        else:
            out += b"T" + len(value).to_bytes(4, "little") + value
    elif isinstance(value, tuple):
        out += b"("
        for item in value:
            emit_python2(item, out)
        out += b"t"
    elif isinstance(value, list):
        out += b"]("
        for item in value:
            emit_python2(item, out)
        out += b"e"
    elif isinstance(value, dict):
        out += b"}("
        for key, item in value.items():
            emit_python2(key, out)
            emit_python2(item, out)
        out += b"u"
    elif isinstance(value, np.ndarray) and value.dtype == np.uint8:
        emit_uint8_array(value, out)
    else:
        raise TypeError(f"cannot pickle {type(value).__name__} Python-2 style")


def emit_uint8_array(array: np.ndarray, out: bytearray) -> None:
    """Append opcodes that rebuild a uint8 array the way numpy 1.x pickled it."""
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
    emit_python2((0,), out)
    emit_python2(b"b", out)
    out += b"\x87R"  # TUPLE3, REDUCE: _reconstruct(ndarray, (0,), b"b")
    out += b"("
    emit_python2(1, out)
    emit_python2(tuple(array.shape), out)
    out += b"cnumpy\ndtype\n"
    emit_python2((b"u1", 0, 1), out)
    out += b"R"  # dtype(b"u1", 0, 1)
    emit_python2((3, b"|", None, None, None, -1, -1, 0), out)
    out += b"b"  # BUILD: the dtype's state
    emit_python2(False, out)  # C order
    emit_python2(np.ascontiguousarray(array).tobytes(), out)
    out += b"tb"  # the array's state tuple, then BUILD
