"""Typed, strict view of params.yaml: one frozen pydantic model per section."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# The official locations and checksums live with their readers; params resolves a null to them.
from imgclf.data.cifar10 import CIFAR10_MD5, CIFAR10_URL
from imgclf.data.idx import FASHION_MNIST_URL
from imgclf.errors import ImgclfError

# Names the registries in imgclf.model accept; tests/unit/test_params.py keeps them in step.
ARCHITECTURE_NAMES = ("seed_cnn", "resnet_small", "fast_cnn")
ACTIVATION_NAMES = ("gelu", "relu", "silu", "elu")
LOSS_NAMES = (
    "categorical_crossentropy",
    "focal",
    "class_weighted_crossentropy",
    "poly1",
    "symmetric_crossentropy",
    "squared_hinge",
)
OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "nadam", "lion")
SCHEDULE_NAMES = ("constant", "cosine", "exponential", "step", "one_cycle", "linear")
# Losses whose targets are margins or the labels' logarithm, where smoothing the labels would
# change what the loss means rather than soften it.
LOSSES_WITHOUT_SMOOTHING = ("symmetric_crossentropy", "squared_hinge")


class ParamsError(ImgclfError, ValueError):
    """params.yaml is missing, unreadable or holds a value outside what is allowed."""


class FieldError(ValueError):
    """A rule across keys broken, naming the dotted key to change (pydantic has no location
    for a model-level rule, and would print the error without one)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class DataParams(_Section):
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


class PreprocessParams(_Section):
    val_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share of train held out as val (stratified)."
    )
    test_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Share carved as test when the source has none."
    )
    seed: int = Field(0, ge=0, description="Seed of the stratified splits.")


class ValidateParams(_Section):
    min_rows: int = Field(100, ge=1, description="Fewest images the data set may hold.")
    max_imbalance_ratio: float = Field(
        10.0, ge=1.0, description="Largest over smallest train class count allowed."
    )


class AugmentParams(_Section):
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


class ModelParams(_Section):
    arch: Literal[ARCHITECTURE_NAMES] = Field(  # type: ignore[valid-type]
        "fast_cnn", description="Architecture name."
    )
    width: int = Field(16, ge=4, le=512, description="resnet_small: channels of the first stage.")
    widths: tuple[int, ...] = Field(
        (32, 128, 128),
        min_length=1,
        max_length=6,
        description="fast_cnn: channels of each group.",
    )
    activation: Literal[ACTIVATION_NAMES] = Field(  # type: ignore[valid-type]
        "relu", description="fast_cnn: activation after each BatchNorm."
    )
    whitening: bool = Field(
        True, description="fast_cnn: a frozen patch-whitening first conv from the train images."
    )
    whitening_patch: int = Field(
        2, ge=1, le=5, description="fast_cnn: side of the patches the first conv whitens."
    )
    dirac_init: bool = Field(
        True, description="fast_cnn: each conv starts as the identity on its first channels."
    )
    batchnorm_momentum: float = Field(
        0.4, ge=0, lt=1, description="fast_cnn: weight of the old BatchNorm running statistics."
    )
    batchnorm_epsilon: float = Field(
        1e-5, gt=0, le=0.1, description="fast_cnn: BatchNorm's variance epsilon."
    )
    batchnorm_scale: bool = Field(
        False, description="fast_cnn: train BatchNorm's scale (false: frozen at 1)."
    )
    logit_scale: float = Field(
        0.111, gt=0, le=10, description="fast_cnn: logits are multiplied by this before softmax."
    )

    @field_validator("widths")
    @classmethod
    def _widths_positive(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 4 <= width <= 2048 for width in widths):
            raise ValueError(f"every width must be between 4 and 2048, got {list(widths)}")
        return widths


