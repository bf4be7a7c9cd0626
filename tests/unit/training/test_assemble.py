"""training/assemble.py: the one assembly of training, and that nothing else builds the recipe."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from imgclf.params import parse_params
from imgclf.training.assemble import assemble, compile_untimed

REPO = Path(__file__).resolve().parents[3]
# What building the training recipe takes: only the assembly may call these (tests may).
RECIPE_BUILDERS = {
    "build_classifier",
    "learn_whitening",
    "compile_model",
    "build_loss",
    "build_optimizer",
    "make_datasets",
    "make_dataset",
    "plan_training",
    "callbacks_for",
    "online_augmentation",
}
# Where each may still be called: its own module, and its own registries or tests.
OWN_MODULES = {
    "src/imgclf/training/assemble.py",
    "src/imgclf/training/classifier.py",
    "src/imgclf/training/fit.py",
    "src/imgclf/training/inputs.py",
    "src/imgclf/training/plan.py",
    "src/imgclf/model/losses.py",
    "src/imgclf/model/optimizers.py",
    "src/imgclf/model/lookahead.py",
}


def tiny_splits(count: int = 64, side: int = 16):
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 4
    images = rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)
    images[..., 0] = np.where(labels[:, None, None] % 2, 230, 20).astype(np.uint8)
    return (images, labels.astype(np.int64)), (images[:16], labels[:16].astype(np.int64))


def tiny_params(**train):
    return parse_params(
        {
            "model": {"arch": "fast_cnn", "widths": [8, 8, 8]},
            "train": {"epochs": 2, "batch_size": 16, "seed": 3, **train},
            "augment": {"progressive_side": None},
        }
    )


@pytest.mark.integration
def test_assemble_plans_builds_and_fits_the_planned_epochs() -> None:
    train, validation = tiny_splits()
    notes = []
    trainer = assemble(
        tiny_params(), train, validation, ["a", "b", "c", "d"], data_hash="abc", say=notes.append
    )
    assert trainer.plan.epochs == 2 and trainer.plan.steps_per_epoch == 4
    assert trainer.model.output_shape == (None, 4)
    assert trainer.model.optimizer is not None  # compiled with the configured optimizer
    result = trainer.fit(verbose=0)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(row["image_side"] == 16 for row in result.history)
    assert "val_accuracy" in result.history[-1] and result.train_seconds > 0


@pytest.mark.integration
def test_without_validation_a_benchmark_warms_up_restores_and_fits() -> None:
    """validation None: no val data; batches(limit) are train_data's first batches; warm_up
    compiles on them and leaves the weights and the optimizer as assembled."""
    import keras

    train, _ = tiny_splits()
    trainer = assemble(tiny_params(), train, None, ["a", "b", "c", "d"], say=lambda _: None)
    assert trainer.val_data is None and set(trainer.splits) == {"train"}
    assert len(list(trainer.batches(20))) == 2  # 16 + 4 of the first 20 images
    first = next(iter(trainer.batches()))[1]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(first), next(iter(trainer.train_data))[1]
    )
    weights = trainer.model.get_weights()
    assert trainer.warm_up(steps=1) > 0
    for now, before in zip(trainer.model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(now, before)
    assert int(keras.ops.convert_to_numpy(trainer.model.optimizer.iterations)) == 0
    result = trainer.fit(verbose=0)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert "val_accuracy" not in result.history[-1]


def test_a_progressive_side_not_smaller_than_the_images_is_said_and_left_off() -> None:
    train, validation = tiny_splits()
    notes = []
    params = parse_params(
        {
            "model": {"arch": "fast_cnn", "widths": [8, 8, 8]},
            "train": {"epochs": 2, "batch_size": 16},
            "augment": {"progressive_side": 24, "progressive_share": 0.5},
        }
    )
    trainer = assemble(params, train, validation, ["a", "b", "c", "d"], say=notes.append)
    assert trainer.image_side(0) == 16
    assert any("progressive_side (24) is not smaller than the images" in note for note in notes)


def _calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            function = node.func
            names.add(function.attr if isinstance(function, ast.Attribute) else "")
            names.add(function.id if isinstance(function, ast.Name) else "")
    return names


def test_nothing_but_the_assembly_builds_the_training_recipe() -> None:
    files = [*REPO.glob("src/imgclf/**/*.py"), *REPO.glob("bench/*.py")]
    builders = {
        path.relative_to(REPO).as_posix(): sorted(_calls(path) & RECIPE_BUILDERS)
        for path in files
        if path.relative_to(REPO).as_posix() not in OWN_MODULES
    }
    assert {path: found for path, found in builders.items() if found} == {}


def test_the_untimed_compile_puts_weights_and_optimizer_state_back_as_built() -> None:
    """Loss scaling (float16 on a GPU) keeps its scale in the optimizer's state: reset to
    zeros instead of its value as built, every later gradient was zero."""
    import keras

    from imgclf.training.online_augmentation import CurrentEpoch

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    model.compile(optimizer=optimizer, loss="mse")
    weights = model.get_weights()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), rng.normal(size=(32, 3))
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]

    compile_untimed(model, (batch for batch in batches), CurrentEpoch(), 0)
    for now, before in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(now, before)
    # Keras numbers optimizers' names in a process (loss_scale_optimizer_1/... after another
    # test built one), so the state is found by the variable, not by its path.
    assert float(keras.ops.convert_to_numpy(optimizer.dynamic_scale)) == 2.0**15
    state = {v.path: keras.ops.convert_to_numpy(v.value) for v in optimizer.variables}
    momenta = [value for path, value in state.items() if path.endswith("_momentum")]
    assert len(momenta) == 2 and not any(momentum.any() for momentum in momenta)
    assert int(optimizer.iterations.numpy()) == 0
