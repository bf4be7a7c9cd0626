"""training/plan.py: the derived sizes and rates, from params, the labels and the replicas."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.params import parse_params
from imgclf.training.plan import plan_training

LABELS = np.array([0] * 30 + [1] * 10)  # 40 images, 3:1


def _plan(replicas: int = 1, data_hash: str = "d0", **sections):
    return plan_training(parse_params(sections), LABELS, 2, replicas, data_hash)


def test_one_replica_keeps_the_batch_and_the_rate() -> None:
    plan = _plan(train={"batch_size": 16, "epochs": 3}, optimizer={"lr": 0.2})
    assert (plan.batch_size, plan.global_batch, plan.epochs) == (16, 16, 3)
    assert plan.steps_per_epoch == 3  # 40 images in batches of 16: the last one is partial
    assert plan.learning_rate == pytest.approx(0.2) == plan.optimizer.lr


@pytest.mark.parametrize(("scaling", "factor"), [("linear", 4.0), ("sqrt", 2.0), ("none", 1.0)])
def test_replicas_multiply_the_batch_and_scale_the_rate(scaling: str, factor: float) -> None:
    plan = _plan(4, train={"batch_size": 8, "lr_scaling": scaling}, optimizer={"lr": 0.1})
    assert plan.global_batch == 32 and plan.steps_per_epoch == 2
    assert plan.learning_rate == pytest.approx(0.1 * factor)
    assert plan.optimizer.lr == pytest.approx(0.1 * factor)  # what the optimizer is built from
    assert plan.optimizer.momentum == parse_params({}).optimizer.momentum  # the rest unchanged


def test_class_weights_only_for_a_class_weighted_loss() -> None:
    assert _plan().class_weights is None and _plan().class_weight_tag(["a", "b"]) == {}
    plan = _plan(loss={"name": "class_weighted_crossentropy", "label_smoothing": 0.0})
    assert plan.class_weights == pytest.approx((40 / 60, 40 / 20))  # N / (K n_k)
    assert plan.class_weight_tag(["cat", "dog"]) == {
        "loss.class_weights": '{"cat": 0.6667, "dog": 2.0}'
    }


def test_the_backup_key_follows_params_and_data_only() -> None:
    key = _plan().backup_key
    assert _plan().backup_key == key  # the same training, the same state
    assert _plan(data_hash="d1").backup_key != key
    assert _plan(reg={"l2": 0.001}).backup_key != key


def test_lever_warnings_become_the_plans_tags() -> None:
    plan = _plan(optimizer={"name": "adam", "lr": 0.001, "batchnorm_lr_multiplier": 64.0})
    assert "warning.batchnorm_lr_multiplier_ignored" in plan.warnings
    assert _plan(optimizer={"batchnorm_lr_multiplier": 64.0}).warnings == {}
