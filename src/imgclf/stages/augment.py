"""augment stage: originals plus seeded augmented copies, and a preview grid."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imgclf.augmentation import augment_copies, preview_grid
from imgclf.data.arrays import load_split, read_json, save_split
from imgclf.errors import ImgclfError
from imgclf.params import AugmentParams, Params
from imgclf.stages.common import run_stage, stage_parser

PREVIEW_IMAGES = 8
PREVIEW_VARIANTS = 6


def _check_validation(result_path: Path) -> None:
    result = read_json(result_path)
    if not result.get("success"):
        raise ImgclfError(f"{result_path} records failed data checks; run the validate stage")


def _operations(settings: AugmentParams) -> dict[str, Any]:
    """The augmentation settings augment_copies takes, the same for the data and the preview."""
    return {
        "flip": settings.flip,
        "rotation_degrees": settings.rotation_degrees,
        "translate_fraction": settings.translate_fraction,
        "crop_fraction": settings.crop_fraction,
        "color_jitter": settings.color_jitter,
        "cutout_fraction": settings.cutout_fraction,
    }


def _write_preview(images: np.ndarray, labels: np.ndarray, params: Params, path: Path) -> None:
    from PIL import Image

    settings = params.augment
    # One original per class where possible, so the preview shows the whole label set.
    first_of_class = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)]
    originals = images[first_of_class[:PREVIEW_IMAGES]]
    variants = [
        augment_copies(
            originals,
            np.zeros(len(originals), dtype=np.int64),
            1,
            settings.seed + variant,
            **_operations(settings),
            progress=False,  # one copy of a few images: over before a bar could say anything
        )[0][len(originals) :]
        for variant in range(PREVIEW_VARIANTS)
    ]
    grid = preview_grid(originals, variants)
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = max(1, 256 // images.shape[1])
    size = (grid.shape[1] * scale, grid.shape[0] * scale)
    Image.fromarray(grid.squeeze()).resize(size, Image.NEAREST).save(path)


def _augment(args: argparse.Namespace, params: Params) -> None:
    _check_validation(args.validation)
    settings = params.augment
    images, labels = load_split(args.train)
    augmented, augmented_labels = augment_copies(
        images,
        labels,
        settings.copies,
        settings.seed,
        **_operations(settings),
    )
    save_split(args.out, augmented, augmented_labels)
    _write_preview(images, labels, params, args.preview)
    print(f"augment: {len(images)} originals + {settings.copies} copies each -> {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("augment", "Write originals plus augmented copies of the training split.")
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--validation", type=Path, required=True, help="validate result.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preview", type=Path, required=True, help="preview grid PNG")
    return run_stage(parser, _augment, argv)


if __name__ == "__main__":
    sys.exit(main())