class LossParams(_Section):
    name: Literal[LOSS_NAMES] = Field(  # type: ignore[valid-type]
        "categorical_crossentropy", description="Loss name."
    )
    label_smoothing: float = Field(0.2, ge=0, lt=1, description="Label smoothing factor.")
    focal_gamma: float = Field(2.0, ge=0, le=10, description="focal: focusing parameter.")
    focal_alpha: float = Field(0.25, gt=0, le=1, description="focal: class balance weight.")
    poly_epsilon: float = Field(
        1.0, ge=-1, le=100, description="poly1: weight of the (1 - p_true) term added to CE."
    )
    sce_alpha: float = Field(
        0.1, ge=0, le=100, description="symmetric_crossentropy: weight of the CE term."
    )
    sce_beta: float = Field(
        1.0, ge=0, le=100, description="symmetric_crossentropy: weight of the reverse CE term."
    )
    hinge_margin: float = Field(
        1.0, gt=0, le=100, description="squared_hinge: margin between true and other logits."
    )


class RegParams(_Section):
    l1: float = Field(0.0, ge=0, le=1, description="L1 penalty on kernels.")
    l2: float = Field(0.00066, ge=0, le=1, description="L2 penalty on kernels.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")
    spatial_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout of whole feature maps after each conv block."
    )
    max_norm: float | None = Field(
        None, ge=0, description="Cap on each unit's incoming kernel norm (null or 0: off)."
    )


