"""The training core under each Keras backend, each in a fresh process (Keras picks once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# One tiny epoch with online crop+flip through imgclf's model, loss, optimizer and feeding;
# then the saved .keras file is reloaded, and the next backend reloads it too.
SCRIPT = """
import json, sys
import keras, numpy as np
from imgclf.data.synthetic import draw_synthetic
from imgclf.model.architectures import ModelSpec, build_model
from imgclf.model.losses import build_loss, class_weights_from_labels
from imgclf.model.optimizers import build_optimizer
from imgclf.params import parse_params
from imgclf.training.online_augmentation import OnlineAugmentation
from imgclf.training.classifier import channel_statistics
from imgclf.training.fit import fit_model
from imgclf.training.inputs import make_dataset
from imgclf.training.runtime import configure_accelerator
from imgclf.training.diagnostics import GradientProbe

model_path, previous = sys.argv[1], sys.argv[2]
params = parse_params(json.loads(sys.argv[3]))
# float32 here: the probe's formula check below is exact only in float32 (auto picks bfloat16
# on CPUs with AMX units; test_training_runtime.py covers that path).
setup = configure_accelerator("off", "auto")
keras.utils.set_random_seed(0)
images, labels = draw_synthetic(128, 0)
mean, std = channel_statistics(images)
model = build_model("resnet_small", ModelSpec((32, 32, 3), 10, mean, std, width=4,
                    spatial_dropout=params.reg.spatial_dropout, max_norm=params.reg.max_norm,
                    kernel_regularizer=keras.regularizers.L2(1e-4)))
online = OnlineAugmentation(crop_pixels=4, cutout_fraction=0.25, mixup_alpha=0.4)
train = make_dataset(images, labels, 10, 32, shuffle_seed=0, online=online)
result = fit_model(model, train, make_dataset(images[:32], labels[:32], 10, 32, shuffle_seed=None),
                   loss=build_loss(params.loss, class_weights_from_labels(labels, 10)),
                   optimizer=build_optimizer(params.optimizer, 4, 1), epochs=1,
                   callbacks=[], verbose=0, jit_compile=setup.jit_compile,
                   probe=(images[:8], np.eye(10, dtype="float32")[labels[:8]]))
