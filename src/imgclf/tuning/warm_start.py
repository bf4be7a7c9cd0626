"""A new study's first trials: the recipe in params.yaml, then each option at its start.

They are enqueued (Optuna's enqueue_trial), not sampled, so a study's best is never worse than
the recipe the user started from (within seed noise), and each optimizer of the space is tried
once where it is known to work before TPE draws around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imgclf.params import Params, TuneDimension, TuneParams
from imgclf.tuning.search import parameter_name

# The user attribute that marks an enqueued trial, with its label as the value.
ATTRIBUTE = "warm_start"
RECIPE = "the recipe (params.yaml)"


@dataclass(frozen=True)
class FirstTrial:
    """One enqueued trial: what it is (for the printed line) and its values by Optuna name."""

    label: str
    params: dict[str, Any]


def recipe_values(params: Params, settings: TuneParams) -> dict[str, Any]:
    """params.yaml's value of every key the space tunes (the options' keys included) and of
    every key tune.screen sets: what confirmation runs set the screened keys back to."""
    values = {}
    for key in (*settings.space_keys(), *settings.screen):
        section, _, name = key.partition(".")
        values[key] = getattr(getattr(params, section), name)
    return values


def first_trials(
    space: Mapping[str, TuneDimension], recipe: Mapping[str, Any]
) -> tuple[list[FirstTrial], list[str]]:
    """The recipe, then each option of every key with options at its start (or the recipe's
    value), without repeats; and a note for each one left out because it lies outside the
    space."""
    trials: list[FirstTrial] = []
    notes: list[str] = []
    picks: list[tuple[str, Any] | None] = [None]  # None: the recipe's own choices
    for key, dimension in space.items():
        picks += [(key, option) for option in dimension.option_spaces()]
    for pick in picks:
        label = RECIPE if pick is None else f"{pick[0]}={pick[1]}"
        values, outside = _trial_values(space, recipe, pick)
        if outside:
            notes.append(f"{label} is not enqueued: {outside}")
        elif all(values != trial.params for trial in trials):
            trials.append(FirstTrial(label, values))
    return trials, notes


def _trial_values(
    space: Mapping[str, TuneDimension], recipe: Mapping[str, Any], pick: tuple[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """The recipe with pick's option chosen and its keys at their start, by Optuna name; or
    why it lies outside the space."""
    values: dict[str, Any] = {}
    for key, dimension in space.items():
        picked = pick is not None and pick[0] == key
        value = pick[1] if picked else recipe[key]
        if not dimension.contains(value):
            return {}, f"{key} is {value!r} in params.yaml, outside tune.space"
        values[key] = value
        for inner_key, inner in dimension.option_space(value).items():
            inner_value = inner.start if picked and inner.start is not None else recipe[inner_key]
            if not inner.contains(inner_value):
                return {}, (
                    f"{inner_key} is {inner_value!r} in params.yaml, outside option "
                    f"{value!r}'s range (give it a start)"
                )
            values[parameter_name(inner_key, value)] = inner_value
    return values, ""


def enqueue(study: Any, trials: list[FirstTrial], budget: int) -> list[FirstTrial]:
    """Enqueue the first trials the study's budget holds; returns those enqueued.

    Call it only for a study this session created: a continued or joined study has them
    already, and Optuna would queue them again.
    """
    enqueued = trials[:budget]
    for trial in enqueued:
        study.enqueue_trial(trial.params, user_attrs={ATTRIBUTE: trial.label})
    return enqueued
