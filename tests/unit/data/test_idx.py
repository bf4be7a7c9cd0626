"""Tests for the IDX reader and the Fashion-MNIST folder reader, on IDX files written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from imgclf.data.idx import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    IdxFormatError,
    read_fashion_mnist,
    read_idx_images,
    read_idx_labels,
)


def idx_bytes(magic: int, dims: tuple[int, ...], values: bytes) -> bytes:
    """An IDX file: big-endian magic, one big-endian uint32 per dimension, then the values."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in dims)
    return header + values


def write_idx(path: Path, magic: int, array: np.ndarray, *, compress: bool = True) -> Path:
    data = idx_bytes(magic, array.shape, array.astype(np.uint8).tobytes())
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_images(path: Path, images: np.ndarray, **kwargs) -> Path:
    return write_idx(path, IMAGES_MAGIC, images, **kwargs)


def write_labels(path: Path, labels: np.ndarray, **kwargs) -> Path:
    return write_idx(path, LABELS_MAGIC, labels, **kwargs)


def make_split(seed: int, count: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, side, side), dtype=np.uint8)
    return images, rng.integers(0, 10, size=count).astype(np.uint8)


def write_fashion_folder(folder: Path, train_count: int = 12, test_count: int = 5) -> dict:
    """The four files under their official names, holding small random splits."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": make_split(1, train_count), "test": make_split(2, test_count)}
    for split, (images, labels) in splits.items():
        write_images(folder / FASHION_MNIST_FILES[f"{split}_images"].name, images)
        write_labels(folder / FASHION_MNIST_FILES[f"{split}_labels"].name, labels)
    return splits


@pytest.mark.parametrize("compress", [True, False])
def test_images_round_trip_with_a_channel_axis(tmp_path: Path, compress: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    # One bright pixel at row 1, column 2 of image 4: a row/column mix-up would move it.
    images[4] = 0
    images[4, 1, 2] = 255
    path = write_images(tmp_path / "images.idx", images, compress=compress)
    got = read_idx_images(path)
    assert got.dtype == np.uint8 and got.shape == (7, 5, 3, 1)
    assert got.flags.writeable  # callers may augment in place
    np.testing.assert_array_equal(got[..., 0], images)
    assert np.argwhere(got[4, :, :, 0] == 255).tolist() == [[1, 2]]


@pytest.mark.parametrize("compress", [True, False])
def test_labels_round_trip_as_int64(tmp_path: Path, compress: bool) -> None:
    labels = np.array([0, 9, 3, 3, 255], dtype=np.uint8)
    got = read_idx_labels(write_labels(tmp_path / "labels.idx", labels, compress=compress))
    assert got.dtype == np.int64
    assert got.tolist() == [0, 9, 3, 3, 255]


@pytest.mark.parametrize(
    ("reader", "writer", "wrong_magic"),
    [
        (read_idx_images, write_labels, "0x00000801"),
        (read_idx_labels, write_images, "0x00000803"),
    ],
)
def test_wrong_magic_names_the_file_and_both_numbers(
    tmp_path: Path, reader, writer, wrong_magic: str
) -> None:
    array = np.zeros((3, 4, 4), np.uint8) if writer is write_images else np.zeros(3, np.uint8)
    path = writer(tmp_path / "swapped.gz", array)
    with pytest.raises(IdxFormatError) as caught:
        reader(path)
    message = str(caught.value)
    assert str(path) in message and "magic number" in message and wrong_magic in message


def test_signed_element_type_is_refused(tmp_path: Path) -> None:
    # 0x0C is the IDX code for int32: same dimensions, four times the bytes.
    path = tmp_path / "int32.idx"
    path.write_bytes(idx_bytes(0x00000C01, (2,), b"\0" * 8))
    with pytest.raises(IdxFormatError, match="0x00000c01"):
        read_idx_labels(path)


@pytest.mark.parametrize("compress", [True, False])
def test_file_shorter_than_its_header_says_is_truncated(tmp_path: Path, compress: bool) -> None:
    images = np.ones((4, 6, 6), np.uint8)
    full = idx_bytes(IMAGES_MAGIC, images.shape, images.tobytes())
    path = tmp_path / "short.idx"
    path.write_bytes(gzip.compress(full[:-1]) if compress else full[:-1])
    with pytest.raises(IdxFormatError) as caught:
        read_idx_images(path)
    message = str(caught.value)
    assert str(path) in message and "truncated" in message and "144" in message


def test_cut_gzip_stream_names_the_file(tmp_path: Path) -> None:
    labels = np.arange(200, dtype=np.uint8)
    path = write_labels(tmp_path / "cut.gz", labels)
    path.write_bytes(path.read_bytes()[:-30])  # a download that stopped early
    with pytest.raises(IdxFormatError) as caught:
        read_idx_labels(path)
    assert str(path) in str(caught.value)


def test_header_cut_short_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "header.idx"
    path.write_bytes(idx_bytes(IMAGES_MAGIC, (1, 28), b""))  # the column count is missing
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx_images(path)


def test_empty_file_has_no_magic_number(tmp_path: Path) -> None:
    path = tmp_path / "empty.idx"
    path.write_bytes(b"")
    with pytest.raises(IdxFormatError, match="magic number missing"):
        read_idx_labels(path)


def test_bytes_past_the_end_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(LABELS_MAGIC, (3,), b"\x01\x02\x03\x04"))
    with pytest.raises(IdxFormatError, match="too long"):
        read_idx_labels(path)


def test_zero_dimension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "none.idx"
    path.write_bytes(idx_bytes(IMAGES_MAGIC, (0, 28, 28), b""))
    with pytest.raises(IdxFormatError, match="zero"):
        read_idx_images(path)


def test_huge_claimed_size_fails_as_truncated_without_allocating_it(tmp_path: Path) -> None:
    path = tmp_path / "liar.idx"
    path.write_bytes(idx_bytes(IMAGES_MAGIC, (2**32 - 1, 2**16, 2**16), b"\0" * 100))
    with pytest.raises(IdxFormatError, match="truncated: 100 data bytes"):
        read_idx_images(path)


def test_gzip_signature_with_garbage_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(IdxFormatError) as caught:
        read_idx_images(path)
    assert str(path) in str(caught.value) and "gzip" in str(caught.value)


def test_fashion_folder_reads_both_splits_with_the_official_names(tmp_path: Path) -> None:
    written = write_fashion_folder(tmp_path / "fm")
    splits, class_names = read_fashion_mnist(tmp_path / "fm", check_content=False)
    assert class_names == list(FASHION_MNIST_CLASSES)
    assert class_names[0] == "T-shirt/top" and class_names[9] == "Ankle boot"
    for split, (images, labels) in written.items():
        got_images, got_labels = splits[split]
        assert got_images.shape == (len(images), 28, 28, 1)
        np.testing.assert_array_equal(got_images[..., 0], images)
        np.testing.assert_array_equal(got_labels, labels.astype(np.int64))


def test_fashion_folder_accepts_decompressed_files(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    write_fashion_folder(folder)
    for file in FASHION_MNIST_FILES.values():
        packed = folder / file.name
        packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    splits, _ = read_fashion_mnist(folder, check_content=False)
    assert len(splits["train"][1]) == 12 and len(splits["test"][1]) == 5


def test_files_that_are_not_the_official_ones_are_refused(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path / "fm")
    with pytest.raises(IdxFormatError) as caught:
        read_fashion_mnist(tmp_path / "fm")
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message and "not the official" in message
    assert FASHION_MNIST_FILES["train_images"].content_md5 in message


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    write_fashion_folder(folder)
    labels_file = folder / FASHION_MNIST_FILES["test_labels"].name
    write_labels(labels_file, np.zeros(4, np.uint8))
    with pytest.raises(IdxFormatError) as caught:
        read_fashion_mnist(folder, check_content=False)
    message = str(caught.value)
    images_file = folder / FASHION_MNIST_FILES["test_images"].name
    assert str(images_file) in message and str(labels_file) in message
    assert "5 images" in message and "4 labels" in message


def test_label_outside_the_ten_classes_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    write_fashion_folder(folder)
    labels_file = folder / FASHION_MNIST_FILES["train_labels"].name
    write_labels(labels_file, np.array([0] * 11 + [10], np.uint8))
    with pytest.raises(IdxFormatError, match=r"label 10 is outside 0\.\.9") as caught:
        read_fashion_mnist(folder, check_content=False)
    assert str(labels_file) in str(caught.value)


def test_images_of_another_size_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    write_fashion_folder(folder)
    images_file = folder / FASHION_MNIST_FILES["train_images"].name
    write_images(images_file, make_split(3, 12, side=32)[0])
    with pytest.raises(IdxFormatError, match="32x32") as caught:
        read_fashion_mnist(folder, check_content=False)
    assert str(images_file) in str(caught.value)


def test_missing_file_names_the_folder_and_the_expected_files(tmp_path: Path) -> None:
    folder = tmp_path / "fm"
    write_fashion_folder(folder)
    (folder / FASHION_MNIST_FILES["test_labels"].name).unlink()
    with pytest.raises(IdxFormatError) as caught:
        read_fashion_mnist(folder, check_content=False)
    message = str(caught.value)
    assert str(folder) in message and "t10k-labels-idx1-ubyte.gz" in message
