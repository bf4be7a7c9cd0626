"""Stage and read a user's data set laid out as train/<class>/<image> (and test/<class>/...).

Opening the files themselves (safe archive extraction, image decoding) is `user_files.py`.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imgclf.data.user_files import (
    DECODE_WORKERS,
    IGNORED_FOLDERS,
    LAYOUT_HINT,
    TAR_SUFFIXES,
    ZIP_SUFFIXES,
    FolderFormatError,
    decode_image,
    extract_archive,
    is_archive,
)

FILES_PER_TASK = 512


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
