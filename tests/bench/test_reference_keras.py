"""bench/reference_keras.py: the hand-written reference sees its images in a new order every
epoch, although `keras.utils.set_random_seed` (as the script calls it to seed the weights)
makes a plain `fit(shuffle=True)` repeat one order."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
IMAGES, EPOCHS = 12, 3

# Run as the script runs, in a process of its own: a pytest worker may have turned on
# TensorFlow's op determinism (the train stage's deterministic mode), under which the unseeded
# shuffle the script relies on is refused, and clearing TensorFlow's global seed here should
# not reach the worker's later tests.
PROGRAM = f"""
import json, sys
import numpy as np
import keras
sys.path.insert(0, {str(BENCH)!r})
import reference_keras

seen = []

class Recorder(keras.layers.Layer):
    def compute_output_shape(self, shape):
        return shape

    def call(self, inputs):  # the input is the image's index
        seen.extend(int(i) for i in keras.ops.convert_to_numpy(inputs)[:, 0])
        return inputs

keras.utils.set_random_seed(0)  # as the script does before building its model
model = keras.Sequential([keras.Input((1,)), Recorder(), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
x = np.arange({IMAGES}, dtype="float32")[:, None]
seconds = reference_keras.fit_reshuffled(
    model, x, np.zeros_like(x), epochs={EPOCHS}, batch_size=4
)
print(json.dumps({{"seconds": seconds, "seen": seen}}))
"""


def test_every_epoch_sees_every_image_once_in_a_new_order() -> None:
    if importlib.util.find_spec("tensorflow") is None:  # not imported here: the child does
        pytest.skip("the reference script runs under TensorFlow, which is not installed")
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    seen = found["seen"]
    assert found["seconds"] > 0 and len(seen) == EPOCHS * IMAGES
    orders = [seen[epoch * IMAGES : (epoch + 1) * IMAGES] for epoch in range(EPOCHS)]
    assert all(sorted(order) == list(range(IMAGES)) for order in orders)
    # Two of three epochs drawing the same of 12! orders by chance is out of the question.
    assert len({tuple(order) for order in orders}) == EPOCHS