kernels = [np.asarray(layer.get_weights()[0]) for layer in model.layers
           if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
max_unit_norm = max(float(np.sqrt((k**2).reshape(-1, k.shape[-1]).sum(0)).max()) for k in kernels)
model.save(model_path)
reloaded = keras.saving.load_model(model_path, compile=False, safe_mode=True)
probabilities = model.predict(images[:8], verbose=0)
same = bool(np.allclose(reloaded.predict(images[:8], verbose=0), probabilities, atol=1e-5))
other = None
if previous != "-":
    earlier = keras.saving.load_model(previous, compile=False, safe_mode=True)
    other = earlier.predict(images[:8], verbose=0).shape
# The gradient probe against the softmax-regression formula (as in test_diagnostics.py).
inputs = keras.Input(shape=(4,))
regression = keras.Model(inputs, keras.layers.Dense(
    3, activation="softmax", kernel_regularizer=keras.regularizers.L2(0.01))(inputs))
x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
y = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
_, _, gradients = GradientProbe(regression, keras.losses.CategoricalCrossentropy(), x, y)()
kernel, bias = regression.get_weights()
z = x @ kernel + bias
p = np.exp(z - z.max(axis=1, keepdims=True))
error = (p / p.sum(axis=1, keepdims=True) - y) / len(x)
expected = [x.T @ error + 2 * 0.01 * kernel, error.sum(axis=0)]
probe_error = max(float(np.abs(g - e).max()) for g, e in zip(gradients, expected))
print(json.dumps({"backend": keras.backend.backend(), "loss": result.history[0]["loss"],
                  "history": result.history[0], "probe_error": probe_error,
                  "policy": setup.precision_policy, "gpu": setup.gpu, "reload_matches": same,
                  "other_backend_output": other, "max_unit_norm": max_unit_norm}))
"""


# The classic levers under TensorFlow; new losses, optimizers, schedules and regularizers
# (written with keras.ops) under JAX.
CLASSIC = {"optimizer": {"name": "adam", "lr": 0.002, "schedule": "cosine"}}
NEW_LEVERS = {
    "loss": {"name": "poly1", "poly_epsilon": 1.0},
    "reg": {"spatial_dropout": 0.1, "max_norm": 0.5},
    "optimizer": {
        "name": "lion",
        "lr": 3e-4,
        "schedule": "one_cycle",
        "warmup_epochs": 0,
        "clip_norm": 1.0,
    },
}


def _run_backend(
    backend: str, model_path: Path, previous: Path | None, params: dict | None = None
) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    settings = json.dumps(params or CLASSIC)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_path), str(previous or "-"), settings],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_one_tiny_epoch_under_each_backend_and_models_cross_over(tmp_path: Path) -> None:
    tensorflow = _run_backend("tensorflow", tmp_path / "tf.keras", None)
    jax = _run_backend("jax", tmp_path / "jax.keras", tmp_path / "tf.keras", NEW_LEVERS)
    for outcome, name in ((tensorflow, "tensorflow"), (jax, "jax")):
        assert outcome["backend"] == name
        assert 0 < outcome["loss"] < 10
        assert outcome["reload_matches"] is True
        # The diagnostics columns, and the probe's gradient as the formula has it.
        row = outcome["history"]
        for column in ("data_loss", "val_data_loss", "reg_loss", "weight_norm", "probe_grad_norm"):
            assert 0 < abs(row[column]) < 1e4, (name, column, row)
        assert row["reg_loss"] == pytest.approx(row["loss"] - row["data_loss"])
        assert outcome["probe_error"] < 1e-5
        # No GPU here, and float32 asked for.
        assert outcome["gpu"] is False and outcome["policy"] == "float32"
    assert jax["other_backend_output"] == [8, 10]
    # reg.max_norm held every kernel under JAX's stateless optimizer step too.
    assert jax["max_unit_norm"] <= NEW_LEVERS["reg"]["max_norm"] * (1 + 1e-5)
    assert tensorflow["max_unit_norm"] > NEW_LEVERS["reg"]["max_norm"]


@pytest.mark.parametrize("pad", [0, 2])
def test_crop_flip_feeding_keeps_shapes_and_labels(pad: int) -> None:
    import numpy as np

    from imgclf.training.inputs import ArrayBatches
    from imgclf.training.online_augmentation import random_crop_flip

    images = np.arange(6 * 8 * 8 * 3, dtype=np.uint8).reshape(6, 8, 8, 3)
    labels = np.arange(6) % 3
    batches = ArrayBatches(
        images,
        labels,
        3,
        4,
        shuffle_seed=None,
        transform=lambda batch, one_hot: (
            random_crop_flip(batch, np.random.default_rng(0), pad),
            one_hot,
        ),
    )
    first, one_hot = batches[0]
    assert first.shape == (4, 8, 8, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(one_hot.argmax(axis=1), labels[:4])
    if pad == 0:
        # No room to shift: each image is itself or its mirror image.
        for index in range(4):
            assert np.array_equal(first[index], images[index]) or np.array_equal(
                first[index], images[index][:, ::-1]
            )


# fast_cnn with the fast recipe's own levers (the BatchNorm-shift SGD, lookahead, alternating
# flip, progressive resizing) under JAX, the GPU machine's backend: two tiny epochs, the first
# on 16-pixel images, then a plain reload.
FAST_SCRIPT = """
import json, sys
import keras, numpy as np
from imgclf.data.synthetic import draw_synthetic
from imgclf.model.lookahead import Lookahead
from imgclf.model.losses import build_loss
from imgclf.model.optimizers import ShiftScaledSGD, build_optimizer
from imgclf.training.online_augmentation import CurrentEpoch
from imgclf.params import parse_params
from imgclf.training.classifier import accept_any_image_size, build_classifier, learn_whitening
from imgclf.training.fit import fit_model
from imgclf.training.inputs import (
    CurrentEpochCallback, make_datasets, online_augmentation, progressive_epochs)

params = parse_params(json.loads(sys.argv[2]))
keras.utils.set_random_seed(0)
images, labels = draw_synthetic(96, 0)
whitening = learn_whitening(params.model, images, 0)
model = build_classifier(params.model, params.reg, (32, 32, 3), 10, images, whitening)
optimizer = build_optimizer(params.optimizer, 3, 2)
beta = model.get_layer("group1_bn1").beta
before = keras.ops.convert_to_numpy(beta).copy()
small_epochs = progressive_epochs(params, 2, images.shape[1:])
accept_any_image_size(model)
current = CurrentEpoch()
train, val = make_datasets((images, labels), (images[:32], labels[:32]), 10,
                           params.train.batch_size, params.train.seed,
                           online_augmentation(params.augment, small_epochs), current)
# The side of every training batch read, from the host (ArrayBatches) or the device
# (DeviceBatches, val's class too: the reads are watched through a subclass of train's alone).
sides, read, train_data = [], type(train).__getitem__, type(train).__name__
def watched(self, index):
    out = read(self, index)
    sides.append(int(out[0].shape[1]))
    return out
train.__class__ = type("Watched", (type(train),), {"__getitem__": watched})
result = fit_model(model, train, val, loss=build_loss(params.loss), optimizer=optimizer,
                   epochs=2, callbacks=[CurrentEpochCallback(current), Lookahead(2, 0.5, 6)],
                   verbose=0)
model.save(sys.argv[1])
reloaded = keras.saving.load_model(sys.argv[1], compile=False, safe_mode=True)
same = bool(np.allclose(reloaded.predict(images[:4], verbose=0),
                        model.predict(images[:4], verbose=0), atol=1e-5))
print(json.dumps({"backend": keras.backend.backend(), "loss": result.history[0]["loss"],
                  "shift_sgd": isinstance(optimizer, ShiftScaledSGD), "reload_matches": same,
                  "beta_moved": float(np.abs(keras.ops.convert_to_numpy(beta) - before).max()),
                  "whitened": model.get_layer("whiten").trainable is False,
                  "sides": sides, "saved_shape": list(reloaded.input_shape),
                  "train_data": train_data}))
"""
FAST_LEVERS = {
    "model": {"arch": "fast_cnn", "widths": [8, 16, 16]},
    "optimizer": {"name": "sgd", "lr": 0.1, "nesterov": True, "batchnorm_lr_multiplier": 64},
    "train": {"batch_size": 32},
    "augment": {
        "online_crop_flip": True,
        "online_crop_pixels": 2,
        "online_flip": "alternating",
        "progressive_side": 16,
        "progressive_share": 0.5,
    },
}


@pytest.mark.integration
def test_fast_cnn_and_its_levers_train_under_jax(tmp_path: Path) -> None:
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", FAST_SCRIPT, str(tmp_path / "fast.keras"), json.dumps(FAST_LEVERS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["backend"] == "jax" and 0 < outcome["loss"] < 10
    assert outcome["shift_sgd"] and outcome["whitened"] and outcome["reload_matches"]
    assert outcome["beta_moved"] > 0  # the stateless JAX step reached the scaled shifts
    # Epoch 1 on 16-pixel images, epoch 2 at full size (3 batches each, after the batch Keras
    # reads first to learn the input's shape); the saved file keeps 32.
    assert outcome["sides"][-6:] == [16, 16, 16, 32, 32, 32]
    assert outcome["saved_shape"] == [None, 32, 32, 3]
    assert outcome["train_data"] == "DeviceBatches"  # the resizing is made on the device too
