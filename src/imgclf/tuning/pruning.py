"""Early stopping of tuning trials: Optuna's pruners and the train stage's end of a trial.

`imgclf tune` hands each trial's train stage a link (the IMGCLF_TUNE_TRIAL environment
variable, which `dvc exp run` passes on to the stage): the study's storage, its name, the
trial's number and the pruner. The train stage reports each epoch's validation accuracy to that
trial and stops when the pruner says so.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from imgclf.errors import ImgclfError, first_line

TRIAL_VARIABLE = "IMGCLF_TUNE_TRIAL"
PRUNER_NAMES = ("none", "median", "successive_halving", "hyperband")


class PruningError(ImgclfError, RuntimeError):
    """The trial a train stage was started for cannot be reached."""


@dataclass(frozen=True)
class PrunerSettings:
    """tune.pruner and its knobs, as both the tune command and the train stage build it."""

    name: str = "none"
    warmup_epochs: int = 1
    startup_trials: int = 2
    reduction_factor: int = 3


def build_pruner(settings: PrunerSettings) -> Any:
    """Optuna's pruner for tune.pruner; an unknown name lists the valid ones."""
    import optuna

    builders = {
        "none": optuna.pruners.NopPruner,
        # The earliest a trial can be pruned is after warmup_epochs epochs (steps are epochs).
        "median": lambda: optuna.pruners.MedianPruner(
            n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs
        ),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=settings.warmup_epochs, reduction_factor=settings.reduction_factor
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=settings.warmup_epochs, reduction_factor=settings.reduction_factor
        ),
    }
    if settings.name not in builders:
        raise ValueError(f"unknown pruner {settings.name!r}; valid: {', '.join(builders)}")
    return builders[settings.name]()


@dataclass(frozen=True)
class TrialLink:
    """What a train stage needs to report to its trial (sent as JSON in TRIAL_VARIABLE)."""

    storage: str
    study: str
    trial_number: int
    metric: str
    pruner: PrunerSettings

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrialLink:
        try:
            fields = json.loads(text)
            return cls(**{**fields, "pruner": PrunerSettings(**fields["pruner"])})
        except (ValueError, TypeError, KeyError) as error:
            raise PruningError(
                f"{TRIAL_VARIABLE} is not a trial link written by `imgclf tune` ({error}); "
                f"unset it to train outside a study"
            ) from error


def open_trial(link: TrialLink) -> Any:
    """The running Optuna trial the link names, with the study's pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = open_storage(link.storage)
        study = optuna.load_study(
            study_name=link.study, storage=storage, pruner=build_pruner(link.pruner)
        )
        study_id = storage.get_study_id_from_name(link.study)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, link.trial_number)
        trial = optuna.trial.Trial(study, trial_id)
        state = storage.get_trial(trial_id).state
    except Exception as error:  # storage gone, study or trial missing: nothing to report to
        raise PruningError(
            f"cannot reach trial {link.trial_number} of study {link.study!r} ({error}); "
            f"run the trial through `imgclf tune`, or unset {TRIAL_VARIABLE}"
        ) from error
    if state != optuna.trial.TrialState.RUNNING:
        raise PruningError(
            f"trial {link.trial_number} of study {link.study!r} is {state.name}, not running; "
            f"start a new trial with `imgclf tune`, or unset {TRIAL_VARIABLE}"
        )
    return trial


def open_storage(url: str) -> Any:
    """Optuna's RDB storage at url, failing fast with the fix when it cannot be used.

    Waits are bounded: SQLite waits out a parallel trial's write, a database server that does
    not answer fails in seconds instead of hanging the study.
    """
    import sqlalchemy

    from imgclf.tracking.store import masked

    try:
        backend = sqlalchemy.engine.make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError as error:
        raise PruningError(
            f"the study storage is not a database URL ({error}); give one such as "
            "postgresql://USER:PASSWORD@HOST:5432/optuna, or leave tune.storage null"
        ) from error
    connect_args = {
        "sqlite": {"timeout": 30},
        "postgresql": {"connect_timeout": 10},
        "mysql": {"connect_timeout": 10},
    }.get(backend, {})
    try:
        return _create_storage(url, connect_args)
    except ImportError as error:
        raise PruningError(
            f"storage {masked(url)}: no driver for {backend} ({error}); install it "
            "(PostgreSQL: uv pip install psycopg)"
        ) from error
    except Exception as error:
        raise PruningError(
            f"cannot open the study storage {masked(url)}: {first_line(error)}. Check that "
            "the database server runs and that the host, port, user, password and database "
            "are right (scripts/postgres-dev.sh starts a throw-away PostgreSQL), or leave "
            "--storage and tune.storage unset to keep the study in mlruns/optuna.db"
        ) from error


def _create_storage(url: str, connect_args: dict[str, Any], attempts: int = 3) -> Any:
    """Optuna's RDBStorage at url, retrying a lost race to create a fresh database's tables.

    Workers that start at once on an empty database all create its tables; the losers see a
    duplicate table or type, and by then the tables exist.
    """
    import optuna
    import sqlalchemy

    options = {"engine_kwargs": {"connect_args": connect_args}}
    for attempt in range(1, attempts):
        try:
            return optuna.storages.RDBStorage(url, **options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(2.0 * attempt)
    return optuna.storages.RDBStorage(url, **options)
