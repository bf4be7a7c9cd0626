"""The tune section: the study's budget, pruner, storage, screening, confirmation and
objectives, and the search space it checks against the other sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from imgclf.params.base import Section
from imgclf.params.data import AugmentParams, DataParams, PreprocessParams, ValidateParams
from imgclf.params.recipe import LossParams, ModelParams, OptimizerParams, RegParams, TrainParams
from imgclf.params.reporting import EvaluateParams, MlflowParams, PromoteParams
from imgclf.params.tune_space import TUNE_SPACE, Scalar, TuneDimension

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
    screen: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Dotted key -> value every trial of the study runs with, to screen cheaply "
        "(train.epochs: 3); confirmation runs train with params.yaml's values.",
    )
    confirm: int = Field(
        0,
        ge=0,
        le=20,
        description="After the study, train its best this many settings in full on each of "
        "confirm_seeds and choose on the mean (0: choose the study's best trial).",
    )
    confirm_seeds: tuple[int, ...] = Field(
        (0, 1),
        min_length=2,
        description="train.seed of each confirmation run (2 or more, distinct).",
    )
    objectives: Literal["accuracy", "accuracy_and_time"] = Field(
        "accuracy",
        description="accuracy: maximise metric; accuracy_and_time: also minimise train_seconds "
        "(Optuna multi-objective) and report the Pareto front.",
    )
    time_budget_seconds: float | None = Field(
        None,
        gt=0,
        description="accuracy_and_time: the chosen point is the most accurate of the front "
        "that trains within this many seconds (null: the most accurate).",
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

    @field_validator("confirm_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(seeds)) != len(seeds) or any(seed < 0 for seed in seeds):
            raise ValueError(f"give distinct seeds of 0 or more, got {list(seeds)}")
        return seeds

    @field_validator("screen")
    @classmethod
    def _screen_names_tunable_keys(cls, screen: dict[str, Any]) -> dict[str, Any]:
        for key, value in screen.items():
            _check_dimension(f"tune.screen key {key!r}", key, TuneDimension(choices=(value,)))
        return screen

    @model_validator(mode="after")
    def _modes_compose(self) -> TuneParams:
        shared = sorted(set(self.screen) & set(self.space_keys()))
        if shared:
            raise ValueError(
                f"tune.screen sets {', '.join(shared)}, which tune.space tunes: a trial cannot "
                "run with both values; drop it from one of them"
            )
        if self.objectives == "accuracy_and_time" and self.pruner != "none":
            raise ValueError(
                f"tune.objectives accuracy_and_time cannot prune (Optuna prunes single-objective "
                f"studies only): set tune.pruner to none, not {self.pruner}"
            )
        if self.time_budget_seconds is not None and self.objectives == "accuracy":
            raise ValueError(
                "tune.time_budget_seconds chooses a point of the accuracy_and_time front: set "
                "tune.objectives to accuracy_and_time, or time_budget_seconds to null"
            )
        if "train.seed" in self.space_keys() and self.confirm:
            raise ValueError(
                "tune.confirm trains on tune.confirm_seeds, which set train.seed: do not also "
                "tune train.seed"
            )
        return self

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
