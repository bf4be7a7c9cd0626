"""The regularizer levers (spatial dropout, max-norm) and the params checks of every lever."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.model.architectures import ARCHITECTURES, ModelSpec, build_model
from imgclf.model.regularizers import build_kernel_constraint
from imgclf.params import (
    LOSS_NAMES,
    ParamsError,
    RegParams,
    lever_warnings,
    load_params,
    parse_params,
    step_epochs_used,
    warmup_epochs_used,
)
from imgclf.training.classifier import build_classifier

REPO_ROOT = Path(__file__).resolve().parents[3]


def spec(**overrides) -> ModelSpec:
    fields = {
        "image_shape": (24, 24, 3),
        "num_classes": 4,
        "channel_mean": [120.0] * 3,
        "channel_std": [60.0] * 3,
        "width": 4,
    }
    return ModelSpec(**{**fields, **overrides})


def unit_norms(kernel: np.ndarray) -> np.ndarray:
    """The norm of each output unit's incoming weights (the kernel's last axis is the unit)."""
    return np.sqrt(np.square(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0))


# --- Max-norm ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "shape"), [("dense", (3, 4)), ("conv", (2, 2, 3, 4))])
def test_max_norm_rescales_only_units_over_the_cap(kind: str, shape: tuple) -> None:
    kernel = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    kernel[..., 0] *= 0.01  # one unit well under the cap
    norms = unit_norms(kernel)
    cap = float(np.median(norms[1:]))
    constrained = keras.ops.convert_to_numpy(build_kernel_constraint(cap, kind)(kernel))
    # NumPy: units above the cap are scaled to it, the others stay (up to Keras' 1e-7).
    expected = kernel * (np.minimum(norms, cap) / norms)
    np.testing.assert_allclose(constrained, expected, rtol=1e-5, atol=1e-7)
    assert unit_norms(constrained).max() == pytest.approx(cap, rel=1e-5)


@pytest.mark.parametrize("off", [None, 0.0])
def test_max_norm_off(off) -> None:
    assert build_kernel_constraint(off, "conv") is None
    model = build_model("seed_cnn", spec(max_norm=off))
    assert all(getattr(layer, "kernel_constraint", None) is None for layer in model.layers)


def test_max_norm_holds_every_kernel_after_a_training_step() -> None:
    cap = 0.3
    model = build_model("seed_cnn", spec(max_norm=cap))
    kernels = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
    ]
    assert len(kernels) == 5
    # Fresh Glorot kernels exceed the cap, so the check below could fail.
    assert max(unit_norms(layer.get_weights()[0]).max() for layer in kernels) > cap
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 24, 24, 3), dtype=np.uint8)
    model.train_on_batch(images, np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)])
    for layer in kernels:
        assert unit_norms(layer.get_weights()[0]).max() <= cap * (1 + 1e-5)


# --- Spatial dropout --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_spatial_dropout_follows_each_conv_block(arch: str) -> None:
    model = build_model(arch, spec(spatial_dropout=0.2))
    dropped = [layer for layer in model.layers if isinstance(layer, keras.layers.SpatialDropout2D)]
    assert len(dropped) == 3 and all(layer.rate == pytest.approx(0.2) for layer in dropped)
    for layer in dropped:
        before = layer._inbound_nodes[0].parent_nodes[0].operation
        # A block ends in a pool, a residual sum, a conv or (fast_cnn) its activation.
        assert isinstance(
            before,
            keras.layers.MaxPooling2D | keras.layers.Add | keras.layers.Conv2D
            if arch != "fast_cnn"
            else keras.layers.Activation,
        )
    # Active in training only.
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    inference = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(inference, keras.ops.convert_to_numpy(model(images)), atol=1e-6)
    assert not np.allclose(inference, keras.ops.convert_to_numpy(model(images, training=True)))


def test_no_spatial_dropout_layer_by_default() -> None:
    for arch in ARCHITECTURES:
        model = build_model(arch, spec())
        assert not any(isinstance(layer, keras.layers.SpatialDropout2D) for layer in model.layers)


def test_build_classifier_passes_the_reg_levers_through() -> None:
    params = parse_params({"model": {"arch": "seed_cnn"}})
    images = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
    reg = RegParams(spatial_dropout=0.1, max_norm=2.0)
    model = build_classifier(params.model, reg, (24, 24, 3), 4, images)
    assert model.get_layer("spatial_dropout_1").rate == pytest.approx(0.1)
    assert model.get_layer("logits").kernel_constraint.max_value == 2.0


# --- Params: defaults, checks at start-up, warnings ------------------------------------------


def test_the_repository_params_keep_every_new_lever_off() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.loss.name == "categorical_crossentropy"
    assert (params.reg.spatial_dropout, params.reg.max_norm) == (0.0, None)
    # The fast recipe (docs/guide/fast-recipe.md): Nesterov SGD on the records' linear schedule.
    assert params.optimizer.name == "sgd" and params.optimizer.schedule == "linear"
    assert params.optimizer.nesterov is True
    assert params.optimizer.clip_norm is None
    assert (params.optimizer.step_epochs, params.optimizer.step_every) == (None, None)


def bad(sections: dict, *fragments: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(sections)
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize("name", ["symmetric_crossentropy", "squared_hinge"])
def test_label_smoothing_is_refused_where_it_makes_no_sense(name: str) -> None:
    bad({"loss": {"name": name, "label_smoothing": 0.1}}, "loss.label_smoothing", name, "to 0")
    assert parse_params({"loss": {"name": name, "label_smoothing": 0.0}}).loss.name == name


@pytest.mark.parametrize(
    "name", ["categorical_crossentropy", "focal", "class_weighted_crossentropy", "poly1"]
)
def test_label_smoothing_combines_with_the_probability_losses(name: str) -> None:
    assert parse_params({"loss": {"name": name, "label_smoothing": 0.1}}).loss.name == name


def test_loss_settings_out_of_range() -> None:
    sce = {"name": "symmetric_crossentropy", "label_smoothing": 0}
    bad({"loss": {**sce, "sce_alpha": 0, "sce_beta": 0}}, "both 0")
    bad({"loss": {"poly_epsilon": -1.5}}, "loss.poly_epsilon")
    bad({"loss": {"hinge_margin": 0}}, "loss.hinge_margin")
    bad({"loss": {"name": "hinge"}}, "loss.name", *LOSS_NAMES)


def test_reg_settings_out_of_range() -> None:
    bad({"reg": {"spatial_dropout": 1.0}}, "reg.spatial_dropout")
    bad({"reg": {"max_norm": -1}}, "reg.max_norm")
    assert parse_params({"reg": {"max_norm": 0}}).reg.max_norm == 0


@pytest.mark.parametrize(
    ("optimizer", "train", "fragments"),
    [
        ({"name": "lion", "clip_norm": 0}, {}, ["optimizer.clip_norm"]),
        ({"schedule": "step", "step_epochs": [2], "step_every": 2}, {}, ["both set"]),
        ({"schedule": "cosine", "step_every": 2}, {}, ["schedule 'step' only", "null"]),
        ({"schedule": "step", "step_epochs": [3, 2]}, {}, ["strictly increasing"]),
        ({"schedule": "step", "step_epochs": [0, 2]}, {}, ["epoch 0"]),
        ({"schedule": "step", "step_epochs": []}, {}, ["non-empty"]),
        ({"schedule": "step", "step_epochs": [2, 10]}, {"epochs": 10}, ["epoch 10", "never"]),
        ({"schedule": "step", "step_epochs": [1, 4], "warmup_epochs": 1}, {}, ["epoch 1"]),
        ({"schedule": "step", "step_every": 10}, {"epochs": 10}, ["step_every (10)"]),
        ({"schedule": "triangular"}, {}, ["optimizer.schedule", "one_cycle", "linear"]),
        ({"name": "adagrad"}, {}, ["optimizer.name", "lion", "nadam"]),
    ],
)
def test_meaningless_optimizer_settings_fail_at_start_up(optimizer, train, fragments) -> None:
    bad({"optimizer": {"warmup_epochs": 0, **optimizer}, "train": train}, *fragments)


def test_tune_spaces_may_name_keys_whose_rules_span_other_keys() -> None:
    # Each tuned value is checked against its section alone; the combination is checked when
    # the trial's stage starts.
    space = {
        "optimizer.schedule": {"choices": ["step", "one_cycle", "cosine"]},
        "optimizer.step_every": {"choices": [2, 3]},
        "loss.name": {"choices": ["symmetric_crossentropy", "squared_hinge", "poly1"]},
    }
    assert set(parse_params({"tune": {"space": space}}).tune.space) == set(space)


def test_step_and_one_cycle_settings_that_fit_are_accepted() -> None:
    params = parse_params(
        {
            "optimizer": {"schedule": "step", "step_epochs": [3, 6], "warmup_epochs": 1},
            "train": {"epochs": 8},
        }
    )
    assert params.optimizer.step_epochs == (3, 6)
    one_cycle = {"schedule": "one_cycle", "warmup_epochs": 0, "one_cycle_rise_fraction": 0.2}
    assert parse_params({"optimizer": one_cycle}).optimizer.schedule == "one_cycle"


def test_step_without_milestones_steps_at_half_and_three_quarters_with_a_note() -> None:
    params = parse_params(
        {"optimizer": {"schedule": "step", "warmup_epochs": 1}, "train": {"epochs": 10}}
    )
    assert step_epochs_used(params.optimizer, params.train.epochs) == [5, 8]  # of 10 epochs
    assert "after epochs [5, 8]" in lever_warnings(params)["warning.step_epochs_default"]
    short = parse_params({"optimizer": {"schedule": "step"}, "train": {"epochs": 1}})
    assert step_epochs_used(short.optimizer, 1) == []
    assert "stays constant" in lever_warnings(short)["warning.step_epochs_default"]


def test_one_cycle_ignores_warmup_with_a_note() -> None:
    params = parse_params({"optimizer": {"schedule": "one_cycle", "warmup_epochs": 1}})
    assert warmup_epochs_used(params.optimizer, params.train.epochs) == 0
    assert "one_cycle_rise_fraction" in lever_warnings(params)["warning.warmup_ignored"]


def test_l2_with_decoupled_weight_decay_warns() -> None:
    # adamw without the sgd-only settings the defaults carry (Nesterov, the BatchNorm multiplier)
    adamw = {"name": "adamw", "nesterov": False, "batchnorm_lr_multiplier": 1}
    both = parse_params({"reg": {"l2": 1e-4}, "optimizer": {**adamw, "weight_decay": 1e-4}})
    (key,) = lever_warnings(both)
    assert key == "warning.l2_with_weight_decay"
    assert "reg.l2" in lever_warnings(both)[key] and "weight_decay" in lever_warnings(both)[key]
    assert lever_warnings(parse_params({"reg": {"l2": 1e-4}})) == {}
    decay_only = {"reg": {"l2": 0}, "optimizer": {**adamw, "weight_decay": 1e-4}}
    assert lever_warnings(parse_params(decay_only)) == {}


def test_nesterov_outside_sgd_warns_that_it_is_ignored() -> None:
    adam = {"name": "adam", "nesterov": True, "batchnorm_lr_multiplier": 1}
    ignored = parse_params({"optimizer": adam})
    assert list(lever_warnings(ignored)) == ["warning.nesterov_ignored"]
    assert "'adam'" in lever_warnings(ignored)["warning.nesterov_ignored"]
    assert lever_warnings(parse_params({"optimizer": {"name": "sgd", "nesterov": True}})) == {}


def test_batchnorm_lr_multiplier_outside_sgd_warns_that_it_is_ignored() -> None:
    adam = {"name": "adam", "nesterov": False, "batchnorm_lr_multiplier": 64}
    ignored = parse_params({"optimizer": adam})
    assert list(lever_warnings(ignored)) == ["warning.batchnorm_lr_multiplier_ignored"]
    assert "'adam'" in lever_warnings(ignored)["warning.batchnorm_lr_multiplier_ignored"]
    sgd = {"name": "sgd", "batchnorm_lr_multiplier": 64}
    assert lever_warnings(parse_params({"optimizer": sgd})) == {}
