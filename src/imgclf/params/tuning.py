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


# The search space `imgclf tune` uses when params.yaml names none (params.yaml shows it). Each
# optimizer brings its own ranges (docs/guide/tuning.md says which measurement set each).
TUNE_SPACE: dict[str, dict[str, Any]] = {
    "optimizer.name": {
        "options": {
            "sgd": {  # the fast recipe; no start: its first trial is params.yaml's values
                "optimizer.lr": {"low": 0.1, "high": 0.75, "log": True},
                "optimizer.momentum": {"low": 0.7, "high": 0.95},
            },
            "adamw": {  # started at the ablation's Adam row (3e-3, no decoupled decay)
                "optimizer.lr": {"low": 3.0e-4, "high": 1.0e-2, "log": True, "start": 3.0e-3},
                "optimizer.weight_decay": {"low": 0.0, "high": 0.1, "start": 0.0},
            },
            "muon": {  # no start: params.yaml's muon settings are the speed record's
                "optimizer.lr": {"low": 0.1, "high": 0.75, "log": True},
                "optimizer.muon_lr_ratio": {"low": 0.2, "high": 2.0, "log": True},
                "optimizer.muon_momentum": {"low": 0.5, "high": 0.95},
            },
        }
    },
    "reg.l2": {"low": 1.0e-4, "high": 2.0e-3, "log": True},
    "loss.label_smoothing": {"low": 0.0, "high": 0.3},
}

# A value a tuned key may take: what YAML writes bare.
Scalar = str | int | float | bool


