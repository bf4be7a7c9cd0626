"""Tests for imgclf.promotion.contest's pure parts: per-image correctness and the report it writes.

The registry side (judge, record) runs against a real MLflow registry in tests/e2e/test_promote.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.evaluation.model_card import Comparison
from imgclf.model.architectures import ModelSpec, build_model
from imgclf.promotion import gate
from imgclf.promotion.contest import (
    Verdict,
    card_inputs,
    correct_predictions,
    model_card,
    report,
)


@pytest.fixture(scope="module")
def model():
    """An untrained model: correctness is checked against its own argmax."""
    keras.utils.set_random_seed(0)
    return build_model("seed_cnn", ModelSpec((32, 32, 3), 3, [120.0] * 3, [60.0] * 3, width=4))


def test_correct_predictions_marks_each_image(model) -> None:
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    guesses = model.predict(images, verbose=0).argmax(axis=1)
    labels = np.array([guesses[0], (guesses[1] + 1) % 3, *guesses[2:]])
    correct = correct_predictions(model, images, labels, batch_size=4)
    assert correct.tolist() == [True, False, True, True, True, True]


def test_an_output_that_does_not_fit_the_split_is_refused(model) -> None:
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="does not fit the test split"):
        correct_predictions(model, images, np.array([0, 0]), batch_size=4)


def test_report_holds_the_decision_and_what_it_compared() -> None:
    metrics = {"accuracy": 0.8, "macro_f1": 0.7, "loss": 0.5, "extra": 1}
    decision = gate.decide(
        metrics, True, min_accuracy=0.5, min_gain=0.0, alpha=0.05,
        candidate_correct=np.array([True] * 8 + [False] * 2), champion_correct=None,
    )  # fmt: skip
    verdict = Verdict(decision, "m", "run1", metrics, {"data.hash": "h", "git.commit": "c"}, None)
    written = report(verdict, "3", {"champion": "3"}, dry_run=False, num_test_images=10)
    assert written["decision"] == "promoted" and written["version"] == "3"
    assert written["metrics"] == {"accuracy": 0.8, "macro_f1": 0.7, "loss": 0.5}
    assert (written["data_hash"], written["git_commit"], written["compared_with"]) == (
        "h",
        "c",
        None,
    )
    dry = report(verdict, None, {}, dry_run=True, num_test_images=10)
    assert dry["decision"] == "would be promoted (dry run)" and dry["dry_run"] is True


def test_the_card_carries_the_gate_comparison() -> None:
    metrics = {"accuracy": 0.75, "macro_f1": 0.7, "loss": 0.5, "num_test_images": 4}
    candidate, champion = np.array([1, 1, 1, 0], bool), np.array([1, 0, 0, 0], bool)
    decision = gate.decide(
        metrics, True, min_accuracy=0.5, min_gain=0.0, alpha=0.05,
        candidate_correct=candidate, champion_correct=champion,
    )  # fmt: skip
    confusion = np.array([[3, 0], [1, 0]])
    verdict = Verdict(decision, "m", "run1", metrics, {}, "2", None, candidate, champion, confusion)
    card = card_inputs(verdict, ["a", "b"], None)
    # Two discordant pairs, both the candidate's: exact McNemar p = 2 * (1/2)^2 = 0.5.
    assert card.comparison == Comparison(False, ("significance",), "2", 0.75, 0.25, 0.5)
    text = model_card(card, "5")
    assert text.startswith("# Model card: m (version 5)") and "| a | 0.750 | 1.000 |" in text
    assert "accuracy 0.7500 vs 0.2500 (gain +0.5000), exact McNemar p = 0.5" in text


def test_a_card_that_cannot_be_formatted_does_not_stop_promotion() -> None:
    metrics = {"accuracy": 0.75, "macro_f1": 0.7, "loss": 0.5, "ece": "n/a"}
    decision = gate.decide(
        metrics, True, min_accuracy=0.5, min_gain=0.0, alpha=0.05,
        candidate_correct=None, champion_correct=None,
    )  # fmt: skip
    verdict = Verdict(decision, "m", "run1", metrics, {}, None)
    text = model_card(card_inputs(verdict, ["a"], None), "1")
    assert text.startswith("# Model card: m (version 1)")
    assert "The card could not be built: ValueError" in text
