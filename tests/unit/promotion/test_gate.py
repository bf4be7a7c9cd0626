"""The promotion gate's pure core: the exact McNemar test and the fail-closed decision."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imgclf.promotion.gate import Decision, decide, mcnemar_exact_p, reason_tags

GOOD_METRICS = {"accuracy": 0.8, "macro_f1": 0.79, "loss": 0.6}
THRESHOLDS = {"min_accuracy": 0.5, "min_gain": 0.0, "alpha": 0.05}


def _pairs(both: int, only_candidate: int, only_champion: int, neither: int):
    """Paired correctness arrays with the given counts of each outcome."""
    candidate = [True] * both + [True] * only_candidate + [False] * only_champion
    champion = [True] * both + [False] * only_candidate + [True] * only_champion
    candidate += [False] * neither
    champion += [False] * neither
    return np.array(candidate), np.array(champion)


def _decide(metrics=None, validation_passed=True, candidate=None, champion=None, **overrides):
    return decide(
        GOOD_METRICS if metrics is None else metrics,
        validation_passed,
        **{**THRESHOLDS, **overrides},
        candidate_correct=candidate,
        champion_correct=champion,
    )


def _failed(decision: Decision) -> set[str]:
    return {check.name for check in decision.checks if not check.passed}


@pytest.mark.parametrize(
    ("only_candidate", "only_champion", "expected"),
    [
        (0, 10, 2 * 0.5**10),
        (10, 0, 2 * 0.5**10),
        # 2 * (C(10,0) + C(10,1) + C(10,2) + C(10,3)) / 2**10 = 2 * 176 / 1024
        (7, 3, 352 / 1024),
        (1, 1, 1.0),  # 2 * (1 + 2) / 4 = 1.5, capped at 1
        (5, 5, 1.0),
        (0, 0, 1.0),  # no discordant pair: no evidence either way
        (1, 0, 1.0),  # 2 * 0.5
    ],
)
def test_mcnemar_exact_p_matches_hand_computed_values(only_candidate, only_champion, expected):
    candidate, champion = _pairs(40, only_candidate, only_champion, 7)
    assert mcnemar_exact_p(candidate, champion) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_ignores_concordant_pairs():
    small = mcnemar_exact_p(*_pairs(0, 12, 2, 0))
    large = mcnemar_exact_p(*_pairs(5000, 12, 2, 3000))
    assert small == large == pytest.approx(2 * (1 + 14 + 91) / 2**14)


def test_mcnemar_stays_exact_for_thousands_of_discordant_pairs():
    # 0.5 ** 4300 underflows a float; the exact integer tail must still give a tiny, positive p.
    p_lopsided = mcnemar_exact_p(*_pairs(0, 2300, 2000, 0))
    assert 0.0 < p_lopsided < 1e-4
    assert mcnemar_exact_p(*_pairs(0, 2000, 2300, 0)) == p_lopsided
    assert mcnemar_exact_p(*_pairs(0, 2150, 2150, 0)) == 1.0


def test_mcnemar_rejects_unpaired_arrays():
    with pytest.raises(ValueError, match="one length"):
        mcnemar_exact_p(np.ones(5, bool), np.ones(6, bool))


def test_first_model_is_decided_by_thresholds_alone():
    decision = _decide()
    assert decision.promote
    assert decision.p_value is None and decision.gain is None
    assert "no champion yet" in decision.table()


@pytest.mark.parametrize(
    ("metrics", "failing"),
    [
        ({**GOOD_METRICS, "accuracy": 0.4}, {"min_accuracy"}),
        ({**GOOD_METRICS, "accuracy": math.nan}, {"metrics", "min_accuracy"}),
        ({**GOOD_METRICS, "loss": math.inf}, {"metrics"}),
        ({"accuracy": 0.8, "loss": 0.5}, {"metrics"}),
        ({**GOOD_METRICS, "accuracy": None}, {"metrics", "min_accuracy"}),
        ({**GOOD_METRICS, "accuracy": "0.8"}, {"metrics", "min_accuracy"}),
        ({**GOOD_METRICS, "accuracy": 1.5}, {"metrics"}),
        ({}, {"metrics", "min_accuracy"}),
    ],
)
def test_missing_non_finite_or_low_metrics_reject(metrics, failing):
    decision = _decide(metrics)
    assert not decision.promote
    assert _failed(decision) == failing


def test_accuracy_exactly_at_the_threshold_passes():
    assert _decide(min_accuracy=0.8).promote
    assert not _decide(min_accuracy=0.8001).promote


def test_a_pruned_tuning_trial_is_never_a_candidate():
    decision = _decide(pruned_at_epoch="2")
    assert not decision.promote
    assert _failed(decision) == {"complete_training"}
    assert "stopped after epoch 2" in decision.table()
    assert "complete_training" not in _failed(_decide(pruned_at_epoch=None))


def test_failed_validation_rejects_even_a_perfect_model():
    decision = _decide(validation_passed=False)
    assert not decision.promote
    assert _failed(decision) == {"validation"}


def test_clear_significant_gain_over_the_champion_promotes():
    candidate, champion = _pairs(60, 25, 2, 13)  # candidate 0.85, champion 0.62
    decision = _decide({**GOOD_METRICS, "accuracy": 0.85}, candidate=candidate, champion=champion)
    assert decision.promote, decision.table()
    assert decision.gain == pytest.approx(0.23)
    assert decision.p_value == pytest.approx(mcnemar_exact_p(candidate, champion))
    assert decision.p_value < 1e-4


def test_a_small_gain_that_is_not_significant_rejects():
    candidate, champion = _pairs(70, 6, 3, 21)  # candidate 0.76, champion 0.73, p ~ 0.51
    decision = _decide({**GOOD_METRICS, "accuracy": 0.76}, candidate=candidate, champion=champion)
    assert not decision.promote
    assert _failed(decision) == {"significance"}
    assert decision.gain == pytest.approx(0.03)


def test_a_worse_candidate_rejects_on_gain_and_significance():
    candidate, champion = _pairs(55, 2, 25, 18)  # candidate 0.57, champion 0.80
    decision = _decide({**GOOD_METRICS, "accuracy": 0.57}, candidate=candidate, champion=champion)
    assert not decision.promote
    assert _failed(decision) == {"gain", "significance"}
    assert decision.gain < 0


def test_a_significant_gain_below_min_gain_rejects():
    candidate, champion = _pairs(60, 25, 2, 13)
    decision = _decide(
        {**GOOD_METRICS, "accuracy": 0.85}, candidate=candidate, champion=champion, min_gain=0.3
    )
    assert not decision.promote
    assert _failed(decision) == {"gain"}


def test_alpha_is_a_strict_bound():
    candidate, champion = _pairs(80, 10, 0, 10)  # p = 2 * 0.5**10 ~ 0.00195
    metrics = {**GOOD_METRICS, "accuracy": 0.9}
    assert _decide(metrics, candidate=candidate, champion=champion, alpha=0.002).promote
    assert not _decide(metrics, candidate=candidate, champion=champion, alpha=2 * 0.5**10).promote


def test_eval_json_that_does_not_describe_the_model_rejects():
    candidate, _ = _pairs(60, 25, 2, 13)  # the model re-evaluates at 0.85
    decision = _decide({**GOOD_METRICS, "accuracy": 0.95}, candidate=candidate)
    assert not decision.promote
    assert _failed(decision) == {"eval_matches_model"}


def test_a_champion_without_paired_candidate_predictions_rejects():
    _, champion = _pairs(60, 25, 2, 13)
    assert _failed(_decide(champion=champion)) == {"champion"}
    short = np.ones(10, dtype=bool)
    assert "champion" in _failed(
        _decide({**GOOD_METRICS, "accuracy": 1.0}, candidate=short, champion=champion)
    )


def test_table_and_dict_carry_every_reason():
    candidate, champion = _pairs(55, 2, 25, 18)
    decision = _decide({**GOOD_METRICS, "accuracy": 0.57}, candidate=candidate, champion=champion)
    table = decision.table()
    assert table.splitlines()[0] == "Promotion decision: REJECT"
    for check in decision.checks:
        assert check.name in table
    assert table.count("FAIL") == 2
    payload = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert payload["promote"] is False
    assert [check["name"] for check in payload["checks"]] == [c.name for c in decision.checks]
    assert payload["p_value"] == pytest.approx(decision.p_value)


def test_reason_tags_record_metrics_data_and_code():
    candidate, champion = _pairs(60, 25, 2, 13)
    metrics = {**GOOD_METRICS, "accuracy": 0.85}
    decision = _decide(metrics, candidate=candidate, champion=champion)
    tags = reason_tags(decision, metrics, {"data.hash": "abc", "git.commit": "123"}, "4")
    assert tags["promotion.decision"] == "promoted"
    assert tags["promotion.compared_with"] == "4"
    assert tags["promotion.accuracy"] == "0.85"
    assert float(tags["promotion.p_value"]) == pytest.approx(decision.p_value)
    assert tags["data.hash"] == "abc" and tags["git.commit"] == "123"
    assert tags["promotion.failed_checks"] == "none"
    assert all(isinstance(value, str) for value in tags.values())
