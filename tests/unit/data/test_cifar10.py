"""Tests for reading the CIFAR-10 python tarball."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from imgclf.checksums import md5_of
from imgclf.data.cifar10 import DatasetFormatError, read_cifar10_archive
from support.cifar import (
    ARCHIVE_FOLDER,
    CLASS_NAMES,
    cifar10_members,
    make_tiny_cifar,
    write_cifar10_archive,
    write_tar_gz,
)


@pytest.mark.parametrize("python2_pickles", [True, False])
def test_round_trip_gives_back_arrays_and_names(tmp_path: Path, python2_pickles: bool) -> None:
    train, test = make_tiny_cifar(seed=1, n_train=53, n_test=20)
    # A red-only pixel at a known place: a CHW/HWC mix-up would move or recolour it.
    train[0][7, 3, 5] = (250, 0, 0)
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = write_cifar10_archive(archive, train, test, CLASS_NAMES, python2_pickles=python2_pickles)
    splits, names = read_cifar10_archive(archive)
    assert md5 == md5_of(archive)
    assert names == list(CLASS_NAMES)
    for split, (images, labels) in (("train", train), ("test", test)):
        got_images, got_labels = splits[split]
        assert got_images.dtype == np.uint8 and got_images.shape == images.shape
        assert got_labels.dtype == np.int64
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
    assert splits["train"][0][7, 3, 5].tolist() == [250, 0, 0]


def test_archive_has_the_official_layout(tmp_path: Path) -> None:
    train, test = make_tiny_cifar(seed=2, n_train=10, n_test=5)
    archive = tmp_path / "c.tar.gz"
    write_cifar10_archive(archive, train, test)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        raw = tar.extractfile(f"{ARCHIVE_FOLDER}/data_batch_1").read()
    expected = [f"data_batch_{n}" for n in range(1, 6)] + ["test_batch", "batches.meta"]
    assert {f"{ARCHIVE_FOLDER}/{name}" for name in expected} <= names
    assert raw[:2] == b"\x80\x02"  # protocol 2
    assert b"numpy.core.multiarray" in raw and b"_codecs" not in raw  # as Python 2 wrote it
    batch = pickle.loads(raw, encoding="bytes")
    # Row 0 is channel-planar: its first 1024 values are the red plane.
    np.testing.assert_array_equal(batch[b"data"][0, :1024], train[0][0, :, :, 0].ravel())


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    train, test = make_tiny_cifar(seed=3)
    members = cifar10_members(train, test)
    members[f"{ARCHIVE_FOLDER}/data_batch_1"] = pickle.dumps(Planted(), protocol=2)
    archive = tmp_path / "evil.tar.gz"
    write_tar_gz(archive, members)
    with pytest.raises(DatasetFormatError) as caught:
        read_cifar10_archive(archive)
    message = str(caught.value)
    assert "data_batch_1" in message and "system" in message
    assert not marker.exists()


def test_label_out_of_range_names_member(tmp_path: Path) -> None:
    (images, labels), test = make_tiny_cifar(seed=4, n_train=50)
    labels = labels.copy()
    labels[45] = 10  # the last of five batches of ten
    archive = tmp_path / "c.tar.gz"
    write_cifar10_archive(archive, (images, labels), test)
    with pytest.raises(DatasetFormatError, match=r"data_batch_5: label 10 is outside 0\.\.9"):
        read_cifar10_archive(archive)


def test_wrong_data_shape_names_member(tmp_path: Path) -> None:
    train, test = make_tiny_cifar(seed=5)
    members = cifar10_members(train, test)
    bad = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    members[f"{ARCHIVE_FOLDER}/test_batch"] = pickle.dumps(bad, protocol=2)
    archive = tmp_path / "c.tar.gz"
    write_tar_gz(archive, members)
    with pytest.raises(DatasetFormatError, match=r"test_batch: data should be uint8 \[n, 3072\]"):
        read_cifar10_archive(archive)


def test_missing_meta_and_wrong_class_count(tmp_path: Path) -> None:
    train, test = make_tiny_cifar(seed=6)
    members = cifar10_members(train, test)
    del members[f"{ARCHIVE_FOLDER}/batches.meta"]
    write_tar_gz(tmp_path / "a.tar.gz", members)
    with pytest.raises(DatasetFormatError, match="batches.meta"):
        read_cifar10_archive(tmp_path / "a.tar.gz")
    write_cifar10_archive(tmp_path / "b.tar.gz", train, test, CLASS_NAMES[:9])
    with pytest.raises(DatasetFormatError, match="10 label_names, found 9"):
        read_cifar10_archive(tmp_path / "b.tar.gz")


def test_not_an_archive_names_file(tmp_path: Path) -> None:
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DatasetFormatError, match="cifar-10-python.tar.gz is not a readable tar"):
        read_cifar10_archive(path)