class OptimizerParams(_Section):
    name: Literal[OPTIMIZER_NAMES] = Field("sgd", description="Optimizer name.")  # type: ignore[valid-type]
    lr: float = Field(0.375, gt=0, le=10, description="Peak learning rate.")
    momentum: float = Field(0.85, ge=0, lt=1, description="sgd/rmsprop momentum.")
    nesterov: bool = Field(True, description="sgd: Nesterov momentum.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="Decoupled weight decay.")
    schedule: Literal[SCHEDULE_NAMES] = Field(  # type: ignore[valid-type]
        "linear", description="Learning-rate schedule."
    )
    warmup_epochs: float = Field(0.9, ge=0, description="Linear warm-up length in epochs.")
    decay_rate: float = Field(
        0.9, gt=0, le=1, description="exponential: multiplier per epoch; step: per step."
    )
    step_epochs: tuple[int, ...] | None = Field(
        None, description="step: epochs (from the start) at which the rate is multiplied."
    )
    step_every: int | None = Field(
        None, ge=1, description="step: multiply the rate every this many epochs."
    )
    one_cycle_rise_fraction: float = Field(
        0.3, gt=0, lt=1, description="one_cycle: share of the steps spent rising to lr."
    )
    warmup_start_fraction: float = Field(
        0.2, ge=0, le=1, description="Warm-up starts at this share of lr (0: from zero)."
    )
    final_lr_fraction: float = Field(
        0.07, ge=0, le=1, description="linear: the rate falls linearly to this share of lr."
    )
    batchnorm_lr_multiplier: float = Field(
        64.0, gt=0, le=1000, description="Learning-rate factor for BatchNorm shifts (sgd only)."
    )
    lookahead_every: int = Field(
        5,
        ge=0,
        description="Every this many steps, pull all weights to their running "
        "average (lookahead/EMA, BatchNorm statistics included); 0: off.",
    )
    lookahead_decay: float = Field(
        0.774,
        ge=0,
        lt=1,
        description="Weight of the average at the last step (ramped up "
        "from 0 as the cube of training progress).",
    )
    clip_norm: float | None = Field(
        None, gt=0, description="Clip gradients to this global norm (null: off)."
    )


class TrainParams(_Section):
    epochs: int = Field(4, ge=1, le=10_000, description="Passes over the training set.")
    batch_size: int = Field(256, ge=1, le=65_536, description="Images per step.")
    seed: int = Field(0, ge=0, description="Seed of weights, shuffling and dropout.")
    backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow", description="Keras backend; jax needs the jax package installed."
    )
    mixed_precision: Literal["auto", "on", "off", "bfloat16"] = Field(
        "auto",
        description="Lower-precision compute with float32 weights: on (float16), bfloat16, "
        "off; auto: float16 on a GPU, bfloat16 on a CPU with bfloat16 matrix units (AMX).",
    )
    jit_compile: Literal["auto", "on", "off"] = Field(
        "auto", description="XLA compilation of the train step; auto: on when a GPU is seen."
    )
    deterministic: bool = Field(
        True,
        description="Same params, data and seed give the same weights and metrics "
        "(TensorFlow op determinism; costs speed mainly on GPUs).",
    )
    distribution: Literal["auto", "none", "mirrored", "multi_worker"] = Field(
        "auto",
        description="tf.distribute strategy: auto (mirrored when several GPUs are seen), none, "
        "mirrored (all local GPUs), multi_worker (machines named by TF_CONFIG).",
    )
    lr_scaling: Literal["linear", "sqrt", "none"] = Field(
        "linear",
        description="How optimizer.lr grows with the replica count (batch_size is per replica).",
    )

    @field_validator("mixed_precision", "jit_compile", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        """YAML 1.1 readers take a bare on/off for a boolean, and DVC's `-S` writes them bare."""
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _distribution_fits_backend(self) -> TrainParams:
        if self.backend != "tensorflow" and self.distribution in ("mirrored", "multi_worker"):
            raise FieldError(
                "train.distribution",
                f"train.distribution {self.distribution!r} needs train.backend 'tensorflow' "
                f"(tf.distribute), not {self.backend!r}: set train.distribution to auto or none",
            )
        return self


class MlflowParams(_Section):
    experiment_name: str = Field("imgclf", min_length=1, description="MLflow experiment.")
    registered_model: str = Field("imgclf", min_length=1, description="Registry model name.")
    log_model: bool = Field(True, description="Log the model with its signature to the run.")


class EvaluateParams(_Section):
    corruption_images: int | None = Field(
        2000,
        ge=1,
        description="Most test images (seeded subset) scored under corruptions; null: all.",
    )
    mistakes_shown: int = Field(
        16, ge=1, le=100, description="Most confident wrong predictions in the gallery."
    )
    seed: int = Field(0, ge=0, description="Seed of the corruption subset and noise.")
    tta: Literal["none", "flip", "flip_translate"] = Field(
        "flip_translate",
        description="Test-time augmentation built into the saved model (train writes it): "
        "none, the mirror image too, or mirror and one-pixel shifts.",
    )


class PromoteParams(_Section):
    min_accuracy: float = Field(0.5, ge=0, le=1, description="Accuracy a champion needs.")
    min_gain: float = Field(0.0, ge=0, le=1, description="Accuracy gain over the champion.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired test.")


# Sections a tuning trial may change: the training recipe. data, preprocess and validate would
# change the val split the trials are compared on; mlflow, promote and tune are bookkeeping.
TUNABLE_SECTIONS = ("augment", "model", "loss", "reg", "optimizer", "train")


# The search space `imgclf tune` uses when params.yaml names none (params.yaml shows it).
TUNE_SPACE: dict[str, dict[str, Any]] = {
    "optimizer.name": {"choices": ("adam", "adamw", "sgd")},
    "optimizer.lr": {"low": 3.0e-4, "high": 1.0e-2, "log": True},
    "reg.l2": {"low": 0.0, "high": 1.0e-3},
    "loss.name": {"choices": ("categorical_crossentropy", "focal")},
    "loss.label_smoothing": {"low": 0.0, "high": 0.2},
}


class TuneDimension(_Section):
    """One tuned key: a range (low, high, optionally log or step) or a list of choices."""

    low: int | float | None = Field(None, description="Smallest value of a numeric range.")
    high: int | float | None = Field(None, description="Largest value of a numeric range.")
    log: bool = Field(False, description="Sample the range on a log scale (low > 0).")
    step: int | float | None = Field(None, gt=0, description="Spacing of a discrete range.")
    choices: tuple[str | int | float | bool, ...] | None = Field(
        None, min_length=1, description="Values to choose from (instead of a range)."
    )

    @model_validator(mode="after")
    def _range_or_choices(self) -> TuneDimension:
        if self.choices is not None:
            if (self.low, self.high, self.step) != (None, None, None) or self.log:
                raise ValueError("give either choices or low/high (with log or step), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (a range) or choices")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log needs low > 0 and no step")
        return self

    def candidates(self) -> tuple:
        """The values checked against the params schema: every choice, or both ends."""
        return self.choices if self.choices is not None else (self.low, self.high)


class TuneParams(_Section):
    trials: int = Field(
        20,
        ge=1,
        le=10_000,
        description="The study's budget: trials in total, over every session and worker.",
    )
    timeout_minutes: float = Field(
        120.0, gt=0, description="Wall-time budget: no trial starts after it is spent."
    )
    metric: Literal["best_val_accuracy", "final_val_accuracy"] = Field(
        "best_val_accuracy",
        description="Val metric from train.json to maximise (the test split steers no choice).",
    )
    seed: int = Field(0, ge=0, description="Seed of the Optuna sampler.")
    pruner: Literal["none", "median", "successive_halving", "hyperband"] = Field(
        "none", description="Optuna pruner that stops bad trials early (none: every trial ends)."
    )
    pruner_warmup_epochs: int = Field(
        1,
        ge=1,
        description="Epochs every trial trains before it may be pruned "
        "(median: n_warmup_steps; successive_halving, hyperband: min_resource).",
    )
    pruner_startup_trials: int = Field(
        2, ge=0, description="median: trials that end before any is pruned (n_startup_trials)."
    )
    pruner_reduction_factor: int = Field(
        3, ge=2, description="successive_halving, hyperband: 1 in this many trials goes on."
    )
    storage: str | None = Field(
        None,
        description="Optuna RDB URL of the study (postgresql://...) to share it across "
        "machines; null: mlruns/optuna.db in the checkout.",
    )
    space: dict[str, TuneDimension] = Field(
        default_factory=lambda: {key: TuneDimension(**value) for key, value in TUNE_SPACE.items()},
        description="Dotted params key (optimizer.lr) -> its range or choices.",
    )

    @staticmethod
    def field_of(key: str) -> tuple[type[BaseModel], str]:
        """The section model and field name a dotted key names; ValueError when none."""
        sections = {
            field.alias or name: field.annotation for name, field in Params.model_fields.items()
        }
        section, _, name = key.partition(".")
        model = sections.get(section)
        if model is None or name not in model.model_fields:
            raise ValueError(f"key {key!r} is not a params key (such as reg.l2)")
        return model, name

    @staticmethod
    def is_integer(key: str) -> bool:
        """Whether the key holds an int (sampled as one) rather than a float."""
        model, name = TuneParams.field_of(key)
        return model.model_fields[name].annotation is int

    @field_validator("space")
    @classmethod
    def _space_names_tunable_keys(cls, space: dict[str, TuneDimension]) -> dict[str, TuneDimension]:
        for key, dimension in space.items():
            model, name = cls.field_of(key)
            if key.partition(".")[0] not in TUNABLE_SECTIONS:
                raise ValueError(
                    f"key {key!r} cannot be tuned: only keys under "
                    f"{', '.join(TUNABLE_SECTIONS)} may vary between trials"
                )
            kind = model.model_fields[name].annotation
            if dimension.choices is None and kind not in (int, float):
                raise ValueError(f"key {key!r} is not a number: give it choices")
            if kind is int and dimension.step is not None and dimension.step % 1:
                raise ValueError(f"key {key!r} holds whole numbers: step must be one too")
            for value in dimension.candidates():
                try:
                    model.model_validate({name: value})
                except ValidationError as error:
                    reason = error.errors()[0]["msg"]
                    raise ValueError(f"key {key!r}: {value!r} is not allowed ({reason})") from None
        return space


class Params(_Section):
    data: DataParams = DataParams()
    preprocess: PreprocessParams = PreprocessParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    augment: AugmentParams = AugmentParams()
    model: ModelParams = ModelParams()
    loss: LossParams = LossParams()
    reg: RegParams = RegParams()
    optimizer: OptimizerParams = OptimizerParams()
    train: TrainParams = TrainParams()
    mlflow: MlflowParams = MlflowParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    tune: TuneParams = Field(default_factory=TuneParams)

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, protected_namespaces=()
    )

    @model_validator(mode="after")
    def _levers_fit(self) -> Params:
        _check_loss(self.loss)
        _check_schedule(self.optimizer, self.train.epochs)
        return self


