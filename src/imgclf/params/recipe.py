"""The training recipe: model, loss, regularization, optimizer and the training loop."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from imgclf.params.base import (
    ACTIVATION_NAMES,
    ARCHITECTURE_NAMES,
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    FieldError,
    Section,
)


class ModelParams(Section):
    arch: Literal[ARCHITECTURE_NAMES] = Field(  # type: ignore[valid-type]
        "fast_cnn", description="Architecture name."
    )
    width: int = Field(16, ge=4, le=512, description="resnet_small: channels of the first stage.")
    widths: tuple[int, ...] = Field(
        (32, 64, 192),
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


class LossParams(Section):
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


class RegParams(Section):
    l1: float = Field(0.0, ge=0, le=1, description="L1 penalty on kernels.")
    l2: float = Field(0.00066, ge=0, le=1, description="L2 penalty on kernels.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")
    spatial_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout of whole feature maps after each conv block."
    )
    max_norm: float | None = Field(
        None, ge=0, description="Cap on each unit's incoming kernel norm (null or 0: off)."
    )


class OptimizerParams(Section):
    name: Literal[OPTIMIZER_NAMES] = Field("sgd", description="Optimizer name.")  # type: ignore[valid-type]
    lr: float = Field(0.375, gt=0, le=10, description="Peak learning rate.")
    momentum: float = Field(
        0.85, ge=0, lt=1, description="sgd/rmsprop momentum; muon: of its SGD part."
    )
    nesterov: bool = Field(True, description="sgd and muon: Nesterov momentum.")
    muon_lr_ratio: float = Field(
        0.64,
        gt=0,
        le=100,
        description="muon: rate of the orthogonalised conv-kernel steps, as a multiple of lr.",
    )
    muon_momentum: float = Field(
        0.6, ge=0, lt=1, description="muon: momentum of the orthogonalised conv-kernel steps."
    )
    weight_decay: float = Field(0.0, ge=0, le=1, description="Decoupled weight decay.")
    schedule: Literal[SCHEDULE_NAMES] = Field(  # type: ignore[valid-type]
        "linear", description="Learning-rate schedule."
    )
    warmup_epochs: float = Field(1.8, ge=0, description="Linear warm-up length in epochs.")
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
        64.0, gt=0, le=1000, description="Learning-rate factor for BatchNorm shifts (sgd, muon)."
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


class TrainParams(Section):
    epochs: int = Field(8, ge=1, le=10_000, description="Passes over the training set.")
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
    steps_per_execution: int = Field(
        1,
        ge=1,
        le=1000,
        description="Train steps per call of Keras' train function (callbacks once per call).",
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
