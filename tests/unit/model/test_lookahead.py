"""imgclf.model.lookahead: the averaging schedule and the callback's update, by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgclf.model.lookahead import Lookahead, lookahead_decay


def test_decay_grows_as_the_cube_of_progress() -> None:
    assert lookahead_decay(0, 100, 0.8) == 0.0
    assert lookahead_decay(50, 100, 0.8) == pytest.approx(0.8 / 8)
    assert lookahead_decay(100, 100, 0.8) == pytest.approx(0.8)
    assert lookahead_decay(500, 100, 0.8) == pytest.approx(0.8)  # capped at the end


def _model() -> keras.Model:
    inputs = keras.Input(shape=(4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    frozen = keras.layers.Dense(2, name="frozen", trainable=False)
    model = keras.Model(inputs, frozen(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_every_k_steps_the_weights_become_the_running_average() -> None:
    model = _model()
    callback = Lookahead(every=2, final_decay=0.9, total_steps=4)
    callback.set_model(model)
    callback.on_train_begin()
    names = [variable.path for variable in callback._variables]
    # Trainable weights and BatchNorm's running statistics; not the frozen layer.
    assert any(name.endswith("moving_mean") for name in names)
    assert not any(name.startswith("frozen") for name in names)
    start = [keras.ops.convert_to_numpy(v).copy() for v in callback._variables]
    moved = [value + 1.0 for value in start]
    for variable, value in zip(callback._variables, moved, strict=True):
        variable.assign(value)
    callback.on_train_batch_end(0)  # step 1: not a multiple of 2, nothing happens
    np.testing.assert_allclose(keras.ops.convert_to_numpy(callback._variables[0]), moved[0])
    callback.on_train_batch_end(1)  # step 2: decay = 0.9 * (2/4)^3
    decay = 0.9 * 0.5**3
    for variable, old, new in zip(callback._variables, start, moved, strict=True):
        expected = decay * old + (1 - decay) * new
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-6)


def test_fit_ends_on_the_average_and_still_learns() -> None:
    keras.utils.set_random_seed(0)
    model = _model()
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.stack([x[:, 0], -x[:, 1]], axis=1)
    before = model.evaluate(x, y, verbose=0)
    callback = Lookahead(every=3, final_decay=0.5, total_steps=40)
    model.fit(x, y, batch_size=8, epochs=5, verbose=0, callbacks=[callback])
    for variable, average in zip(callback._variables, callback._averages, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), average, rtol=1e-6)
    assert model.evaluate(x, y, verbose=0) < before


def test_a_run_shorter_than_k_steps_keeps_its_trained_weights() -> None:
    keras.utils.set_random_seed(0)
    model = _model()
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.stack([x[:, 0], -x[:, 1]], axis=1)
    initial = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    callback = Lookahead(every=5, final_decay=0.774, total_steps=2)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])  # 2 steps
    trained = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    # The old average would be the initial weights: the trained ones must have stayed.
    assert any(not np.allclose(a, b) for a, b in zip(initial, trained, strict=True))


def test_steps_after_the_last_update_are_folded_in_at_the_end() -> None:
    model = _model()
    callback = Lookahead(every=2, final_decay=0.5, total_steps=3)
    callback.set_model(model)
    callback.on_train_begin()
    start = [keras.ops.convert_to_numpy(v).copy() for v in callback._variables]
    for step in range(3):  # an update at step 2, then one more step
        for variable, value in zip(callback._variables, start, strict=True):
            variable.assign(value + step + 1.0)
        callback.on_train_batch_end(step)
    at_two = [average.copy() for average in callback._averages]
    callback.on_train_end()
    decay = 0.5  # progress 3/3
    for variable, average, value in zip(callback._variables, at_two, start, strict=True):
        expected = decay * average + (1 - decay) * (value + 3.0)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected, rtol=1e-6)
