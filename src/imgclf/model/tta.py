"""Test-time augmentation built into the saved model, so every consumer scores the same views."""

from __future__ import annotations

import keras
from keras import layers, ops

TTA_MODES = ("none", "flip", "flip_translate")


def with_test_time_augmentation(model: keras.Model, mode: str) -> keras.Model:
    """`model` averaged over extra views of each image; `none` returns it unchanged.

    flip: the image and its mirror, equally weighted. flip_translate: half that, plus a
    quarter each for the same pair shifted one pixel up-left and down-right (mirror-padded),
    the speed records' level-2 TTA. Only stock layers and keras.ops, so the file still loads
    with plain `keras.saving.load_model`.
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown evaluate.tta {mode!r}; valid: {', '.join(TTA_MODES)}")
    if mode == "none":
        return model
    source = model.inputs[0]
    inputs = keras.Input(shape=source.shape[1:], dtype=source.dtype, name="image")

    def score(view: keras.KerasTensor) -> keras.KerasTensor:
        outputs = model(view)
        return outputs[0] if isinstance(outputs, list) else outputs

    def mirrored(view: keras.KerasTensor) -> keras.KerasTensor:
        return layers.Average()([score(view), score(ops.flip(view, axis=2))])

    averaged = mirrored(inputs)
    if mode == "flip_translate":
        height, width = source.shape[1], source.shape[2]
        padded = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        shifted = [
            mirrored(padded[:, :height, :width, :]),
            mirrored(padded[:, 2:, 2:, :]),
        ]
        averaged = layers.Average()([averaged, layers.Average()(shifted)])
    return keras.Model(inputs, averaged, name=f"{model.name}_tta")
