"""Tests for staging and reading folder data sets (train/<class>/<image>)."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.data.folder import FolderFormatError, read_image_folder, stage_folder_source

# Names with a space and non-ASCII letters: class folders can be called anything.
COLOURS = {
    "cat": (200, 30, 30),
    "dog": (30, 200, 30),
    "zebra crossing": (30, 30, 200),
    "élan": (220, 220, 40),
}
TRAIN_COUNTS = {"cat": 3, "dog": 4, "zebra crossing": 2, "élan": 3}
TEST_COUNTS = {"cat": 2, "élan": 1}


def write_image(path: Path, colour: tuple[int, ...], size=(8, 8), mode="RGB", fmt=None) -> None:
    """Write a solid-colour image; `fmt` forces the format regardless of the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, colour)
    image.save(path, format=fmt or ("PNG" if path.suffix == ".png" else "JPEG"))


def make_tree(root: Path) -> Path:
    """Write train/ and test/ with JPEG and PNG files, a misnamed JPEG, and hidden junk."""
    for split, counts in (("train", TRAIN_COUNTS), ("test", TEST_COUNTS)):
        for name, count in counts.items():
            for index in range(count):
                suffix = ".png" if index % 2 else ".jpg"
                write_image(root / split / name / f"{index:03d}{suffix}", COLOURS[name])
    # JPEG content behind a .png name: the format is read from the bytes.
    write_image(root / "train" / "dog" / "999.png", COLOURS["dog"], fmt="JPEG")
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


