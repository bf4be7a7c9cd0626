"""Tests for screen-then-confirm: which settings are confirmed, what each run sets, and which
wins, on real Optuna studies."""

from __future__ import annotations

import optuna
import pytest

from imgclf.params import ParamsError, parse_params
from imgclf.tuning import confirm, search


def _study(results: list[tuple[float | None, float]]) -> optuna.Study:
    """A study whose trial i set optimizer.lr to results[i][1] and scored results[i][0]
    (None: pruned)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for value, lr in results:
        trial = study.ask()
        trial.suggest_float("optimizer.lr", 1e-3, 1.0, log=True)
        trial.set_user_attr("values", {"optimizer.lr": lr})
        if value is None:
            trial.report(0.99, 1)  # a pruned trial's report never makes it a candidate
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return study


def test_candidates_are_the_best_finished_settings_each_once() -> None:
    study = _study([(0.70, 0.1), (0.90, 0.2), (None, 0.3), (0.90, 0.2), (0.80, 0.4)])
    found = confirm.candidates(study, 3)
    assert [(c.trial, c.values, c.screened) for c in found] == [
        (1, {"optimizer.lr": 0.2}, 0.90),  # trial 3 ran the same setting: once
        (4, {"optimizer.lr": 0.4}, 0.80),
        (0, {"optimizer.lr": 0.1}, 0.70),
    ]
    assert len(confirm.candidates(study, 1)) == 1


def test_two_objectives_confirm_only_the_front_within_the_budget() -> None:
    study = optuna.create_study(directions=search.directions("accuracy_and_time"))
    for index, point in enumerate([(0.80, 10.0), (0.85, 30.0), (0.70, 50.0), (0.86, 100.0)]):
        trial = study.ask()
        trial.set_user_attr("values", {"optimizer.lr": 0.1 * (index + 1)})
        study.tell(trial, list(point))
    assert [c.trial for c in confirm.candidates(study, 5, time_budget=40.0)] == [1, 0]
    assert [c.trial for c in confirm.candidates(study, 5)] == [3, 1, 0]


def test_a_confirmation_run_sets_the_screened_keys_back_and_its_seed() -> None:
    candidate = confirm.Candidate(4, {"optimizer.lr": 0.2, "reg.l2": 1e-4}, 0.8)
    values = confirm.run_values(
        candidate, {"train.epochs": 2}, {"train.epochs": 8, "optimizer.lr": 0.4}, seed=7
    )
    assert values == {"optimizer.lr": 0.2, "reg.l2": 1e-4, "train.epochs": 8, "train.seed": 7}
    assert confirm.experiment_name("s", 4, 7) == "tune-s-4-seed7"


def _confirmation(trial: int, screened: float, scores: dict) -> confirm.Confirmation:
    return confirm.Confirmation(confirm.Candidate(trial, {"optimizer.lr": trial}, screened), scores)


def test_the_winner_has_the_best_mean_and_a_failed_run_disqualifies() -> None:
    # Trial 1 screened best, but trial 2 is better on the mean of its full runs; trial 3 would
    # win on its one finished seed, but the other failed.
    found = [
        _confirmation(1, 0.90, {0: 0.84, 1: 0.82}),
        _confirmation(2, 0.85, {0: 0.86, 1: 0.85}),
        _confirmation(3, 0.80, {0: 0.95, 1: None}),
    ]
    best = confirm.winner(found)
    assert best.candidate.trial == 2 and best.mean == pytest.approx(0.855)
    assert best.spread == pytest.approx(0.00707, abs=1e-5)
    assert found[2].mean is None and not found[2].complete
    lines = confirm.table_lines(found, "best_val_accuracy", (0, 1))
    assert lines[3].endswith("<- chosen") and lines[3].split()[0] == "2"
    assert "failed" in lines[4] and "<-" not in lines[4]
    columns = confirm.columns(found, "best_val_accuracy")
    assert columns["trial"] == [1, 1, 2, 2, 3, 3] and columns["chosen"].count(True) == 2
    assert confirm.winner([found[2]]) is None


def test_equal_means_go_to_the_better_screen() -> None:
    found = [_confirmation(1, 0.80, {0: 0.9, 1: 0.8}), _confirmation(2, 0.82, {0: 0.8, 1: 0.9})]
    assert confirm.winner(found).candidate.trial == 2


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"screen": {"train.epochs": 2}, "space": {"train.epochs": {"low": 1, "high": 4}}},
         "tune.screen sets train.epochs, which tune.space tunes"),
        ({"screen": {"train.epoch": 2}}, "tune.screen key 'train.epoch' is not a params key"),
        ({"screen": {"data.seed": 1}}, "tune.screen key 'data.seed' cannot be tuned"),
        ({"screen": {"train.epochs": 0}}, "tune.screen key 'train.epochs': 0 is not allowed"),
        ({"confirm_seeds": [0]}, "tune.confirm_seeds"),
        ({"confirm_seeds": [1, 1]}, "give distinct seeds"),
        ({"confirm": 2, "space": {"train.seed": {"choices": [0, 1]}}}, "do not also tune"),
        ({"objectives": "accuracy_and_time", "pruner": "median"}, "set tune.pruner to none"),
        ({"time_budget_seconds": 60}, "set tune.objectives to accuracy_and_time"),
    ],
)  # fmt: skip
def test_screen_confirm_and_objectives_are_checked_before_any_trial(
    tune: dict, message: str
) -> None:
    with pytest.raises(ParamsError) as raised:
        parse_params({"tune": tune})
    assert message in str(raised.value)


def test_the_shipped_settings_compose() -> None:
    settings = parse_params(
        {"tune": {"screen": {"train.epochs": 2}, "confirm": 3, "objectives": "accuracy_and_time",
                  "time_budget_seconds": 300}}
    ).tune  # fmt: skip
    assert settings.confirm_seeds == (0, 1) and settings.screen == {"train.epochs": 2}
