"""Stage and read a user's data set laid out as train/<class>/<image> (and test/<class>/...)."""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from imgclf.errors import ImgclfError

TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
ZIP_SUFFIXES = (".zip",)
ACCEPTED_FORMATS = ("JPEG", "PNG")
# Folders that archivers add and that are never classes or data.
IGNORED_FOLDERS = frozenset({"__MACOSX"})
SIXTEEN_BIT_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
# PIL's decoders release the GIL, so a few threads keep two cores busy; more only add switching.
DECODE_WORKERS = 4
FILES_PER_TASK = 512
LAYOUT_HINT = (
    "Lay the data out as train/<class>/<image> (and optionally test/<class>/<image>) and point "
    "data.path at that folder or at a .tar.gz/.tgz/.tar/.zip archive of it."
)


class FolderFormatError(ImgclfError, ValueError):
    """A folder data set, or one of its files, does not have the expected layout or content."""


def stage_folder_source(source: Path, destination: Path) -> Path:
    """Copy a data folder, or safely extract an archive of one, into `destination`.

    Returns:
        The folder inside `destination` that holds `train/`.
    """
    if not source.exists():
        raise FolderFormatError(f"data.path {source} does not exist. Fix data.path. {LAYOUT_HINT}")
    destination.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True)
    elif is_archive(source):
        extract_archive(source, destination)
    else:
        raise FolderFormatError(
            f"data.path {source} is neither a folder nor a "
            f"{'/'.join(TAR_SUFFIXES + ZIP_SUFFIXES)} archive. {LAYOUT_HINT}"
        )
    return _find_data_root(destination, source)


def is_archive(path: Path) -> bool:
    """Whether the name says tar (optionally gzipped) or zip archive."""
    return path.name.lower().endswith(TAR_SUFFIXES + ZIP_SUFFIXES)


def extract_archive(archive: Path, destination: Path) -> None:
    """Safely extract a tar or zip archive into `destination`: no links, nothing outside it."""
    destination.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(TAR_SUFFIXES):
        _extract_tar_safely(archive, destination)
    else:
        _extract_zip_safely(archive, destination)


