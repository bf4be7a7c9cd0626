"""download stage: bring the configured source into data/raw as arrays plus classes.json."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.data.arrays import save_split, write_classes, write_json
from imgclf.data.splits import stratified_split
from imgclf.errors import ImgclfError
from imgclf.params import DataParams, Params
from imgclf.stages.common import run_stage, stage_parser

Splits = dict[str, tuple[np.ndarray, np.ndarray]]
Origin = dict[str, Any]  # what source.json records about where the images came from


def _download_folder() -> Path:
    """Where verified downloads and resumable partial files live, outside DVC's outputs."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / "imgclf"


def _keras_cache_copies(file_name: str) -> list[Path]:
    """Where keras.datasets.cifar10 keeps the same tarball: Keras 3 names it
    `cifar-10-batches-py-target_archive`, Keras 2 `cifar-10-batches-py.tar.gz`."""
    datasets = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"
    names = (file_name, "cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz")
    return [datasets / name for name in names]


def _from_cifar10(data: DataParams) -> tuple[Splits, list[str], Origin]:
    from imgclf.data.cifar10 import read_cifar10_archive
    from imgclf.data.download import fetch_verified

    url, md5 = data.source_url(), data.source_md5()
    folder = _download_folder()
    file_name = Path(url.rstrip("/")).name or "cifar-10-python.tar.gz"
    archive = fetch_verified(
        url,
        folder / file_name,
        md5,
        partial_dir=folder,
        cached_copies=_keras_cache_copies(file_name),
    )
    splits, class_names = read_cifar10_archive(archive)
    return splits, class_names, {"url": url, "md5": md5, "checksum": md5}


def _from_fashion_mnist(data: DataParams) -> tuple[Splits, list[str], Origin]:
    from imgclf.checksums import md5_of
    from imgclf.data.download import fetch_verified
    from imgclf.data.idx import (
        FASHION_MNIST_CHECKSUM,
        FASHION_MNIST_FILES,
        find_idx_file,
        read_fashion_mnist,
    )

    base_url = data.source_url()
    if urllib.parse.urlsplit(base_url).scheme == "file":
        # Local files are read in place: there is nothing to resume, and a repackaged copy
        # (Debian rewrites gzip headers) fails the .gz md5 but passes the content check below.
        folder = _local_folder_of(base_url)
    else:
        folder = _download_folder() / "fashion-mnist"  # MNIST's files have the same names
        keras_copies = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
        for file in FASHION_MNIST_FILES.values():
            fetch_verified(
                f"{base_url.rstrip('/')}/{file.name}",
                folder / file.name,
                file.gzip_md5,
                partial_dir=folder,
                cached_copies=[keras_copies / "datasets" / "fashion-mnist" / file.name],
            )
    splits, class_names = read_fashion_mnist(folder)  # checks each file's official content md5
    # The md5 of each file as read tells the official .gz from a repackaged or plain copy.
    files = {
        file.name: md5_of(find_idx_file(folder, file.name)) for file in FASHION_MNIST_FILES.values()
    }
    origin = {"url": base_url, "md5": files, "checksum": FASHION_MNIST_CHECKSUM}
    return splits, class_names, origin


def _local_folder_of(url: str) -> Path:
    """Return the existing local folder a file:// URL names."""
    from imgclf.data.download import file_url_path

    folder = file_url_path(url)
    if folder is None or not folder.is_dir():
        raise ImgclfError(
            f"data.url {url} is not a local folder: write file:///absolute/path/to/folder/ "
            "(for Debian's dataset-fashion-mnist package: file:///usr/share/datasets/fashion-mnist/)"
        )
    return folder


def _from_folder(data: DataParams, scratch: Path) -> tuple[Splits, list[str], Origin]:
    from imgclf.data.folder import read_image_folder, stage_folder_source

    source = Path(data.path).expanduser()
    # A directory that already holds train/ is read in place; anything else is unpacked first.
    root = source if (source / "train").is_dir() else stage_folder_source(source, scratch)
    splits, class_names = read_image_folder(root, data.image_size)
    return splits, class_names, {"path": data.path, "image_size": data.image_size}


def _from_synthetic(data: DataParams) -> tuple[Splits, list[str], Origin]:
    from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic

    splits = {
        "train": draw_synthetic(data.synthetic_train_size, data.seed),
        "test": draw_synthetic(data.synthetic_test_size, data.seed + 1),
    }
    return splits, list(SYNTHETIC_CLASSES), {"seed": data.seed}


def _take_subsets(splits: Splits, data: DataParams) -> Splits:
    """Keep a seeded, stratified subset of each split that is larger than its data.max_*."""
    limits = {"train": data.max_train_images, "test": data.max_test_images}
    subsets = {}
    for offset, (name, (images, labels)) in enumerate(splits.items()):
        limit = limits.get(name)
        if limit is None or limit >= len(labels):
            subsets[name] = (images, labels)
            continue
        _, kept = stratified_split(labels, limit / len(labels), data.seed + offset)
        subsets[name] = (images[kept], labels[kept])
    return subsets


def _download(args: argparse.Namespace, params: Params) -> None:
    data = params.data
    with tempfile.TemporaryDirectory(prefix="imgclf-download-") as scratch:
        if data.source == "cifar10":
            splits, class_names, origin = _from_cifar10(data)
        elif data.source == "fashion_mnist":
            splits, class_names, origin = _from_fashion_mnist(data)
        elif data.source == "folder":
            splits, class_names, origin = _from_folder(data, Path(scratch))
        else:
            splits, class_names, origin = _from_synthetic(data)
    splits = _take_subsets(splits, data)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in splits.items():
        save_split(args.out / f"{name}.npz", images, labels)
    write_classes(args.out / "classes.json", class_names, splits["train"][0].shape[1:])
    write_json(args.out / "source.json", {"source": data.source, **origin})
    counts = ", ".join(f"{name} {len(labels)}" for name, (_, labels) in splits.items())
    print(f"download: {data.source}: {counts} images, {len(class_names)} classes -> {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("download", "Fetch the configured image source into data/raw.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    return run_stage(parser, _download, argv)


if __name__ == "__main__":
    sys.exit(main())
