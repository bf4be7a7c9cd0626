"""Tests for imgclf.promotion.contest's pure parts: per-image correctness and the report it writes.

The registry side (judge, record) runs against a real MLflow registry in tests/e2e/test_promote.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.model.architectures import ModelSpec, build_model
from imgclf.promotion import gate
from imgclf.promotion.contest import Verdict, correct_predictions, report


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
