"""The data sections: where images come from, how they are split, checked and augmented."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

# The official locations and checksums live with their readers; params resolves a null to them.
from imgclf.data.cifar10 import CIFAR10_MD5, CIFAR10_URL
from imgclf.data.idx import FASHION_MNIST_URL
from imgclf.params.base import FieldError, Section


class DataParams(Section):
    source: Literal["cifar10", "fashion_mnist", "folder", "synthetic"] = Field(
        "cifar10", description="Where images come from: cifar10, fashion_mnist, folder, synthetic."
    )
    url: str | None = Field(
        None,
        description="cifar10: the tarball; fashion_mnist: the folder of its four .gz files "
        "(http, https, file). null: the source's official location.",
    )
    md5: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="cifar10: MD5 of data.url (null: the official tarball's). fashion_mnist "
        "checks each file against the official checksums fixed in code and takes none.",
    )
    path: str | None = Field(
        None, description="folder source: a directory or .tar.gz/.zip of train/<class>/*."
    )
    image_size: int | None = Field(
        None, ge=8, le=512, description="folder source: resize every image to this square side."
    )
    synthetic_train_size: int = Field(
        2000, ge=20, le=200_000, description="synthetic source: training images drawn."
    )
    synthetic_test_size: int = Field(
        500, ge=10, le=50_000, description="synthetic source: test images drawn."
    )
    max_train_images: int | None = Field(
        None, ge=10, description="Keep a seeded, stratified subset of this many train images."
    )
    max_test_images: int | None = Field(
        None, ge=10, description="Keep a seeded, stratified subset of this many test images."
    )
    seed: int = Field(0, ge=0, description="Seed for the synthetic drawing and the subsets.")

    @model_validator(mode="after")
    def _source_settings_fit(self) -> DataParams:
        if self.source == "folder" and not self.path:
            raise FieldError(
                "data.path",
                "data.source is 'folder' but data.path is empty: set data.path to a directory "
                "or .tar.gz/.zip holding train/<class>/*",
            )
        if self.source == "fashion_mnist" and self.md5 is not None:
            raise FieldError(
                "data.md5",
                "data.md5 must be null with data.source 'fashion_mnist': its four files are "
                "checked against the official per-file checksums fixed in code",
            )
        if self.source == "fashion_mnist" and self.url and self.url.endswith(".gz"):
            raise FieldError(
                "data.url",
                f"data.url {self.url!r} names a file, but fashion_mnist needs the folder that "
                "holds its four .gz files (such as file:///usr/share/datasets/fashion-mnist/)",
            )
        return self

    def source_url(self) -> str | None:
        """data.url, or the source's official location when it is null (None: no URL used)."""
        official = {"cifar10": CIFAR10_URL, "fashion_mnist": FASHION_MNIST_URL}
        return self.url or official.get(self.source)

    def source_md5(self) -> str | None:
        """cifar10: data.md5, or the official tarball's when it is null; None otherwise."""
        return (self.md5 or CIFAR10_MD5) if self.source == "cifar10" else None


class PreprocessParams(Section):
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of train held out as val (stratified)."
    )
    test_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share carved as test when the source has none."
    )
    seed: int = Field(0, ge=0, description="Seed of the stratified splits.")


class ValidateParams(Section):
    min_rows: int = Field(100, ge=1, description="Fewest images the data set may hold.")
    max_imbalance_ratio: float = Field(
        10.0, ge=1.0, description="Largest over smallest train class count allowed."
    )


class AugmentParams(Section):
    copies: int = Field(0, ge=0, le=20, description="Augmented copies added per train image.")
    flip: bool = Field(True, description="Random horizontal flip.")
    rotation_degrees: float = Field(10.0, ge=0, le=180, description="Max rotation either way.")
    translate_fraction: float = Field(
        0.1, ge=0, le=0.5, description="Max shift as a fraction of the side."
    )
    crop_fraction: float = Field(
        0.1, ge=0, lt=1, description="Max share of the side cut away by a random crop."
    )
    color_jitter: float = Field(
        0.0, ge=0, lt=1, description="Max relative change of brightness, contrast, saturation."
    )
    cutout_fraction: float = Field(
        0.0, ge=0, le=1, description="Side of the erased square, share of the shorter side."
    )
    seed: int = Field(0, ge=0, description="Seed of the augmentation draws.")
    online_crop_flip: bool = Field(
        True, description="train: a fresh random crop and flip of every image, every epoch."
    )
    online_crop_pixels: int = Field(
        2, ge=0, le=64, description="train: border (mirrored) the online crop may shift by."
    )
    online_flip: Literal["random", "alternating"] = Field(
        "alternating",
        description="train, with online_crop_flip: flip a random half of each batch, or flip "
        "a fixed random half in even epochs and exactly the other half in odd ones.",
    )
    online_color_jitter: float = Field(
        0.0, ge=0, lt=1, description="train: color_jitter applied to every batch (0: off)."
    )
    online_cutout_fraction: float = Field(
        0.0, ge=0, le=1, description="train: cutout_fraction applied to every batch (0: off)."
    )
    mixup_alpha: float = Field(
        0.0, ge=0, le=10, description="train: MixUp with weights ~ Beta(alpha, alpha) (0: off)."
    )
    cutmix_alpha: float = Field(
        0.0, ge=0, le=10, description="train: CutMix with box area ~ Beta(alpha, alpha) (0: off)."
    )
    progressive_side: int | None = Field(
        None,
        ge=4,
        le=4096,
        description="train: the first epochs (progressive_share of them) see every image "
        "area-downscaled to this shorter side, for their lower cost; null: full size throughout. "
        "Models that pool globally only (fast_cnn, resnet_small).",
    )
    progressive_share: float = Field(
        0.625,
        ge=0,
        lt=1,
        description="train, with progressive_side: share of train.epochs (rounded down) at the "
        "smaller side; the rest train at full size.",
    )
