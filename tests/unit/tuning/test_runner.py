"""tuning/runner.py: the study's bar counts every worker's finished trials, the best and the
pruned, on a real in-memory Optuna study."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import optuna
import pytest
from tqdm import tqdm

from imgclf.params import TuneParams
from imgclf.tuning.runner import StudyRun, study_bar

States = optuna.trial.TrialState


def _session(study: optuna.Study, bar: tqdm | None) -> StudyRun:
    return StudyRun(
        study, None, TuneParams(trials=4), "s", "sqlite://", Path("."), Path("train.json"),
        {}, (None, "0", "run"), progress=bar,
    )  # fmt: skip


def _finish(study: optuna.Study, state: States, value: float | None = None) -> None:
    study.add_trial(optuna.trial.create_trial(state=state, value=value))


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_bar_shows_done_of_budget_the_best_so_far_and_the_pruned() -> None:
    study = optuna.create_study(direction="maximize")
    screen = io.StringIO()
    with tqdm(total=4, desc="tune", file=screen, disable=False) as bar:
        session = _session(study, bar)
        session.show_progress()
        assert bar.n == 0 and "best" not in bar.postfix  # nothing has completed yet
        _finish(study, States.COMPLETE, 0.61)
        _finish(study, States.PRUNED)
        _finish(study, States.COMPLETE, 0.74)
        study.enqueue_trial({})  # waiting, not finished: not counted
        session.show_progress()
        assert bar.n == 3
    assert "3/4" in screen.getvalue() and "best=0.7400, pruned=1" in screen.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_study_bar_shows_on_a_terminal_only(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(direction="maximize")
    _finish(study, States.COMPLETE, 0.5)
    with study_bar(4) as bar:  # pytest's stderr is no terminal, like a log or CI
        _session(study, bar).show_progress()
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with study_bar(4) as bar:
        _session(study, bar).show_progress()
    assert "tune" in terminal.getvalue() and "1/4" in terminal.getvalue()
