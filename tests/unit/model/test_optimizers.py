"""The optimizer levers: schedule values by hand, Lion and Nadam steps in NumPy, clipping."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from imgclf.model.optimizers import DECAYS, OPTIMIZERS, WarmupSchedule, build_optimizer
from imgclf.model.optimizers import build_schedule as _build_schedule
from imgclf.params import OptimizerParams

# The hand-computed values below assume no warm-up and a full decay unless a test sets them
# (the shipped defaults warm up from 0.2 x lr and end at 0.07 x lr).
PLAIN_SCHEDULE = {"warmup_epochs": 0.0, "warmup_start_fraction": 0.0, "final_lr_fraction": 0.0}


def build_schedule(steps_per_epoch: int, epochs: int, **settings) -> WarmupSchedule:
    return _build_schedule(
        OptimizerParams(**{**PLAIN_SCHEDULE, **settings}), steps_per_epoch, epochs
    )


def rates(schedule: WarmupSchedule, steps) -> list[float]:
    return [float(keras.ops.convert_to_numpy(schedule(step))) for step in steps]


# --- Schedules: values at chosen steps against hand-computed ones ---------------------------


def test_step_schedule_at_listed_epochs_after_warmup() -> None:
    # 3 steps an epoch, 1 warm-up epoch, x0.1 after epochs 2 and 4 (counted from the start).
    schedule = build_schedule(
        3, 6, lr=0.5, schedule="step", step_epochs=[2, 4], decay_rate=0.1, warmup_epochs=1
    )
    steps = [0, 1, 2, 3, 5, 6, 11, 12, 17]
    expected = [0.5 / 3, 1.0 / 3, 0.5, 0.5, 0.5, 0.05, 0.05, 0.005, 0.005]
    assert rates(schedule, steps) == pytest.approx(expected, rel=1e-5)


def test_step_schedule_every_n_epochs() -> None:
    # Every 2 of 7 epochs (2 steps each): milestones after epochs 2, 4 and 6.
    schedule = build_schedule(2, 7, lr=1.0, schedule="step", step_every=2, decay_rate=0.5)
    steps = [0, 3, 4, 7, 8, 11, 12, 13]
    assert rates(schedule, steps) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125])


def test_exponential_schedule_spreads_the_per_epoch_rate_over_steps() -> None:
    schedule = build_schedule(4, 5, lr=0.2, schedule="exponential", decay_rate=0.5)
    # 0.5 per epoch of 4 steps: 0.5 ** (step / 4).
    assert rates(schedule, [0, 2, 4, 8, 10]) == pytest.approx(
        [0.2, 0.2 * 0.5**0.5, 0.1, 0.05, 0.2 * 0.5**2.5], rel=1e-5
    )


def test_cosine_with_warmup_from_params() -> None:
    schedule = build_schedule(4, 4, lr=0.1, schedule="cosine", warmup_epochs=1)
    # 4 warm-up steps of 0.025 each, then half a cosine over the last 12 steps.
    expected = [0.025, 0.1, 0.1, 0.05, 0.1 * 0.5 * (1 + math.cos(math.pi * 9 / 12)), 0.0]
    assert rates(schedule, [0, 3, 4, 10, 13, 16]) == pytest.approx(expected, abs=1e-7)


def test_one_cycle_rises_then_anneals() -> None:
    # 20 steps, a quarter of them (5) rising: lr/25 -> lr, then lr -> lr/25/1e4 by step 20.
    peak = 0.4
    schedule = build_schedule(10, 2, lr=peak, schedule="one_cycle", one_cycle_rise_fraction=0.25)
    low, final = peak / 25, peak / 25 / 1e4

    def half_cosine(start: float, end: float, progress: float) -> float:
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))

    expected = [
        low,
        half_cosine(low, peak, 2 / 5),
        peak,
        half_cosine(peak, final, 5 / 15),
        half_cosine(peak, final, 12 / 15),
        final,
        final,
    ]
    assert rates(schedule, [0, 2, 5, 10, 17, 20, 25]) == pytest.approx(expected, rel=1e-5)
    values = rates(schedule, range(21))
    assert values.index(max(values)) == 5
    assert all(a < b for a, b in zip(values[:5], values[1:6], strict=True))
    assert all(a > b for a, b in zip(values[5:-1], values[6:], strict=True))


@pytest.mark.parametrize("name", ["constant", "cosine", "exponential", "step"])
def test_warmup_ramps_every_schedule_to_its_peak(name: str) -> None:
    extra = {"step_every": 2} if name == "step" else {}
    schedule = build_schedule(4, 5, lr=0.2, schedule=name, warmup_epochs=1.5, **extra)
    # 6 warm-up steps: (step + 1) / 6 of the peak; then the schedule's own first value.
    assert rates(schedule, [0, 2, 5]) == pytest.approx([0.2 / 6, 0.1, 0.2], rel=1e-5)
    assert rates(schedule, [6])[0] == pytest.approx(0.2, rel=1e-5)


def test_linear_schedule_warms_up_from_a_fraction_then_falls_to_its_final_share() -> None:
    # 10 steps an epoch, 2 epochs: 5 warm-up steps from 0.2 x lr, then 15 steps down to 0.07 x.
    schedule = build_schedule(
        10,
        2,
        lr=1.0,
        schedule="linear",
        warmup_epochs=0.5,
        warmup_start_fraction=0.2,
        final_lr_fraction=0.07,
    )
    warm = [0.2 + 0.8 * (step + 1) / 5 for step in range(4)]
    assert rates(schedule, range(4)) == pytest.approx(warm, rel=1e-5)
    after = [1.0 - 0.93 * (step - 5) / 15 for step in (5, 10, 15, 20)]
    assert rates(schedule, [5, 10, 15, 20]) == pytest.approx(after, rel=1e-5)
    assert rates(schedule, [40])[0] == pytest.approx(0.07, rel=1e-5)  # held after the end


def test_batchnorm_shifts_take_multiplied_sgd_steps() -> None:
    from imgclf.model.optimizers import ShiftScaledSGD

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(3,))
    outputs = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(2, name="d")(inputs))
    model = keras.Model(inputs, outputs)
    variables = model.trainable_variables
    gradients = [keras.ops.ones_like(variable) for variable in variables]
    before = [numpy_of(variable) for variable in variables]
    optimizer = build_optimizer(
        OptimizerParams(
            name="sgd", lr=0.1, momentum=0.0, schedule="constant", batchnorm_lr_multiplier=64
        ),
        steps_per_epoch=1,
        epochs=1,
    )
    assert isinstance(optimizer, ShiftScaledSGD)
    optimizer.apply(gradients, variables)
    for variable, start in zip(variables, before, strict=True):
        step = 0.1 * (64 if variable.path.endswith("/beta") else 1)
        np.testing.assert_allclose(
            numpy_of(variable), start - step, rtol=1e-6, err_msg=variable.path
        )
    assert any(variable.path.endswith("/beta") for variable in variables)


def test_unknown_schedule_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown optimizer.schedule 'triangular'") as caught:
        WarmupSchedule(0.1, 0, 10, decay="triangular")
    for name in DECAYS:
        assert name in str(caught.value)


# --- Optimizer steps against NumPy ------------------------------------------------------------

START = np.array([0.5, -1.0, 2.0], dtype=np.float32)
GRADIENTS = [np.array([0.3, -0.2, 0.05]), np.array([-0.1, -0.4, 0.2])]


def numpy_of(variable: keras.Variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(keras.ops.copy(variable))


def run_steps(name: str, **settings) -> np.ndarray:
    optimizer = build_optimizer(
        OptimizerParams(name=name, schedule="constant", **settings), steps_per_epoch=1, epochs=1
    )
    variable = keras.Variable(START.copy())
    for gradient in GRADIENTS:
        optimizer.apply([keras.ops.convert_to_tensor(gradient.astype(np.float32))], [variable])
    return numpy_of(variable)


def test_lion_steps_match_numpy() -> None:
    lr, beta_1, beta_2 = 0.01, 0.9, 0.99  # Keras' (and the Lion paper's) default betas
    weights, momentum = START.astype(np.float64), np.zeros(3)
    for gradient in GRADIENTS:
        update = np.sign(beta_1 * momentum + (1 - beta_1) * gradient)
        weights = weights - lr * update
        momentum = beta_2 * momentum + (1 - beta_2) * gradient
    np.testing.assert_allclose(run_steps("lion", lr=lr), weights, rtol=1e-6)


def test_nadam_steps_match_numpy() -> None:
    """Dozat's Nadam with the 0.96 momentum schedule, as Keras implements it."""
    lr, beta_1, beta_2, epsilon = 0.01, 0.9, 0.999, 1e-7
    weights, m, v, u_product = START.astype(np.float64), np.zeros(3), np.zeros(3), 1.0
    for t, gradient in enumerate(GRADIENTS, start=1):
        u_t = beta_1 * (1 - 0.5 * 0.96**t)
        u_next = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product *= u_t
        m = beta_1 * m + (1 - beta_1) * gradient
        v = beta_2 * v + (1 - beta_2) * gradient**2
        m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * gradient / (1 - u_product)
        v_hat = v / (1 - beta_2**t)
        weights = weights - lr * m_hat / (np.sqrt(v_hat) + epsilon)
    np.testing.assert_allclose(run_steps("nadam", lr=lr), weights, rtol=1e-5)


