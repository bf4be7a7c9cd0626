"""One dimension of tune.space (a range, choices, or options with keys of their own) and the
space `imgclf tune` searches when params.yaml names none."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from imgclf.params.base import Section

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
