"""download stage: bring the configured source into data/raw as arrays plus classes.json."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgclf.data.arrays import save_split, write_classes, write_json
from imgclf.params import DataParams, Params
from imgclf.stages.common import run_stage, stage_parser

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def _cache_folders() -> tuple[Path, list[Path]]:
    """imgclf's own download folder, and the Keras cache whose copy is reused when valid."""
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return cache_home / "imgclf", [keras_home / "datasets"]


def _from_cifar10(data: DataParams) -> tuple[Splits, list[str]]:
    from imgclf.data.cifar10 import read_cifar10_archive
    from imgclf.data.download import fetch_verified

    download_folder, keras_caches = _cache_folders()
    archive = fetch_verified(
        data.url,
        download_folder / Path(data.url.rstrip("/")).name,
        data.md5,
        partial_dir=download_folder,
        cache_dirs=keras_caches,
    )
    return read_cifar10_archive(archive)


def _from_folder(data: DataParams, scratch: Path) -> tuple[Splits, list[str]]:
    from imgclf.data.folder import read_image_folder, stage_folder_source

    source = Path(data.path).expanduser()
    # A directory that already holds train/ is read in place; anything else is unpacked first.
    root = source if (source / "train").is_dir() else stage_folder_source(source, scratch)
    return read_image_folder(root, data.image_size)


def _from_synthetic(data: DataParams) -> tuple[Splits, list[str]]:
    from imgclf.data.synthetic import SYNTHETIC_CLASSES, draw_synthetic

    splits = {
        "train": draw_synthetic(data.synthetic_train_size, data.seed),
        "test": draw_synthetic(data.synthetic_test_size, data.seed + 1),
    }
    return splits, list(SYNTHETIC_CLASSES)


def _download(args: argparse.Namespace, params: Params) -> None:
    data = params.data
    with tempfile.TemporaryDirectory(prefix="imgclf-download-") as scratch:
        if data.source == "cifar10":
            splits, class_names = _from_cifar10(data)
        elif data.source == "folder":
            splits, class_names = _from_folder(data, Path(scratch))
        else:
            splits, class_names = _from_synthetic(data)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in splits.items():
        save_split(args.out / f"{name}.npz", images, labels)
    write_classes(args.out / "classes.json", class_names, splits["train"][0].shape[1:])
    origins = {
        "cifar10": {"url": data.url, "md5": data.md5},
        "folder": {"path": data.path, "image_size": data.image_size},
        "synthetic": {"seed": data.seed},
    }
    write_json(args.out / "source.json", {"source": data.source, **origins[data.source]})
    counts = ", ".join(f"{name} {len(labels)}" for name, (_, labels) in splits.items())
    print(f"download: {data.source}: {counts} images, {len(class_names)} classes -> {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("Fetch the configured image source into data/raw.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    return run_stage(parser, _download, argv)


if __name__ == "__main__":
    sys.exit(main())