@pytest.mark.parametrize(("clip_norm", "scale"), [(None, 1.0), (1.0, 0.2), (10.0, 1.0)])
def test_clip_norm_rescales_the_global_gradient_norm(clip_norm, scale: float) -> None:
    # Gradients 3 and 4 on two variables: global norm 5; clipping to 1 scales both by 1/5.
    optimizer = build_optimizer(
        OptimizerParams(name="sgd", lr=1.0, momentum=0.0, schedule="constant", clip_norm=clip_norm),
        steps_per_epoch=1,
        epochs=1,
    )
    first, second = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(1, "float32"))
    gradients = [np.array([3.0, 0.0], "float32"), np.array([4.0], "float32")]
    optimizer.apply([keras.ops.convert_to_tensor(g) for g in gradients], [first, second])
    np.testing.assert_allclose(numpy_of(first), [-3.0 * scale, 0.0], rtol=1e-6)
    np.testing.assert_allclose(numpy_of(second), [-4.0 * scale], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_takes_clipping_and_weight_decay(name: str) -> None:
    optimizer = build_optimizer(
        OptimizerParams(name=name, clip_norm=0.5, weight_decay=0.01), steps_per_epoch=2, epochs=2
    )
    assert optimizer.global_clipnorm == 0.5
    assert optimizer.weight_decay == pytest.approx(0.01)


def test_unknown_optimizer_lists_every_valid_name() -> None:
    with pytest.raises(ValueError, match="unknown optimizer.name 'adagrad'") as caught:
        build_optimizer(OptimizerParams.model_construct(name="adagrad"), 1, 1)
    for name in OPTIMIZERS:
        assert name in str(caught.value)
