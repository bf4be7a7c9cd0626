"""Tests for the study's shared MLflow run: a worker that joins a study finds the creator's."""

from __future__ import annotations

import threading

import optuna

from imgclf.tuning import session


def test_a_joining_worker_waits_for_the_run_while_the_first_trials_only_wait() -> None:
    # The creator enqueues the first trials, then starts the study's run: a worker joining in
    # between must take the creator's run, not start a second one as for an old study.
    study = optuna.create_study()
    study.enqueue_trial({"reg.l2": 0.00066})
    timer = threading.Timer(0.3, study.set_user_attr, (session.RUN_ATTRIBUTE, "creator-run"))
    timer.start()
    try:
        assert session._existing_run_id(study, created=False) == "creator-run"
    finally:
        timer.cancel()


def test_an_old_study_with_trials_and_no_run_gets_one_at_once() -> None:
    study = optuna.create_study()
    study.tell(study.ask(), 0.5)
    assert session._existing_run_id(study, created=False) is None