# Rules across keys live here, not in their sections: `tune` checks each tuned value against
# its section alone, and a rule there would judge it against the other keys' defaults.


def _check_loss(loss: LossParams) -> None:
    if loss.name in LOSSES_WITHOUT_SMOOTHING and loss.label_smoothing > 0:
        why = {
            "symmetric_crossentropy": "its reverse term takes the log of the labels, and it "
            "is itself the remedy for noisy labels",
            "squared_hinge": "a margin loss has no probability targets to smooth",
        }[loss.name]
        raise FieldError(
            "loss.label_smoothing",
            f"loss.label_smoothing ({loss.label_smoothing}) does not combine with loss.name "
            f"{loss.name!r} ({why}): set loss.label_smoothing to 0",
        )
    if loss.name == "symmetric_crossentropy" and loss.sce_alpha == loss.sce_beta == 0:
        raise FieldError(
            "loss.sce_alpha",
            "loss.sce_alpha and loss.sce_beta are both 0, so the loss is 0: make one positive",
        )


# Warm-up longer than this share of training leaves too little of it at the peak rate to be
# what anyone meant: `-S train.epochs=1` with the shipped 1-epoch warm-up gets half an epoch.
WARMUP_MAX_SHARE = 0.5
# schedule 'step' with neither step_epochs nor step_every: step down at these shares of
# training (the classic 50%/75% milestones of ResNet-style recipes).
DEFAULT_STEP_SHARES = (0.5, 0.75)


