"""Tests for imgclf.evaluation.metrics against metrics worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imgclf.evaluation.metrics import (
    classification_metrics,
    confident_mistakes,
    confusion_matrix,
    expected_calibration_error,
    reliability_bins,
    top_k_accuracy,
)

CLASSES = ["cat", "dog", "eel"]
LABELS = np.array([0, 0, 0, 1, 1, 2])
PROBABILITIES = np.array(
    [
        [0.7, 0.2, 0.1],  # cat -> cat
        [0.2, 0.5, 0.3],  # cat -> dog
        [0.6, 0.3, 0.1],  # cat -> cat
        [0.1, 0.8, 0.1],  # dog -> dog
        [0.3, 0.3, 0.4],  # dog -> eel
        [0.0, 0.0, 1.0],  # eel -> eel
    ]
)


def test_confusion_matrix_counts() -> None:
    matrix = confusion_matrix(LABELS, PROBABILITIES.argmax(axis=1), 3)
    np.testing.assert_array_equal(matrix, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert matrix.dtype == np.int64


def test_confusion_matrix_counts_repeated_pairs() -> None:
    # np.add.at, not fancy-index assignment: three identical pairs count three times.
    matrix = confusion_matrix(np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0]), 2)
    np.testing.assert_array_equal(matrix, [[1, 0], [3, 0]])


def test_metrics_match_hand_computation() -> None:
    metrics = classification_metrics(LABELS, PROBABILITIES, CLASSES)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # precision 2/2, 1/2, 1/2; recall 2/3, 1/2, 1/1 -> F1 0.8, 0.5, 2/3.
    assert metrics["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics["per_class_accuracy"] == pytest.approx({"cat": 2 / 3, "dog": 0.5, "eel": 1.0})
    # The probability each image gave its true class: 0.7, 0.2, 0.6, 0.8, 0.3, 1.0.
    expected_loss = (
        -(math.log(0.7) + math.log(0.2) + math.log(0.6) + math.log(0.8) + math.log(0.3) + 0.0) / 6
    )
    assert metrics["loss"] == pytest.approx(expected_loss)
    assert metrics["num_test_images"] == 6
    assert list(metrics["per_class_accuracy"]) == CLASSES


def test_zero_probability_on_the_true_class_costs_a_finite_loss() -> None:
    metrics = classification_metrics(
        np.array([0, 1]), np.array([[0.0, 1.0], [0.0, 1.0]]), ["a", "b"]
    )
    assert metrics["loss"] == pytest.approx(-math.log(1e-7) / 2)
    assert metrics["accuracy"] == 0.5


def test_perfect_predictions() -> None:
    labels = np.array([2, 0, 1, 2])
    metrics = classification_metrics(labels, np.eye(3)[labels], CLASSES)
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["loss"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["per_class_accuracy"] == {"cat": 1.0, "dog": 1.0, "eel": 1.0}


def test_a_class_absent_from_test_and_predictions_is_left_out_of_macro_f1() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1]])
    metrics = classification_metrics(labels, probabilities, CLASSES)
    # cat: precision 1, recall 1/2 -> F1 2/3; dog: precision 2/3, recall 1 -> F1 4/5; eel: none.
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert metrics["per_class_accuracy"] == pytest.approx({"cat": 0.5, "dog": 1.0, "eel": 0.0})


def test_ece_weights_each_bin_by_its_share_of_images() -> None:
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.92, 0.08], [0.45, 0.55], [0.35, 0.65]])
    # Bins of width 1/15: 0.9 and 0.92 share (0.867, 0.933] (accuracy 1/2, confidence 0.91);
    # 0.55 (right) and 0.65 (wrong) sit alone in (0.533, 0.6] and (0.6, 0.667].
    expected = 2 / 4 * abs(0.5 - 0.91) + 1 / 4 * abs(1 - 0.55) + 1 / 4 * abs(0 - 0.65)
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected)


def test_ece_uses_fifteen_bins_by_default() -> None:
    labels = np.array([0, 1])
    probabilities = np.array([[0.61, 0.39], [0.69, 0.31]])  # one right, one wrong
    # 15 bins: apart, in (0.6, 0.667] and (0.667, 0.733]; 10 bins: together in (0.6, 0.7].
    assert expected_calibration_error(labels, probabilities) == pytest.approx(
        0.5 * 0.39 + 0.5 * 0.69
    )
    assert expected_calibration_error(labels, probabilities, num_bins=10) == pytest.approx(0.15)


def test_ece_is_zero_when_confidence_matches_accuracy_and_in_metrics() -> None:
    labels = np.array([0, 0, 0, 1])
    probabilities = np.tile([0.75, 0.25], (4, 1))  # 75 % sure, right 3 times in 4
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.0)
    assert expected_calibration_error(labels[:0], probabilities[:0]) == 0.0
    # Every image of the shared case sits alone in its bin: ECE is the mean |correct - conf|.
    metrics = classification_metrics(LABELS, PROBABILITIES, CLASSES)
    assert metrics["ece"] == pytest.approx((0.3 + 0.5 + 0.4 + 0.2 + 0.4 + 0.0) / 6)


def test_top_k_accuracy_by_hand() -> None:
    # Rank of the true class in the shared case: 1, 3, 1, 1, 3 (dog's 0.3 ties with cat's,
    # and the lower index ranks first), 1.
    assert top_k_accuracy(LABELS, PROBABILITIES, 1) == pytest.approx(4 / 6)
    assert top_k_accuracy(LABELS, PROBABILITIES, 2) == pytest.approx(4 / 6)
    assert top_k_accuracy(LABELS, PROBABILITIES, 3) == 1.0
    # Without the tie, image 4 moves up to rank 2.
    untied = PROBABILITIES.copy()
    untied[4] = [0.25, 0.35, 0.4]
    assert top_k_accuracy(LABELS, untied, 2) == pytest.approx(5 / 6)
    uniform = np.full((3, 3), 1 / 3)
    # All tied: argmax says class 0, so only the image of class 0 is right at k=1.
    assert top_k_accuracy(np.array([0, 1, 2]), uniform, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(np.array([0, 1, 2]), uniform, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(np.array([0, 1, 2]), uniform, 3) == 1.0
    assert top_k_accuracy(LABELS[:0], PROBABILITIES[:0], 5) == 0.0


def test_top_1_is_plain_accuracy_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 200)
    probabilities = rng.dirichlet(np.ones(7), 200).round(1)  # rounding makes many ties
    assert top_k_accuracy(labels, probabilities, 1) == pytest.approx(
        float((probabilities.argmax(axis=1) == labels).mean())
    )
    scores = [top_k_accuracy(labels, probabilities, k) for k in range(1, 8)]
    assert scores == sorted(scores) and scores[-1] == 1.0


def test_metrics_carry_top5_with_k_capped_at_the_classes() -> None:
    metrics = classification_metrics(LABELS, PROBABILITIES, CLASSES)
    assert metrics["top_k"] == 3 and metrics["top5_accuracy"] == 1.0


def test_reliability_bins_by_hand() -> None:
    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.92, 0.08], [0.45, 0.55], [0.35, 0.65]])
    bins = reliability_bins(labels, probabilities)
    assert [row["count"] for row in bins] == [1, 1, 2]
    assert [row["accuracy"] for row in bins] == [1.0, 0.0, 0.5]
    assert [row["confidence"] for row in bins] == pytest.approx([0.55, 0.65, 0.91])
    assert [row["bin_low"] for row in bins] == pytest.approx([8 / 15, 9 / 15, 13 / 15])
    assert [row["bin_high"] for row in bins] == pytest.approx([9 / 15, 10 / 15, 14 / 15])


def test_confident_mistakes_are_the_most_confident_wrong_predictions() -> None:
    # Wrong: image 1 (dog at 0.5) and image 4 (eel at 0.4).
    np.testing.assert_array_equal(confident_mistakes(LABELS, PROBABILITIES, 5), [1, 4])
    np.testing.assert_array_equal(confident_mistakes(LABELS, PROBABILITIES, 1), [1])
    labels = np.array([0, 0, 0, 0])
    probabilities = np.array([[0.1, 0.9], [0.3, 0.7], [0.8, 0.2], [0.1, 0.9]])
    np.testing.assert_array_equal(confident_mistakes(labels, probabilities, 3), [0, 3, 1])
    assert confident_mistakes(np.array([1]), np.array([[0.2, 0.8]]), 4).size == 0
