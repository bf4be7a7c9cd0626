"""bench/reference_keras.py: the hand-written reference sees its images in a new order every
epoch, although `keras.utils.set_random_seed` (as the script calls it to seed the weights)
makes a plain `fit(shuffle=True)` repeat one order."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

keras = pytest.importorskip("keras")
reference = pytest.importorskip("reference_keras")

IMAGES, BATCH, EPOCHS = 12, 4, 3


class _Recorder(keras.layers.Layer):
    """Passes its input on and notes which images (the input is the image's index) came in."""

    def __init__(self, seen: list[int]) -> None:
        super().__init__()
        self.note = seen.extend  # a list attribute would be Keras' tracked copy, not `seen`

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        self.note(int(i) for i in keras.ops.convert_to_numpy(inputs)[:, 0])
        return inputs


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow-backend script")
def test_every_epoch_sees_every_image_once_in_a_new_order() -> None:
    keras.utils.set_random_seed(0)  # as the script does before building its model
    seen: list[int] = []
    model = keras.Sequential([keras.Input((1,)), _Recorder(seen), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    x = np.arange(IMAGES, dtype="float32")[:, None]
    y = np.zeros((IMAGES, 1), dtype="float32")
    seconds = reference.fit_reshuffled(model, x, y, epochs=EPOCHS, batch_size=BATCH)
    orders = [seen[epoch * IMAGES : (epoch + 1) * IMAGES] for epoch in range(EPOCHS)]
    assert seconds > 0 and len(seen) == EPOCHS * IMAGES
    assert all(sorted(order) == list(range(IMAGES)) for order in orders)
    # 12 images: two epochs drawing the same of 12! orders by chance is out of the question.
    assert len({tuple(order) for order in orders}) == EPOCHS
