"""The tune section: the study's budget, pruner and storage, and the search space it checks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from imgclf.params.base import Section
from imgclf.params.data import AugmentParams, DataParams, PreprocessParams, ValidateParams
from imgclf.params.recipe import LossParams, ModelParams, OptimizerParams, RegParams, TrainParams
from imgclf.params.reporting import EvaluateParams, MlflowParams, PromoteParams

# params.yaml's sections other than tune, by name, as `Params` (loading.py) holds them: a tuned
# key is checked against its section alone (test_params checks that the two agree).
OTHER_SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataParams,
    "preprocess": PreprocessParams,
    "validate": ValidateParams,
    "augment": AugmentParams,
    "model": ModelParams,
    "loss": LossParams,
    "reg": RegParams,
    "optimizer": OptimizerParams,
    "train": TrainParams,
    "mlflow": MlflowParams,
    "evaluate": EvaluateParams,
    "promote": PromoteParams,
}

# Sections a tuning trial may change: the training recipe. data, preprocess and validate would
# change the val split the trials are compared on; mlflow, promote and tune are bookkeeping.
TUNABLE_SECTIONS = ("augment", "model", "loss", "reg", "optimizer", "train")


# The search space `imgclf tune` uses when params.yaml names none (params.yaml shows it).
TUNE_SPACE: dict[str, dict[str, Any]] = {
    "optimizer.lr": {"low": 0.1, "high": 0.75, "log": True},
    "optimizer.momentum": {"low": 0.7, "high": 0.95},
    "reg.l2": {"low": 1.0e-4, "high": 2.0e-3, "log": True},
    "loss.label_smoothing": {"low": 0.0, "high": 0.3},
}


class TuneDimension(Section):
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


class TuneParams(Section):
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
        section, _, name = key.partition(".")
        model = {**OTHER_SECTIONS, "tune": TuneParams}.get(section)
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
