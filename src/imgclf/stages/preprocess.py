"""preprocess stage: seeded stratified train/val/test splits, classes.json and the manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from imgclf.data.arrays import load_split, read_classes, save_split, write_classes
from imgclf.data.manifest import build_manifest, write_manifest
from imgclf.data.splits import stratified_split, val_split
from imgclf.params import Params
from imgclf.stages.common import run_stage, stage_parser


def _preprocess(args: argparse.Namespace, params: Params) -> None:
    settings = params.preprocess
    class_names, image_shape = read_classes(args.raw / "classes.json")
    images, labels = load_split(args.raw / "train.npz")
    raw_test = args.raw / "test.npz"
    if raw_test.exists():
        test = load_split(raw_test)
    else:
        # No test split in the source: carve one before val so val never sees test images.
        kept, held = stratified_split(labels, settings.test_fraction, settings.seed)
        test = images[held], labels[held]
        images, labels = images[kept], labels[kept]
    kept, held = val_split(labels, settings.val_fraction, settings.seed)
    splits = {
        "train": (images[kept], labels[kept]),
        "val": (images[held], labels[held]),
        "test": test,
    }
    for name, (split_images, split_labels) in splits.items():
        save_split(args.out / f"{name}.npz", split_images, split_labels)
    write_classes(args.out / "classes.json", class_names, image_shape)
    write_manifest(build_manifest(splits, class_names), args.out / "manifest.parquet")
    counts = ", ".join(f"{name} {len(split[1])}" for name, split in splits.items())
    print(f"preprocess: {counts} images, {len(class_names)} classes -> {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        "preprocess", "Split data/raw into train/val/test arrays and write the manifest."
    )
    parser.add_argument("--raw", type=Path, required=True, help="download stage output folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the prepared splits")
    return run_stage(parser, _preprocess, argv)


if __name__ == "__main__":
    sys.exit(main())
