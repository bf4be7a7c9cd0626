"""Hyper-parameter search: the Optuna study, trials as `dvc exp run -S` overrides, results."""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imgclf.errors import ImgclfError
from imgclf.params import TuneDimension, TuneParams

# Hydra, which parses DVC's -S values, reads these bare words as bool/null/number, not text.
_HYDRA_WORDS = {"true", "false", "null", "inf", "nan"}
_BARE_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
# Study names become part of DVC experiment names, which are git ref names.
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
# Floats are cut to 4 significant digits before a trial runs, so the printed line is short
# and still exactly what the trial ran.
SIGNIFICANT_DIGITS = 4


class TuneError(ImgclfError, RuntimeError):
    """A trial's result cannot be read, or the study cannot go on."""


def create_study(study_name: str, storage: str | None, seed: int) -> Any:
    """A maximising Optuna study (resumed when storage already holds study_name)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # imgclf prints its own trial lines
    return optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed),
        direction="maximize",
        load_if_exists=True,
    )


def study_params(settings: TuneParams) -> dict[str, Any]:
    """The study's budget, metric and search space, flattened for its MLflow run."""
    space = {
        key: dimension.model_dump(exclude_none=True) for key, dimension in settings.space.items()
    }
    return {
        "tune.trials": settings.trials,
        "tune.timeout_minutes": settings.timeout_minutes,
        "tune.metric": settings.metric,
        "tune.seed": settings.seed,
        "tune.space": json.dumps(space),
    }


def suggest_params(trial: Any, space: Mapping[str, TuneDimension]) -> dict[str, Any]:
    """Draw one value per key of the search space from an Optuna trial."""
    values: dict[str, Any] = {}
    for key, dimension in space.items():
        if dimension.choices is not None:
            values[key] = trial.suggest_categorical(key, list(dimension.choices))
        elif TuneParams.is_integer(key):
            step = int(dimension.step or 1)
            values[key] = trial.suggest_int(
                key, int(dimension.low), int(dimension.high), step=step, log=dimension.log
            )
        else:
            drawn = trial.suggest_float(
                key, dimension.low, dimension.high, step=dimension.step, log=dimension.log
            )
            values[key] = drawn if dimension.step else round_significant(drawn)
    return values


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


def read_result(metrics_path: Path, metric: str) -> tuple[float, str | None]:
    """The trial's objective and MLflow run id from train.json, failing on a missing value."""
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TuneError(f"cannot read {metrics_path}: {error}") from error
    value = metrics.get(metric)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise TuneError(f"{metrics_path} has no finite {metric!r} (got {value!r})")
    return float(value), metrics.get("mlflow_run_id")


def find_run_id(client: Any, experiment_id: str, exp_name: str) -> str | None:
    """The MLflow run that DVC experiment exp_name trained (None when none was recorded)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dvc.exp_name` = '{exp_name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None