def warmup_epochs_used(optimizer: OptimizerParams, epochs: int) -> float:
    """The warm-up a run gets: none with one_cycle (its own rise), at most half of training."""
    if optimizer.schedule == "one_cycle":
        return 0.0
    return min(optimizer.warmup_epochs, WARMUP_MAX_SHARE * epochs)


def step_epochs_used(optimizer: OptimizerParams, epochs: int) -> list[int]:
    """The epochs where schedule 'step' multiplies the rate (none for other schedules)."""
    if optimizer.schedule != "step":
        return []
    if optimizer.step_epochs is not None:
        return list(optimizer.step_epochs)
    if optimizer.step_every is not None:
        return list(range(optimizer.step_every, epochs, optimizer.step_every))
    warmup = warmup_epochs_used(optimizer, epochs)
    shares = (round(share * epochs) for share in DEFAULT_STEP_SHARES)
    return sorted({epoch for epoch in shares if warmup < epoch < epochs})


def schedule_notes(optimizer: OptimizerParams, epochs: int) -> dict[str, str]:
    """How the run adapts the schedule settings to train.epochs: MLflow tag name -> message."""
    notes: dict[str, str] = {}
    warmup = optimizer.warmup_epochs
    if optimizer.schedule == "one_cycle" and warmup > 0:
        notes["warning.warmup_ignored"] = (
            f"optimizer.warmup_epochs ({warmup}) is not used with optimizer.schedule "
            "'one_cycle', which has its own rise (optimizer.one_cycle_rise_fraction); set "
            "optimizer.warmup_epochs to 0 to silence this note"
        )
    elif warmup > WARMUP_MAX_SHARE * epochs:
        notes["warning.warmup_clipped"] = (
            f"optimizer.warmup_epochs ({warmup}) is more than half of train.epochs ({epochs}): "
            f"warming up for {warmup_epochs_used(optimizer, epochs):g} epochs instead"
        )
    if (
        optimizer.schedule == "step"
        and optimizer.step_epochs is None
        and optimizer.step_every is None
    ):
        used = step_epochs_used(optimizer, epochs)
        notes["warning.step_epochs_default"] = (
            "optimizer.schedule 'step' without optimizer.step_epochs or optimizer.step_every: "
            + (
                f"stepping down after epochs {used}"
                if used
                else f"train.epochs ({epochs}) is too short to step down, the rate stays constant"
            )
        )
    return notes


