"""Tests for the trial link between `imgclf tune` and the train stage, and its pruning callback.

Real Optuna studies in SQLite files and a real (tiny) Keras fit; nothing is mocked.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import optuna
import pytest

from imgclf.params import ParamsError, parse_params
from imgclf.tuning import pruning
from imgclf.tuning.pruning import PrunerSettings, PruningError, TrialLink
from imgclf.tuning.pruning_callback import PruningCallback
from support.mlflow_server import free_port


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("none", optuna.pruners.NopPruner),
        ("median", optuna.pruners.MedianPruner),
        ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
    ],
)
def test_every_pruner_name_builds_optunas_pruner(name: str, kind: type) -> None:
    assert isinstance(pruning.build_pruner(PrunerSettings(name=name)), kind)
    assert parse_params({"tune": {"pruner": name}}).tune.pruner == name


def test_an_unknown_pruner_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ParamsError) as raised:
        parse_params({"tune": {"pruner": "asha"}})
    assert "tune.pruner" in str(raised.value) and "successive_halving" in str(raised.value)
    with pytest.raises(ValueError, match="valid: none, median, successive_halving, hyperband"):
        pruning.build_pruner(PrunerSettings(name="asha"))


def test_pruner_knobs_are_checked() -> None:
    with pytest.raises(ParamsError, match="tune.pruner_warmup_epochs"):
        parse_params({"tune": {"pruner_warmup_epochs": 0}})
    with pytest.raises(ParamsError, match="tune.pruner_reduction_factor"):
        parse_params({"tune": {"pruner_reduction_factor": 1}})


def test_the_link_round_trips_and_a_garbled_one_names_the_variable() -> None:
    link = TrialLink("sqlite:///x.db", "s", 3, "best_val_accuracy", PrunerSettings("median"))
    assert TrialLink.from_json(link.to_json()) == link
    with pytest.raises(PruningError, match="IMGCLF_TUNE_TRIAL is not a trial link"):
        TrialLink.from_json('{"study": "s"}')


def test_a_storage_that_is_no_url_is_refused() -> None:
    with pytest.raises(PruningError, match="not a database URL") as raised:
        pruning.open_storage("postgres-on-my-laptop")
    assert "tune.storage" in str(raised.value)


def test_an_unreachable_database_fails_fast_with_the_fix_and_no_password() -> None:
    url = f"postgresql://tuner:s3cret-pw@127.0.0.1:{free_port()}/optuna"
    started = time.monotonic()
    with pytest.raises(PruningError) as raised:
        pruning.open_storage(url)
    message = str(raised.value)
    assert time.monotonic() - started < 30
    assert "cannot open the study storage" in message and "s3cret-pw" not in message
    assert "scripts/postgres-dev.sh" in message and "mlruns/optuna.db" in message


def _study_with_finished_trials(storage: str, accuracies: list[float]) -> None:
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for accuracy in accuracies:
        trial = study.ask()
        for epoch in (1, 2, 3):
            trial.report(accuracy, epoch)
        study.tell(trial, accuracy)


def _fit(callback: PruningCallback, epochs: int) -> keras.callbacks.History:
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(64, 4)), rng.integers(0, 2, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.fit(
        images, labels, validation_data=(images, 1 - labels), epochs=epochs, verbose=0,
        callbacks=[callback],
    )  # fmt: skip


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def test_a_trial_far_below_the_others_stops_after_its_warmup(storage: str) -> None:
    _study_with_finished_trials(storage, [0.99, 0.98, 0.97])
    study = optuna.load_study(study_name="s", storage=storage)
    number = study.ask().number
    settings = PrunerSettings("median", warmup_epochs=1, startup_trials=2)
    link = TrialLink(storage, "s", number, "best_val_accuracy", settings)
    callback = PruningCallback(pruning.open_trial(link), "best_val_accuracy", epochs=3)
    history = _fit(callback, epochs=3)
    assert callback.pruned and callback.pruned_at_epoch == 1
    assert len(history.epoch) == 1  # stopped: epochs 2 and 3 never ran
    assert callback.tags() == {"tune.pruned": "true", "tune.pruned_at_epoch": "1"}
    reported = optuna.load_study(study_name="s", storage=storage).trials[number]
    assert list(reported.intermediate_values) == [1]


def test_the_last_epoch_is_reported_but_never_pruned(storage: str) -> None:
    _study_with_finished_trials(storage, [0.99, 0.98, 0.97])
    number = optuna.load_study(study_name="s", storage=storage).ask().number
    link = TrialLink(storage, "s", number, "final_val_accuracy", PrunerSettings("median"))
    callback = PruningCallback(pruning.open_trial(link), "final_val_accuracy", epochs=1)
    _fit(callback, epochs=1)
    assert not callback.pruned and callback.tags() == {"tune.pruned": "false"}
    assert list(
        optuna.load_study(study_name="s", storage=storage).trials[number].intermediate_values
    ) == [1]


def test_a_two_objective_trial_trains_to_the_end_without_reports(storage: str, capsys) -> None:
    # Optuna refuses intermediate values in a multi-objective study: reporting would only fail.
    study = optuna.create_study(
        study_name="two", storage=storage, directions=["maximize", "minimize"]
    )
    number = study.ask().number
    link = TrialLink(storage, "two", number, "best_val_accuracy", PrunerSettings("none"))
    callback = PruningCallback(pruning.open_trial(link), "best_val_accuracy", epochs=2)
    assert len(_fit(callback, epochs=2).epoch) == 2
    assert not callback.pruned and "warning" not in capsys.readouterr().err
    assert (
        optuna.load_study(study_name="two", storage=storage).trials[number].intermediate_values
        == {}
    )


def test_a_finished_or_missing_trial_cannot_be_trained_for(storage: str) -> None:
    _study_with_finished_trials(storage, [0.5])
    finished = TrialLink(storage, "s", 0, "best_val_accuracy", PrunerSettings())
    with pytest.raises(PruningError, match="is COMPLETE, not running"):
        pruning.open_trial(finished)
    with pytest.raises(PruningError, match="cannot reach trial 7 of study 's'"):
        pruning.open_trial(TrialLink(storage, "s", 7, "best_val_accuracy", PrunerSettings()))
