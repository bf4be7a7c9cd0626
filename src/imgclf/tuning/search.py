"""Hyper-parameter search: the Optuna study, trials as `dvc exp run -S` overrides, results."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError
from imgclf.params import TuneDimension, TuneParams
from imgclf.tuning.pruning import PrunerSettings

# Hydra, which parses DVC's -S values, reads these bare words as bool/null/number, not text.
_HYDRA_WORDS = {"true", "false", "null", "inf", "nan"}
_BARE_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
# Study names become part of DVC experiment names, which are git ref names.
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
# Floats are cut to 4 significant digits before a trial runs, so the printed line is short
# and still exactly what the trial ran.
SIGNIFICANT_DIGITS = 4
# Between a key and the option it belongs to in Optuna's parameter names (optimizer.lr|adamw):
# neither params keys nor -S values hold it.
OPTION_SEPARATOR = "|"


class TuneError(ImgclfError, RuntimeError):
    """A trial's result cannot be read, or the study cannot go on."""


def create_study(study_name: str, storage: Any, seed: int, pruner: Any = None) -> Any:
    """A maximising Optuna study (resumed when storage already holds study_name)."""
    return join_study(study_name, storage, seed, pruner)[0]


def directions(objectives: str) -> list[str]:
    """Optuna's directions for tune.objectives: the metric up, and train seconds down."""
    return ["maximize", "minimize"] if objectives == "accuracy_and_time" else ["maximize"]


