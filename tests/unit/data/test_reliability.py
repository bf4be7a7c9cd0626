"""Bad data in: what the existing data tests leave out, through the same real readers.

The download stage against a local HTTP server that serves the wrong bytes; CIFAR-10 batches of
the wrong dtype; tar archives with hard links out of the folder and device files.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from imgclf.data.cifar10 import DatasetFormatError, read_cifar10_archive
from imgclf.data.folder import FolderFormatError, stage_folder_source
from imgclf.stages import download
from support.cifar import ARCHIVE_FOLDER, cifar10_members, make_tiny_cifar, write_tar_gz
from support.http import serve_directory

ARCHIVE = "cifar-10-python.tar.gz"


def _html_error_page(good: bytes) -> bytes:
    return b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>\n"


def _truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def _one_flipped_byte(good: bytes) -> bytes:
    changed = bytearray(good)
    changed[len(changed) // 3] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    "damage",
    [_html_error_page, _truncated, _one_flipped_byte],
    ids=["html-error-page", "truncated", "one-flipped-byte"],
)
def test_a_damaged_download_is_refused_with_both_digests_and_leaves_nothing(
    tmp_path: Path, project: Path, capsys, damage
) -> None:
    good = tmp_path / "good" / ARCHIVE
    expected_md5 = write_cifar_archive(good)
    served = tmp_path / "served"
    served.mkdir()
    bad = damage(good.read_bytes())
    (served / ARCHIVE).write_bytes(bad)
    with serve_directory(served) as base_url:
        params = {"data": {"source": "cifar10", "url": base_url + ARCHIVE, "md5": expected_md5}}
        (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        assert download.main(["--out", "data/raw"]) == 2
    stderr = capsys.readouterr().err
    assert expected_md5 in stderr and hashlib.md5(bad).hexdigest() in stderr
    raw = project / "data" / "raw"
    assert not raw.exists() or list(raw.iterdir()) == []
    leftovers = [path for path in (tmp_path / "cache").rglob("*") if path.is_file()]
    assert leftovers == []


def write_cifar_archive(path: Path) -> str:
    train, test = make_tiny_cifar(seed=7, n_train=20, n_test=10)
    return write_tar_gz(path, cifar10_members(train, test))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            b"data",
            np.zeros((4, 3072), np.float32),
            r"data should be uint8 \[n, 3072\], found float32",
        ),
        (b"labels", [0.0, 1.5, 2.0, 3.0], r"labels should be 4 integers, found float64"),
    ],
    ids=["float-pixels", "float-labels"],
)
def test_a_batch_of_the_wrong_dtype_names_the_member(
    tmp_path: Path, field: bytes, value, message: str
) -> None:
    train, test = make_tiny_cifar(seed=8)
    members = cifar10_members(train, test)
    batch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3], field: value}
    members[f"{ARCHIVE_FOLDER}/data_batch_2"] = pickle.dumps(batch, protocol=2)
    archive = tmp_path / ARCHIVE
    write_tar_gz(archive, members)
    with pytest.raises(DatasetFormatError, match=f"data_batch_2: {message}"):
        read_cifar10_archive(archive)


def _special_member(name: str, kind: bytes, link_to: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link_to
    return info


@pytest.mark.parametrize(
    "member",
    [
        _special_member("data/train/a/passwd", tarfile.LNKTYPE, "../../../../etc/passwd"),
        _special_member("data/train/a/shadow", tarfile.LNKTYPE, "/etc/shadow"),
        _special_member("data/train/a/tty", tarfile.CHRTYPE),
        _special_member("data/train/a/disk", tarfile.BLKTYPE),
        _special_member("data/train/a/pipe", tarfile.FIFOTYPE),
    ],
    ids=["hardlink-up", "hardlink-absolute", "char-device", "block-device", "fifo"],
)
def test_links_out_and_device_files_in_a_tar_are_refused(
    tmp_path: Path, member: tarfile.TarInfo
) -> None:
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        fine = tarfile.TarInfo("data/train/a/0.txt")
        fine.size = 4
        tar.addfile(fine, io.BytesIO(b"fine"))
        tar.addfile(member)
    destination = tmp_path / "stage" / "raw"
    with pytest.raises(FolderFormatError) as caught:
        stage_folder_source(archive, destination)
    assert repr(member.name) in str(caught.value) and "nothing was extracted" in str(caught.value)
    assert list(destination.iterdir()) == []
    assert sorted(path.name for path in (tmp_path / "stage").iterdir()) == ["raw"]