def _check_schedule(optimizer: OptimizerParams, epochs: int) -> None:
    listed, every = optimizer.step_epochs, optimizer.step_every
    warmup = warmup_epochs_used(optimizer, epochs)
    # The first epoch that may hold a step: after the warm-up, before the end.
    first = math.floor(warmup) + 1
    if listed is not None and every is not None:
        raise FieldError(
            "optimizer.step_every",
            "optimizer.step_epochs and optimizer.step_every both set: give one of them (a list "
            "of epochs or a period in epochs) and set optimizer.step_every to null",
        )
    if optimizer.schedule != "step" and (listed is not None or every is not None):
        raise FieldError(
            "optimizer.step_epochs" if listed is not None else "optimizer.step_every",
            "optimizer.step_epochs and optimizer.step_every apply to schedule 'step' only, "
            f"not {optimizer.schedule!r}: set them to null",
        )
    if listed is not None:
        example = [epoch for epoch in (first, (first + epochs) // 2) if first <= epoch < epochs]
        works = f" such as {sorted(set(example))}" if example else ""
        if not listed or any(b <= a for a, b in zip(listed, listed[1:], strict=False)):
            raise FieldError(
                "optimizer.step_epochs",
                f"optimizer.step_epochs {list(listed)} must be a non-empty, strictly increasing "
                f"list of epochs{works}",
            )
        for epoch in listed:
            if not warmup < epoch < epochs:
                raise FieldError(
                    "optimizer.step_epochs",
                    f"optimizer.step_epochs: epoch {epoch} is not after the warm-up ({warmup:g} "
                    f"epochs) and before the end (train.epochs {epochs}), so that step would "
                    f"never change the rate: use epochs from {first} to {epochs - 1}{works}",
                )
    if every is not None and not warmup < every < epochs:
        works = (
            f"set optimizer.step_every to {first}"
            if first < epochs
            else "raise train.epochs or use another optimizer.schedule"
        )
        raise FieldError(
            "optimizer.step_every",
            f"optimizer.step_every ({every}) must be after the warm-up ({warmup:g} epochs) and "
            f"below train.epochs ({epochs}), or its first step falls in the warm-up or never "
            f"comes: {works}",
        )


def _format_error(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    location = location.replace("validate_", "validate")
    # A rule across keys has no location of its own (pydantic's is the section or nothing):
    # name the key its FieldError says to change.
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldError):
        location = cause.field
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see params.yaml for the valid keys)"
    value = error.get("input")
    # A cross-field error carries the whole section as input; its message already names values.
    got = "" if error["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    return f"  {location or 'params'}: {message}{got}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a parsed params mapping, raising ParamsError that names every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        lines = [_format_error(item) for item in error.errors()]
        raise ParamsError(f"{source} is invalid:\n" + "\n".join(lines)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; the only reader of that file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the project root or pass --params") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    return parse_params(raw, str(path))


def flatten_params(params: Params) -> dict[str, Any]:
    """All params as dotted keys (reg.l2), the way DVC and MLflow name them.

    The `tune` section is left out: it configures searches, not the run it would be logged to.
    """
    flat: dict[str, Any] = {}
    for section, values in params.model_dump(by_alias=True, exclude={"tune"}).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def lever_warnings(params: Params) -> dict[str, str]:
    """Settings that are allowed but probably unintended: MLflow tag name -> message."""
    warnings: dict[str, str] = {}
    if params.reg.l2 > 0 and params.optimizer.weight_decay > 0:
        warnings["warning.l2_with_weight_decay"] = (
            f"reg.l2 ({params.reg.l2}) and optimizer.weight_decay "
            f"({params.optimizer.weight_decay}) both shrink the weights; with adaptive "
            "optimizers the L2 penalty is rescaled per weight while the decoupled decay is not, "
            "so the two interact: usually keep one and set the other to 0"
        )
    if params.optimizer.nesterov and params.optimizer.name != "sgd":
        warnings["warning.nesterov_ignored"] = (
            f"optimizer.nesterov is true but optimizer.name is {params.optimizer.name!r}: only "
            "sgd reads it, so it has no effect here (nadam is Adam with Nesterov momentum)"
        )
    if params.optimizer.batchnorm_lr_multiplier != 1.0 and params.optimizer.name != "sgd":
        warnings["warning.batchnorm_lr_multiplier_ignored"] = (
            f"optimizer.batchnorm_lr_multiplier ({params.optimizer.batchnorm_lr_multiplier:g}) "
            f"applies to sgd only, not {params.optimizer.name!r} (an adaptive optimizer rescales "
            "each gradient itself): it has no effect here; set it to 1 to silence this note"
        )
    warnings.update(schedule_notes(params.optimizer, params.train.epochs))
    return warnings
