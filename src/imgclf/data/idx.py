"""Read IDX files (the MNIST and Fashion-MNIST format) without trusting their headers."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from imgclf.data.cifar10 import DatasetFormatError

# The magic number is 0x0000 (two zero bytes), the element type (0x08: unsigned byte) and the
# number of dimensions; every dimension follows as a big-endian uint32.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
GZIP_SIGNATURE = b"\x1f\x8b"
READ_CHUNK_BYTES = 1024 * 1024

# S3 website endpoints serve plain http only; the md5 check below is what makes it safe.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_SIDE = 28


@dataclass(frozen=True)
class IdxFile:
    """One file of a published IDX data set and the checksums that pin it down."""

    name: str
    gzip_md5: str  # of the .gz as published (the data set's README lists it)
    content_md5: str  # of the decompressed IDX bytes: survives re-compression and new gzip headers


# Debian's dataset-fashion-mnist ships the official deflate streams under a normalised gzip
# header (no stored name, the package's build time), so only content_md5 matches its copies;
# putting the original header back gives the official .gz md5 (tests/e2e/test_fashion_mnist.py).
FASHION_MNIST_FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte.gz",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte.gz",
        "25c81989df183df01b3e8a0aad5dffbe",
        "9018921c3c673c538a1fc5bad174d6f9",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte.gz",
        "bef4ecab320f06d8554ea6380940ec79",
        "8181f5470baa50b63fa0f6fddb340f0a",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        "bb300cfdad3c16e7a12a480ee83cd310",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
}

# What runs record as the data's checksum: the content md5s, the same for every faithful copy.
FASHION_MNIST_CHECKSUM = ",".join(
    f"{file.name.removesuffix('.gz')}={file.content_md5}" for file in FASHION_MNIST_FILES.values()
)


class IdxFormatError(DatasetFormatError):
    """An IDX file is not one: wrong magic number, dimensions or length."""


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX image file (gzip or raw) as uint8 [N, rows, columns, 1]."""
    return _read_images(path)[0]


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an IDX label file (gzip or raw) as int64 [N]."""
    return _read_labels(path)[0]


def read_fashion_mnist(
    folder: Path, *, check_content: bool = True
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Read the four Fashion-MNIST files from `folder`.

    Each file is looked up under its published name and, failing that, without `.gz` (the
    decompressed file). With check_content, each file's IDX bytes must have the official md5.

    Returns:
        ({"train": (images, labels), "test": (images, labels)}, class names), with images
        uint8 [N, 28, 28, 1] and labels int64 [N] in 0..9.
    """
    splits = {}
    for split in ("train", "test"):
        images_key, labels_key = f"{split}_images", f"{split}_labels"
        images_file = find_idx_file(folder, FASHION_MNIST_FILES[images_key].name)
        labels_file = find_idx_file(folder, FASHION_MNIST_FILES[labels_key].name)
        images, images_md5 = _read_images(images_file)
        labels, labels_md5 = _read_labels(labels_file)
        if check_content:
            _check_official(images_file, images_key, images_md5)
            _check_official(labels_file, labels_key, labels_md5)
        _check_pairing(images, labels, images_file, labels_file)
        splits[split] = (images, labels)
    return splits, list(FASHION_MNIST_CLASSES)