class TuneDimension(Section):
    """One tuned key: a range (low, high, optionally log or step), a list of choices, or
    options: choices that each tune keys of their own, drawn only when that choice is."""

    low: int | float | None = Field(None, description="Smallest value of a numeric range.")
    high: int | float | None = Field(None, description="Largest value of a numeric range.")
    log: bool = Field(False, description="Sample the range on a log scale (low > 0).")
    step: int | float | None = Field(None, gt=0, description="Spacing of a discrete range.")
    choices: tuple[Scalar, ...] | None = Field(
        None, min_length=1, description="Values to choose from (instead of a range)."
    )
    options: dict[Scalar, dict[str, TuneDimension] | None] | None = Field(
        None,
        min_length=1,
        description="Values to choose from, each -> the keys tuned only when it is chosen.",
    )
    start: Scalar | None = Field(
        None,
        description="In an option: the key's value in the option's first (enqueued) trial "
        "(default: params.yaml's).",
    )

    @field_validator("choices", mode="before")
    @classmethod
    def _choices_are_a_list(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError(
                "choices takes a list; choices that tune keys of their own are written "
                "options: {value: {key: range}}"
            )
        return value

    @model_validator(mode="after")
    def _range_or_choices(self) -> TuneDimension:
        if self.choices is not None and self.options is not None:
            raise ValueError("give either choices or options, not both")
        if self.choices is not None or self.options is not None:
            if (self.low, self.high, self.step) != (None, None, None) or self.log:
                raise ValueError("give either choices or low/high (with log or step), not both")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high (a range), choices or options")
        elif self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        elif self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log needs low > 0 and no step")
        if self.start is not None and not self.contains(self.start):
            raise ValueError(f"start ({self.start!r}) is outside this key's range or choices")
        return self

    def values(self) -> tuple:
        """The choices or the options' values; () for a range."""
        return tuple(self.options or self.choices or ())

    def option_spaces(self) -> dict[Any, dict[str, TuneDimension]]:
        """Each option -> the keys it tunes; {} without options."""
        return {option: keys or {} for option, keys in (self.options or {}).items()}

    def option_space(self, option: Any) -> dict[str, TuneDimension]:
        """The keys tuned when this key takes `option` ({} when none)."""
        return self.option_spaces().get(option, {})

    def contains(self, value: Any) -> bool:
        """Whether value is one this key may take: a choice, or on the range (and its step)."""
        if self.low is None:
            # 1 == True in Python, but a bool choice and a number are different values.
            return any(
                choice == value and isinstance(choice, bool) == isinstance(value, bool)
                for choice in self.values()
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not self.low <= value <= self.high:
            return False
        steps = 0.0 if self.step is None else (value - self.low) / self.step
        return abs(steps - round(steps)) < 1e-8  # Optuna's own tolerance for a stepped value

    def candidates(self) -> tuple:
        """The values checked against the params schema: every choice (or both ends of the
        range) and the start."""
        ends = self.values() if self.low is None else (self.low, self.high)
        return ends if self.start is None else (*ends, self.start)


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
    warm_start: bool = Field(
        True,
        description="A new study's first trials are enqueued, not sampled: params.yaml's "
        "values, then each option of a choice at its start.",
    )
    space: dict[str, TuneDimension] = Field(
        default_factory=lambda: {key: TuneDimension(**value) for key, value in TUNE_SPACE.items()},
        description="Dotted params key (optimizer.lr) -> its range or choices (a mapping of "
        "choices: each -> the keys tuned only when it is chosen).",
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

    def space_keys(self) -> tuple[str, ...]:
        """Every key the space tunes: its own and those of its choices' options."""
        keys = [key for key in self.space]
        for dimension in self.space.values():
            for option_space in dimension.option_spaces().values():
                keys += [key for key in option_space if key not in keys]
        return tuple(keys)

    @field_validator("space")
    @classmethod
    def _space_names_tunable_keys(cls, space: dict[str, TuneDimension]) -> dict[str, TuneDimension]:
        owners: dict[str, str] = {}  # a key tuned inside options -> the choice that holds them
        for key, dimension in space.items():
            _check_dimension(f"key {key!r}", key, dimension)
            if dimension.start is not None:
                raise ValueError(
                    f"key {key!r}: start is read only inside a choice's option (the first "
                    "trial takes params.yaml's value of every other key)"
                )
            for option, option_space in dimension.option_spaces().items():
                for inner_key, inner in option_space.items():
                    label = f"key {inner_key!r} in option {option!r} of {key}"
                    _check_dimension(label, inner_key, inner)
                    _check_place(label, inner_key, inner, key, (space, owners))
        return space


def _check_dimension(label: str, key: str, dimension: TuneDimension) -> None:
    """The key names a tunable params key, and every value the dimension holds suits it."""
    try:
        model, name = TuneParams.field_of(key)
    except ValueError:
        raise ValueError(f"{label} is not a params key (such as reg.l2)") from None
    if key.partition(".")[0] not in TUNABLE_SECTIONS:
        raise ValueError(
            f"{label} cannot be tuned: only keys under "
            f"{', '.join(TUNABLE_SECTIONS)} may vary between trials"
        )
    kind = model.model_fields[name].annotation
    if dimension.low is not None and kind not in (int, float):
        raise ValueError(f"{label} is not a number: give it choices")
    if kind is int and dimension.step is not None and dimension.step % 1:
        raise ValueError(f"{label} holds whole numbers: step must be one too")
    for value in dimension.candidates():
        try:
            model.model_validate({name: value})
        except ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise ValueError(f"{label}: {value!r} is not allowed ({reason})") from None


def _check_place(
    label: str,
    key: str,
    dimension: TuneDimension,
    choice_key: str,
    seen: tuple[dict[str, TuneDimension], dict[str, str]],
) -> None:
    """A key inside an option is tuned nowhere else: not at the top of the space, not under
    another choice (its value would then depend on two draws), not as a choice with options.

    seen is (the whole space, each key met inside options so far -> its choice key).
    """
    space, owners = seen
    if dimension.options is not None:
        raise ValueError(f"{label}: a choice with options cannot sit inside another's option")
    if key in space:
        raise ValueError(f"{label} is also tuned at the top of tune.space: tune it in one place")
    owner = owners.setdefault(key, choice_key)
    if owner != choice_key:
        raise ValueError(f"{label} is also tuned in the options of {owner}: tune it in one place")