def join_study(
    study_name: str, storage: Any, seed: int, pruner: Any = None, objectives: str = "accuracy"
) -> tuple[Any, bool]:
    """The study and whether this call created it (False: it existed, maybe another worker's).

    Optuna's storage decides which of several workers starting at once creates the study, so
    exactly one of them sets up what the study shares, such as its MLflow run.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # imgclf prints its own trial lines
    options = {
        "study_name": study_name,
        "storage": storage,
        "sampler": optuna.samplers.TPESampler(seed=seed),
        "pruner": pruner,
    }
    wanted = directions(objectives)
    try:
        return optuna.create_study(**options, directions=wanted), True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**options)
    if len(study.directions) != len(wanted):
        kind = {1: "accuracy", 2: "accuracy_and_time"}.get(len(study.directions), "?")
        raise TuneError(
            f"study {study_name!r} was created with tune.objectives {kind}, not {objectives}: "
            f"set tune.objectives back to {kind}, or start a new study with another --study"
        )
    return study, False


def load_existing_study(study_name: str, storage: Any, shown_storage: str) -> Any:
    """A study that must exist already (for --report); a missing one lists those that do."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if study_name not in names:
        raise TuneError(
            f"no study {study_name!r} in {shown_storage}; studies there: "
            f"{', '.join(sorted(names)) or 'none'} (pass --storage to read another storage)"
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def pruner_settings(settings: TuneParams) -> PrunerSettings:
    """The pruner part of the tune section, as the train stage rebuilds it."""
    return PrunerSettings(
        name=settings.pruner,
        warmup_epochs=settings.pruner_warmup_epochs,
        startup_trials=settings.pruner_startup_trials,
        reduction_factor=settings.pruner_reduction_factor,
    )


def study_params(settings: TuneParams) -> dict[str, Any]:
    """The study's budget, metric, pruner and search space, flattened for its MLflow run."""
    space = {
        key: dimension.model_dump(exclude_none=True) for key, dimension in settings.space.items()
    }
    return {
        "tune.trials": settings.trials,
        "tune.timeout_minutes": settings.timeout_minutes,
        "tune.metric": settings.metric,
        "tune.seed": settings.seed,
        "tune.pruner": settings.pruner,
        "tune.pruner_warmup_epochs": settings.pruner_warmup_epochs,
        "tune.pruner_startup_trials": settings.pruner_startup_trials,
        "tune.pruner_reduction_factor": settings.pruner_reduction_factor,
        "tune.warm_start": settings.warm_start,
        "tune.space": json.dumps(space),
    }


def suggest_params(trial: Any, space: Mapping[str, TuneDimension]) -> dict[str, Any]:
    """Draw one value per key of the search space from an Optuna trial, define-by-run: a key
    with options first, then only the chosen option's own keys."""
    values: dict[str, Any] = {}
    for key, dimension in space.items():
        values[key] = _suggest(trial, key, key, dimension)
        for inner_key, inner in dimension.option_space(values[key]).items():
            name = parameter_name(inner_key, values[key])
            values[inner_key] = _suggest(trial, name, inner_key, inner)
    return values


def with_other_options_reset(
    values: Mapping[str, Any], space: Mapping[str, TuneDimension], base: Mapping[str, Any]
) -> dict[str, Any]:
    """values plus each key of the options not chosen at its value in base (params.yaml when
    the study was created): what the trial runs and records.

    A trial in the workspace starts from the last trial's params.yaml, where such a key may
    hold another option's draw (an adamw trial's optimizer.weight_decay would decay the next
    sgd trial, and its line would not say so).
    """
    resets = {
        key: base[key]
        for dimension in space.values()
        for option_space in dimension.option_spaces().values()
        for key in option_space
        if key not in values and key in base
    }
    return {**values, **resets}


def parameter_name(key: str, option: Any) -> str:
    """Optuna's name for a key tuned inside an option: optimizer.lr|adamw.

    Optuna holds one distribution per name for the whole study, and each option has its own
    range for the key; the trial's overrides and its MLflow run use the key itself.
    """
    return f"{key}{OPTION_SEPARATOR}{option}"


def _suggest(trial: Any, name: str, key: str, dimension: TuneDimension) -> Any:
    """One value of dimension, drawn as Optuna parameter `name`; `key` decides its type."""
    if dimension.low is None:
        return trial.suggest_categorical(name, list(dimension.values()))
    if TuneParams.is_integer(key):
        step = int(dimension.step or 1)
        return trial.suggest_int(
            name, int(dimension.low), int(dimension.high), step=step, log=dimension.log
        )
    drawn = trial.suggest_float(
        name, dimension.low, dimension.high, step=dimension.step, log=dimension.log
    )
    return drawn if dimension.step else round_significant(drawn)


def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """value cut to a few significant digits: 0.0023456789 -> 0.002346."""
    return float(f"{value:.{digits}g}")


def format_value(value: Any) -> str:
    """A value as DVC's -S (Hydra's override grammar) reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # repr round-trips floats: 1e-05, 0.002346
    text = str(value)
    if _BARE_STRING.fullmatch(text) and text.lower() not in _HYDRA_WORDS:
        return text
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def override_args(values: Mapping[str, Any]) -> list[str]:
    """["-S", "optimizer.lr=0.002", ...] for `dvc exp run`."""
    args: list[str] = []
    for key, value in values.items():
        args += ["-S", f"{key}={format_value(value)}"]
    return args


def reproduce_command(values: Mapping[str, Any]) -> str:
    """The shell line that re-runs a trial: dvc exp run -S key=value ..."""
    return shlex.join(["dvc", "exp", "run", *override_args(values)])


def experiment_name(study_name: str, trial_number: int) -> str:
    """The DVC experiment (and MLflow run) name of one trial."""
    return f"tune-{study_name}-{trial_number}"


@dataclass(frozen=True)
class TrialResult:
    """What a trial's train.json says: its objective, MLflow run and whether it was pruned."""

    value: float
    run_id: str | None
    pruned: bool = False
    epochs: int | None = None
    seconds: float | None = None  # train_seconds: the time objective


def parse_result(text: str, source: str, metric: str) -> TrialResult:
    """The trial's result from train.json's text, failing on a missing objective."""
    try:
        metrics = json.loads(text)
    except ValueError as error:
        raise TuneError(f"cannot read {source}: {error}") from error
    value = metrics.get(metric)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise TuneError(f"{source} has no finite {metric!r} (got {value!r})")
    seconds = metrics.get("train_seconds")
    return TrialResult(
        float(value), metrics.get("mlflow_run_id"), metrics.get("pruned") is True,
        metrics.get("epochs"), float(seconds) if isinstance(seconds, int | float) else None,
    )  # fmt: skip


def read_result(metrics_path: Path, metric: str) -> tuple[float, str | None]:
    """The trial's objective and MLflow run id from train.json, failing on a missing value."""
    try:
        text = metrics_path.read_text(encoding="utf-8")
    except OSError as error:
        raise TuneError(f"cannot read {metrics_path}: {error}") from error
    result = parse_result(text, str(metrics_path), metric)
    return result.value, result.run_id


def read_experiment_result(
    project_root: Path, exp_name: str, metrics_path: Path, metric: str
) -> TrialResult:
    """The result of DVC experiment exp_name, from its commit (in the workspace or not)."""
    import dvc.api

    source = f"{metrics_path} of experiment {exp_name}"
    try:
        text = dvc.api.read(str(metrics_path), repo=str(project_root), rev=exp_name)
    except Exception as error:  # no such experiment, or its metrics are not in the cache
        raise TuneError(f"cannot read {source}: {error}") from error
    return parse_result(text, source, metric)


def find_run_id(client: Any, experiment_id: str, exp_name: str) -> str | None:
    """The MLflow run that DVC experiment exp_name trained (None when none was recorded)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dvc.exp_name` = '{exp_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