def find_idx_file(folder: Path, name: str) -> Path:
    """Return folder/name, or the decompressed folder/name-without-.gz when only that exists."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    raise IdxFormatError(
        f"{folder} has no {name} (nor {name.removesuffix('.gz')}); the Fashion-MNIST folder "
        f"must hold {', '.join(file.name for file in FASHION_MNIST_FILES.values())}"
    )


def _check_official(path: Path, key: str, content_md5: str) -> None:
    expected = FASHION_MNIST_FILES[key].content_md5
    if content_md5 != expected:
        raise IdxFormatError(
            f"{path} is not the official {FASHION_MNIST_FILES[key].name}: its IDX bytes have "
            f"md5 {content_md5}, expected {expected}. Replace it with the official file, or "
            "point data.url at a folder that holds them."
        )


def _read_images(path: Path) -> tuple[np.ndarray, str]:
    (count, rows, columns), pixels, content_md5 = _read_idx(path, IMAGES_MAGIC, "images")
    return pixels.reshape(count, rows, columns, 1), content_md5


def _read_labels(path: Path) -> tuple[np.ndarray, str]:
    _, labels, content_md5 = _read_idx(path, LABELS_MAGIC, "labels")
    return labels.astype(np.int64), content_md5


def _read_idx(path: Path, magic: int, kind: str) -> tuple[tuple[int, ...], np.ndarray, str]:
    """Read and check one IDX file: (dimensions, flat uint8 values, md5 of its IDX bytes)."""
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    with _open_idx(path) as stream:
        try:
            header = _read_up_to(stream, header_size)
            _check_magic(path, header, magic, kind)
            if len(header) < header_size:
                raise IdxFormatError(
                    f"{path} is truncated: its header has {len(header)} of {header_size} bytes"
                )
            dims = tuple(int.from_bytes(header[i : i + 4], "big") for i in range(4, header_size, 4))
            if 0 in dims:
                raise IdxFormatError(
                    f"{path}: dimensions {dims} include a zero; it holds no {kind}"
                )
            expected = math.prod(dims)  # Python ints: a lying header cannot overflow
            # One byte beyond what the header promises tells a longer file from an exact one.
            body = _read_up_to(stream, expected + 1)
        except (OSError, EOFError, zlib.error) as error:
            raise IdxFormatError(f"{path} is not a readable gzip file ({error})") from error
    if len(body) != expected:
        problem = f"is truncated: {len(body)} data bytes" if len(body) < expected else "is too long"
        raise IdxFormatError(
            f"{path} {problem}, but its header dimensions {dims} need exactly {expected}"
        )
    digest = hashlib.md5(header)
    digest.update(body)
    return dims, np.frombuffer(body, dtype=np.uint8), digest.hexdigest()


def _check_magic(path: Path, header: bytes, magic: int, kind: str) -> None:
    found = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    if found != magic:
        shown = "missing (file too short)" if found is None else f"0x{found:08x}"
        raise IdxFormatError(
            f"{path}: magic number {shown}, expected 0x{magic:08x} (IDX {kind}: unsigned "
            f"bytes, {magic & 0xFF} dimension(s)); this is not an IDX {kind} file"
        )


def _open_idx(path: Path) -> BinaryIO:
    """Open an IDX file for reading, decompressing it when it starts with the gzip signature."""
    with path.open("rb") as probe:
        signature = probe.read(2)
    return gzip.open(path, "rb") if signature == GZIP_SIGNATURE else path.open("rb")


def _read_up_to(stream: BinaryIO, size: int) -> bytearray:
    """Read at most `size` bytes in chunks, so a lying header cannot demand a huge buffer."""
    buffer = bytearray()  # writable, so the arrays viewing it are too
    while len(buffer) < size:
        chunk = stream.read(min(size - len(buffer), READ_CHUNK_BYTES))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _check_pairing(
    images: np.ndarray, labels: np.ndarray, images_file: Path, labels_file: Path
) -> None:
    """Raise unless the images are 28x28 and each has one label in 0..9."""
    if images.shape[1:3] != (FASHION_MNIST_SIDE, FASHION_MNIST_SIDE):
        raise IdxFormatError(
            f"{images_file}: images are {images.shape[1]}x{images.shape[2]}, Fashion-MNIST's are "
            f"{FASHION_MNIST_SIDE}x{FASHION_MNIST_SIDE}"
        )
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} "
            "labels; the two files must come from the same split"
        )
    bad = labels[labels >= len(FASHION_MNIST_CLASSES)]
    if bad.size:
        raise IdxFormatError(
            f"{labels_file}: label {bad[0]} is outside 0..{len(FASHION_MNIST_CLASSES) - 1}"
        )