def _extract_tar_safely(archive: Path, destination: Path) -> None:
    """Extract a tar archive, refusing it whole if any member could land outside `destination`."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            # Check every member before writing any, so a refused archive leaves nothing behind.
            for member in members:
                try:
                    filtered = tarfile.data_filter(member, str(destination))
                except tarfile.FilterError as error:
                    raise _refuse_member(archive, member.name, str(error)) from error
                if filtered.name != member.name:  # the filter strips a leading "/"
                    raise _refuse_member(archive, member.name, "its path is absolute")
            tar.extractall(destination, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise FolderFormatError(
            f"{archive} is not a readable tar archive ({error}). {LAYOUT_HINT}"
        ) from error


def _extract_zip_safely(archive: Path, destination: Path) -> None:
    """Extract a zip archive, refusing links and names that escape `destination`."""
    root = destination.resolve()
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            for member in members:
                _check_zip_member(member, root, archive)
            bundle.extractall(destination, members=members)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as error:
        raise FolderFormatError(
            f"{archive} is not a readable zip archive ({error}). {LAYOUT_HINT}"
        ) from error


def _check_zip_member(member: zipfile.ZipInfo, root: Path, archive: Path) -> None:
    """Raise if a zip member is a link or its name would resolve outside `root`."""
    if stat.S_ISLNK(member.external_attr >> 16):
        raise _refuse_member(archive, member.filename, "symbolic links are not allowed")
    name = member.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in name.split("/"):
        raise _refuse_member(archive, member.filename, "its path leaves the extraction folder")
    if not (root / name).resolve().is_relative_to(root):
        raise _refuse_member(archive, member.filename, "its path leaves the extraction folder")


def _refuse_member(archive: Path, member_name: str, reason: str) -> FolderFormatError:
    """Build the error for an archive member that is not safe to extract."""
    return FolderFormatError(
        f"{archive}: refused to extract member {member_name!r} ({reason}); nothing was "
        "extracted. Rebuild the archive with plain relative paths and no links."
    )


def _find_data_root(destination: Path, source: Path) -> Path:
    """Return `destination` or its single top-level folder, whichever holds `train/`."""
    if (destination / "train").is_dir():
        return destination
    candidates = [child for child in list_visible(destination) if (child / "train").is_dir()]
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(child.name for child in list_visible(destination)) or "nothing"
    raise FolderFormatError(
        f"{source} has no train/ folder at its top level or inside exactly one top-level "
        f"folder (found: {found}). {LAYOUT_HINT}"
    )


def list_visible(folder: Path) -> list[Path]:
    """Return the entries of a folder in sorted order, without hidden and archiver files."""
    return sorted(
        (
            entry
            for entry in folder.iterdir()
            if not entry.name.startswith(".") and entry.name not in IGNORED_FOLDERS
        ),
        key=lambda entry: entry.name,
    )


def read_image_folder(
    root: Path, image_size: int | None = None, *, progress: bool = True
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Read `root/train/<class>/*` (and `root/test/<class>/*` if present) into arrays.

    Returns:
        ({"train": (images, labels)[, "test": (images, labels)]}, class_names), with images
        uint8 RGB [N, H, W, 3], labels int64 [N] and class names the sorted train folders.
    """
    if image_size is not None and image_size < 1:
        raise FolderFormatError(f"data.image_size must be at least 1 pixel, not {image_size}.")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise FolderFormatError(f"{root} has no train/ folder. {LAYOUT_HINT}")
    class_names = [entry.name for entry in list_visible(train_dir) if entry.is_dir()]
    train_paths, train_labels = _list_split(train_dir, class_names)
    train_images = _decode_images(train_paths, image_size, None, progress, "train")
    splits = {"train": (train_images, train_labels)}
    test_dir = root / "test"
    if test_dir.is_dir():
        test_paths, test_labels = _list_split(test_dir, class_names)
        # Without resizing, test images must match the size the train images set.
        reference = (train_paths[0], train_images.shape[1:3])
        test_images = _decode_images(test_paths, image_size, reference, progress, "test")
        splits["test"] = (test_images, test_labels)
    return splits, class_names


def _list_split(split_dir: Path, class_names: list[str]) -> tuple[list[Path], np.ndarray]:
    """Return the image paths of one split in class-then-name order, and their labels."""
    folders = [entry for entry in list_visible(split_dir) if entry.is_dir()]
    if not folders:
        raise FolderFormatError(f"{split_dir} holds no class folders. {LAYOUT_HINT}")
    unknown = [folder.name for folder in folders if folder.name not in class_names]
    if unknown:
        raise FolderFormatError(
            f"{split_dir} has class folders {unknown} that train/ lacks (train classes: "
            f"{class_names}). Every test class must also be a train class."
        )
    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        files = list_visible(folder)
        nested = [entry for entry in files if entry.is_dir()]
        if nested:
            raise FolderFormatError(
                f"{nested[0]} is a folder; images must sit directly in {folder}. {LAYOUT_HINT}"
            )
        if not files:
            raise FolderFormatError(f"{folder} holds no images. Add images or remove the folder.")
        paths.extend(files)
        labels.extend([class_names.index(folder.name)] * len(files))
    return paths, np.asarray(labels, dtype=np.int64)