def pack(tree: Path, archive: Path) -> Path:
    """Pack `tree` under one top-level folder into a .tar.gz or .zip, by suffix."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("__MACOSX/._junk", b"resource fork")
            for path in sorted(tree.rglob("*")):
                bundle.write(path, f"{tree.name}/{path.relative_to(tree)}")
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(tree, arcname=tree.name)
    return archive


def assert_colours_match_labels(images, labels, class_names) -> None:
    """Check each image has the solid colour of the class its label names."""
    expected = np.array([COLOURS[class_names[label]] for label in labels])
    mean_colours = images.reshape(len(images), -1, 3).mean(axis=1)
    # JPEG shifts solid colours by a few levels; classes are over 100 levels apart.
    np.testing.assert_allclose(mean_colours, expected, atol=6)


@pytest.mark.parametrize("kind", ["folder", "tar.gz", "zip"])
def test_stage_and_read(tmp_path: Path, kind: str) -> None:
    tree = make_tree(tmp_path / "made" / "my data")
    source = tree if kind == "folder" else pack(tree, tmp_path / f"data.{kind}")
    destination = tmp_path / "raw"
    root = stage_folder_source(source, destination)
    assert root == (destination if kind == "folder" else destination / "my data")
    splits, class_names = read_image_folder(root, progress=False)
    assert class_names == sorted(COLOURS)
    assert set(splits) == {"train", "test"}
    train_images, train_labels = splits["train"]
    assert train_images.shape == (13, 8, 8, 3) and train_images.dtype == np.uint8
    assert train_labels.dtype == np.int64
    counts = dict(zip(class_names, np.bincount(train_labels, minlength=4).tolist(), strict=True))
    assert counts == {**TRAIN_COUNTS, "dog": TRAIN_COUNTS["dog"] + 1}
    assert_colours_match_labels(train_images, train_labels, class_names)
    test_images, test_labels = splits["test"]
    assert sorted(class_names[label] for label in test_labels) == ["cat", "cat", "élan"]
    assert_colours_match_labels(test_images, test_labels, class_names)


def test_files_are_read_in_sorted_order(tmp_path: Path) -> None:
    for name, shade in (("b.png", 20), ("c.png", 30), ("a.png", 10)):
        write_image(tmp_path / "train" / "only" / name, (shade, shade, shade))
    splits, names = read_image_folder(tmp_path, progress=False)
    assert names == ["only"]
    assert splits["train"][0][:, 0, 0, 0].tolist() == [10, 20, 30]
    assert "test" not in splits


@pytest.mark.filterwarnings("error")  # PIL warns when a palette with transparency is misused
def test_png_modes_become_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "modes"
    write_image(folder / "1_gray.png", 100, mode="L")
    write_image(folder / "2_rgba.png", (10, 20, 30, 128), mode="RGBA")
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 200, 50, 25])
    palette.save(folder / "3_palette.png", transparency=b"\x00\x80")  # per-entry alpha
    # 16-bit grey 25700 is 100/255 of full scale; PIL's own conversion would clip it to 255.
    Image.fromarray(np.full((8, 8), 25700, dtype=np.uint16)).save(folder / "4_gray16.png")
    write_image(folder / "5_gray_alpha.png", (60, 200), mode="LA")
    write_image(folder / "6_gray.jpg", 180, mode="L")
    images = read_image_folder(tmp_path, progress=False)[0]["train"][0]
    assert images.shape == (6, 8, 8, 3)
    assert images[:5, 4, 4].tolist() == [
        [100, 100, 100],
        [10, 20, 30],
        [200, 50, 25],
        [100, 100, 100],
        [60, 60, 60],
    ]
    assert np.abs(images[5, 4, 4].astype(int) - 180).max() <= 2


def test_corrupt_jpeg_is_named(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    write_image(tmp_path / "train" / "a" / "000.jpg", (1, 2, 3))
    broken = tmp_path / "train" / "a" / "001.jpg"
    broken.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(FolderFormatError, match="001.jpg is not a readable JPEG or PNG"):
        read_image_folder(tmp_path, progress=False)


def test_non_image_file_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a" / "000.jpg", (1, 2, 3))
    (tmp_path / "train" / "a" / "notes.txt").write_text("not a picture")
    with pytest.raises(FolderFormatError, match="notes.txt is not a readable"):
        read_image_folder(tmp_path, progress=False)


def test_other_image_formats_are_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a" / "000.bmp", (1, 2, 3), fmt="BMP")
    with pytest.raises(FolderFormatError, match="000.bmp is not a readable JPEG or PNG"):
        read_image_folder(tmp_path, progress=False)


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a" / "0.png", (9, 9, 9), size=(8, 8))
    write_image(tmp_path / "train" / "a" / "1.png", (9, 9, 9), size=(12, 10))
    write_image(tmp_path / "train" / "b" / "0.png", (90, 90, 90), size=(20, 20))
    with pytest.raises(FolderFormatError) as caught:
        read_image_folder(tmp_path, progress=False)
    message = str(caught.value)
    assert "1.png is 12x10 pixels" in message and "data.image_size" in message
    images, labels = read_image_folder(tmp_path, image_size=16, progress=False)[0]["train"]
    assert images.shape == (3, 16, 16, 3)
    assert images[:, 5, 5, 0].tolist() == [9, 9, 90] and labels.tolist() == [0, 0, 1]


def test_test_images_must_match_train_size(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "a" / "0.png", (9, 9, 9), size=(8, 8))
    write_image(tmp_path / "test" / "a" / "0.png", (9, 9, 9), size=(9, 9))
    with pytest.raises(FolderFormatError, match=r"test.a.0\.png is 9x9 pixels"):
        read_image_folder(tmp_path, progress=False)


def test_test_class_missing_from_train(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "cat" / "0.png", (9, 9, 9))
    write_image(tmp_path / "test" / "cow" / "0.png", (9, 9, 9))
    with pytest.raises(FolderFormatError, match="'cow'"):
        read_image_folder(tmp_path, progress=False)


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "cat" / "0.png", (9, 9, 9))
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(FolderFormatError, match=r"train.dog holds no images"):
        read_image_folder(tmp_path, progress=False)


def test_split_without_class_folders_is_named(tmp_path: Path) -> None:
    write_image(tmp_path / "train" / "cat" / "0.png", (9, 9, 9))
    (tmp_path / "test").mkdir()
    with pytest.raises(FolderFormatError, match=r"test holds no class folders"):
        read_image_folder(tmp_path, progress=False)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("pixel_limit", [1000, 500])  # PIL itself raises beyond twice the limit
def test_oversized_image_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pixel_limit: int
) -> None:
    write_image(tmp_path / "train" / "a" / "big.png", (9, 9, 9), size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixel_limit)
    with pytest.raises(FolderFormatError, match="big.png is too large to decode safely"):
        read_image_folder(tmp_path, progress=False)


def test_bad_image_size_names_param(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.image_size"):
        read_image_folder(tmp_path, image_size=0, progress=False)


def test_missing_source_names_path_and_param(tmp_path: Path) -> None:
    with pytest.raises(FolderFormatError) as caught:
        stage_folder_source(tmp_path / "absent.zip", tmp_path / "raw")
    assert "absent.zip" in str(caught.value) and "data.path" in str(caught.value)


def test_archive_without_train_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "made" / "pics" / "cat" / "0.png", (9, 9, 9))
    archive = pack(tmp_path / "made", tmp_path / "pics.tar.gz")
    with pytest.raises(FolderFormatError, match="no train/ folder"):
        stage_folder_source(archive, tmp_path / "raw")


def add_tar_member(tar: tarfile.TarFile, name: str, *, link_to: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link_to is None:
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    else:
        info.type = tarfile.SYMTYPE
        info.linkname = link_to
        tar.addfile(info)


@pytest.mark.parametrize(
    ("member", "link_to"),
    [("../evil.txt", None), ("/tmp/evil-absolute.txt", None), ("data/up", "../../")],
)
def test_unsafe_tar_is_refused(tmp_path: Path, member: str, link_to: str | None) -> None:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_tar_member(tar, "data/train/a/0.txt")
        add_tar_member(tar, member, link_to=link_to)
    destination = tmp_path / "stage" / "raw"
    with pytest.raises(FolderFormatError) as caught:
        stage_folder_source(archive, destination)
    assert repr(member) in str(caught.value)
    assert list(destination.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["raw"]


@pytest.mark.parametrize("member", ["../evil.txt", "data/../../evil.txt", "/evil.txt", "link"])
def test_unsafe_zip_is_refused(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("data/train/a/0.txt", b"fine")
        info = zipfile.ZipInfo(member)
        if member == "link":
            info.create_system = 3  # Unix, so the mode bits below mean a symlink
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, b"../../etc")
        else:
            bundle.writestr(info, b"evil")
    destination = tmp_path / "stage" / "raw"
    with pytest.raises(FolderFormatError) as caught:
        stage_folder_source(archive, destination)
    assert repr(member) in str(caught.value)
    assert list(destination.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["raw"]