def _decode_images(
    paths: list[Path],
    image_size: int | None,
    reference: tuple[Path, tuple[int, int]] | None,
    progress: bool,
    split: str,
) -> np.ndarray:
    """Decode images in parallel into one preallocated uint8 array [N, H, W, 3].

    Without `image_size`, every image must have the size of `reference` (the first image
    when no reference is given).
    """
    if image_size is not None:
        reference = (paths[0], (image_size, image_size))
    elif reference is None:
        reference = (paths[0], _decode_image(paths[0], None).shape[:2])
    height, width = reference[1]
    images = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    starts = range(0, len(paths), FILES_PER_TASK)
    with (
        ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool,
        tqdm(total=len(paths), desc=f"decode {split}", unit="img", disable=not progress) as bar,
    ):
        tasks = [
            pool.submit(_decode_range, paths, start, images, image_size, reference[0])
            for start in starts
        ]
        try:
            # Waiting in order makes the reported error the first bad file, run after run.
            for task in tasks:
                bar.update(task.result())
        finally:
            for task in tasks:
                task.cancel()
    return images


def _decode_range(
    paths: list[Path], start: int, images: np.ndarray, image_size: int | None, reference: Path
) -> int:
    """Decode paths[start:start + FILES_PER_TASK] into their rows of `images`; return the count."""
    stop = min(start + FILES_PER_TASK, len(paths))
    for index in range(start, stop):
        pixels = _decode_image(paths[index], image_size)
        if pixels.shape != images.shape[1:]:
            height, width = images.shape[1:3]
            raise FolderFormatError(
                f"{paths[index]} is {pixels.shape[1]}x{pixels.shape[0]} pixels but {reference} "
                f"is {width}x{height}; without data.image_size all images must share one size. "
                "Set data.image_size to resize every image to that square side."
            )
        images[index] = pixels
    return stop - start


def _decode_image(path: Path, image_size: int | None) -> np.ndarray:
    """Decode one JPEG or PNG file into uint8 RGB [H, W, 3], resized if `image_size` is set."""
    return decode_image(path, None if image_size is None else (image_size, image_size))


def decode_image(path: Path, size: tuple[int, int] | None = None, channels: int = 3) -> np.ndarray:
    """Decode one JPEG or PNG file into uint8 [H, W, channels] (RGB, or grey for 1 channel).

    EXIF orientation is applied; grey, palette, RGBA and 16-bit images are converted; with
    `size` (height, width) the image is resized bilinearly, as the folder source does.
    """
    if channels not in (1, 3):
        raise FolderFormatError(f"images decode to 1 or 3 channels, not {channels}")
    try:
        with Image.open(path, formats=ACCEPTED_FORMATS) as image:
            _refuse_oversized(image, path)
            if size is not None:
                # Lets the JPEG decoder shrink big photos by 1/2..1/8 while decoding.
                image.draft("RGB", (size[1], size[0]))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _convert_to_rgb(image)
    except FolderFormatError:
        raise
    except Image.DecompressionBombError as error:
        raise _oversized_error(path, str(error)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise FolderFormatError(
            f"{path} is not a readable JPEG or PNG image ({error}). Replace or remove it."
        ) from error
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    if channels == 1:
        return np.asarray(rgb.convert("L"), dtype=np.uint8)[..., np.newaxis]
    return np.asarray(rgb, dtype=np.uint8)


def _refuse_oversized(image: Image.Image, path: Path) -> None:
    """Raise before decoding an image with more pixels than PIL's bomb limit allows."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise _oversized_error(path, f"{image.width}x{image.height} exceeds {limit} pixels")


def _oversized_error(path: Path, reason: str) -> FolderFormatError:
    """Build the error for an image too large to decode safely."""
    return FolderFormatError(
        f"{path} is too large to decode safely ({reason}); it may be a decompression bomb. "
        "Shrink or remove it."
    )


def _convert_to_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB version of an image in any PNG or JPEG mode."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_GRAY_MODES:
        # PIL's own conversion clips 16-bit values at 255 instead of rescaling them.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        gray = ((values + 128) // 257).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("P", "PA"):
        # Via RGBA, as PIL asks for palettes with transparency; the alpha is dropped either way.
        image = image.convert("RGBA")
    return image.convert("RGB")
