"""Optimizer and learning-rate schedule registries."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
from keras import ops

from imgclf.model.muon import build_muon
from imgclf.params import OptimizerParams, step_epochs_used, warmup_epochs_used


@keras.saving.register_keras_serializable(package="imgclf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from start_fraction x the peak rate to the peak, then one of DECAYS.

    one_cycle: half-cosine rise from lr/25 to lr over the first rise_fraction of the steps,
    then half-cosine anneal to lr/2.5e5 by the last step (no separate warm-up).
    """

    def __init__(
        self,
        peak_learning_rate: float,
        warmup_steps: int,
        total_steps: int,
        decay: str = "constant",
        decay_rate_per_step: float = 1.0,
        milestone_steps: Sequence[int] = (),
        milestone_decay_rate: float = 1.0,
        rise_fraction: float = 0.3,
        start_fraction: float = 0.0,
        final_fraction: float = 0.0,
    ) -> None:
        if decay not in DECAYS:
            raise ValueError(f"unknown optimizer.schedule {decay!r}; valid: {', '.join(DECAYS)}")
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay
        self.decay_rate_per_step = decay_rate_per_step
        self.milestone_steps = [int(step) for step in milestone_steps]
        self.milestone_decay_rate = milestone_decay_rate
        self.rise_fraction = rise_fraction
        self.start_fraction = start_fraction
        self.final_fraction = final_fraction

    def __call__(self, step):  # noqa: D102 - Keras calls this with the optimizer's iteration
        step = ops.cast(step, "float32")
        warmup = float(max(self.warmup_steps, 1))
        progress = ops.minimum((step + 1.0) / warmup, 1.0)
        share = self.start_fraction + (1.0 - self.start_fraction) * progress
        warm = self.peak_learning_rate * share
        rate = DECAYS[self.decay](self, step)
        if self.warmup_steps > 0:
            return ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self) -> dict:
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "decay_rate_per_step": self.decay_rate_per_step,
            "milestone_steps": self.milestone_steps,
            "milestone_decay_rate": self.milestone_decay_rate,
            "rise_fraction": self.rise_fraction,
            "start_fraction": self.start_fraction,
            "final_fraction": self.final_fraction,
        }


# Each decay maps (schedule, step) to the rate after any warm-up; warm-up, when on, replaces
# the first warmup_steps. constant, cosine and exponential start once warm-up ends; step
# counts its milestones and one_cycle its phases from the first step of training.


def _steps_after_warmup(schedule: WarmupSchedule, step):
    return ops.maximum(step - schedule.warmup_steps, 0.0)


def _constant(schedule: WarmupSchedule, step):
    return schedule.peak_learning_rate * ops.ones_like(step)


def _cosine(schedule: WarmupSchedule, step):
    span = float(max(schedule.total_steps - schedule.warmup_steps, 1))
    progress = ops.minimum(_steps_after_warmup(schedule, step) / span, 1.0)
    return schedule.peak_learning_rate * 0.5 * (1.0 + ops.cos(math.pi * progress))


def _linear(schedule: WarmupSchedule, step):
    """From the peak straight down to final_fraction x the peak at the last step."""
    span = float(max(schedule.total_steps - schedule.warmup_steps, 1))
    progress = ops.minimum(_steps_after_warmup(schedule, step) / span, 1.0)
    final = schedule.final_fraction
    return schedule.peak_learning_rate * (1.0 - (1.0 - final) * progress)


def _exponential(schedule: WarmupSchedule, step):
    after = _steps_after_warmup(schedule, step)
    return schedule.peak_learning_rate * ops.power(schedule.decay_rate_per_step, after)


def _step(schedule: WarmupSchedule, step):
    passed = ops.zeros_like(step)
    for milestone in schedule.milestone_steps:
        passed = passed + ops.cast(step >= milestone, "float32")
    return schedule.peak_learning_rate * ops.power(schedule.milestone_decay_rate, passed)


def _half_cosine(start: float, end: float, progress):
    """From start (progress 0) to end (progress 1) along half a cosine wave."""
    return end + (start - end) * 0.5 * (1.0 + ops.cos(math.pi * progress))


def _one_cycle(schedule: WarmupSchedule, step):
    peak = schedule.peak_learning_rate
    low, final = peak / ONE_CYCLE_START_DIVISOR, peak / ONE_CYCLE_FINAL_DIVISOR
    rise = float(max(round(schedule.rise_fraction * schedule.total_steps), 1))
    fall = float(max(schedule.total_steps - rise, 1))
    rising = _half_cosine(low, peak, ops.minimum(step / rise, 1.0))
    falling = _half_cosine(peak, final, ops.minimum(ops.maximum(step - rise, 0.0) / fall, 1.0))
    return ops.where(step < rise, rising, falling)


# One-cycle starts at lr / 25 and ends at lr / 25 / 1e4, the defaults of PyTorch's OneCycleLR.
ONE_CYCLE_START_DIVISOR = 25.0
ONE_CYCLE_FINAL_DIVISOR = 25.0 * 1e4

DECAYS: dict[str, Callable[[WarmupSchedule, object], object]] = {
    "constant": _constant,
    "cosine": _cosine,
    "exponential": _exponential,
    "step": _step,
    "one_cycle": _one_cycle,
    "linear": _linear,
}


def build_schedule(params: OptimizerParams, steps_per_epoch: int, epochs: int) -> WarmupSchedule:
    """The learning rate per step for optimizer.schedule, with optimizer.warmup_epochs.

    The warm-up and the step milestones are the ones imgclf.params.schedule derives for
    train.epochs (warm-up clipped to half of training, none with one_cycle; default milestones).
    """
    if params.schedule not in DECAYS:
        raise ValueError(
            f"unknown optimizer.schedule {params.schedule!r}; valid: {', '.join(DECAYS)}"
        )
    milestone_epochs = step_epochs_used(params, epochs)
    return WarmupSchedule(
        peak_learning_rate=params.lr,
        warmup_steps=int(round(warmup_epochs_used(params, epochs) * steps_per_epoch)),
        total_steps=steps_per_epoch * epochs,
        decay=params.schedule,
        # decay_rate is per epoch in params.yaml; spread it evenly over the epoch's steps.
        decay_rate_per_step=params.decay_rate ** (1.0 / steps_per_epoch),
        milestone_steps=[epoch * steps_per_epoch for epoch in milestone_epochs],
        milestone_decay_rate=params.decay_rate,
        rise_fraction=params.one_cycle_rise_fraction,
        start_fraction=params.warmup_start_fraction,
        final_fraction=params.final_lr_fraction,
    )


def _common(params: OptimizerParams) -> dict:
    """Settings every optimizer takes: decoupled weight decay and global-norm clipping."""
    return {"weight_decay": params.weight_decay or None, "global_clipnorm": params.clip_norm}


class ShiftScaledSGD(keras.optimizers.SGD):
    """SGD whose steps on BatchNorm shifts (beta) are `shift_multiplier` times larger.

    The speed records train BatchNorm biases at 64x the rate of the weights: with the scale
    frozen, a shift is the only thing a BatchNorm learns, and it needs to move far. For SGD a
    gradient scaled by m is a learning rate scaled by m, momentum included, which is how it is
    done here, for every backend.
    """

    def __init__(self, *args, shift_multiplier: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.shift_multiplier = shift_multiplier

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables or self._trainable_variables
        scaled = [
            grad * self.shift_multiplier if _is_batchnorm_shift(variable) else grad
            for grad, variable in zip(grads, variables, strict=True)
        ]
        return super().apply(scaled, trainable_variables)

    def get_config(self) -> dict:
        return {**super().get_config(), "shift_multiplier": self.shift_multiplier}


def _is_batchnorm_shift(variable) -> bool:
    return variable.path.endswith("/beta")


def _sgd(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    settings = {"momentum": params.momentum, "nesterov": params.nesterov, **_common(params)}
    if params.batchnorm_lr_multiplier != 1.0:
        return ShiftScaledSGD(
            learning_rate=rate, shift_multiplier=params.batchnorm_lr_multiplier, **settings
        )
    return keras.optimizers.SGD(learning_rate=rate, **settings)


def _adam(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=rate, **_common(params))


def _adamw(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    # AdamW takes 0 as "no decay" (None would mean its own default of 0.004).
    settings = {**_common(params), "weight_decay": params.weight_decay}
    return keras.optimizers.AdamW(learning_rate=rate, **settings)


def _rmsprop(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.RMSprop(learning_rate=rate, momentum=params.momentum, **_common(params))


def _nadam(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    return keras.optimizers.Nadam(learning_rate=rate, **_common(params))


def _lion(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    # Lion's sign updates are larger than Adam's: its authors use a 3-10x smaller lr.
    return keras.optimizers.Lion(learning_rate=rate, **_common(params))


def _muon(params: OptimizerParams, rate) -> keras.optimizers.Optimizer:
    # The speed record's split: Muon for conv filters, Nesterov SGD (optimizer.lr) for the rest.
    return build_muon(
        rate,
        muon_lr_ratio=params.muon_lr_ratio,
        muon_momentum=params.muon_momentum,
        sgd_momentum=params.momentum,
        nesterov=params.nesterov,
        weight_decay=params.weight_decay,
        shift_multiplier=params.batchnorm_lr_multiplier,
        global_clipnorm=params.clip_norm,
    )


OPTIMIZERS: dict[str, Callable[[OptimizerParams, object], keras.optimizers.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
    "nadam": _nadam,
    "lion": _lion,
    "muon": _muon,
}


def build_optimizer(
    params: OptimizerParams, steps_per_epoch: int, epochs: int
) -> keras.optimizers.Optimizer:
    """Build optimizer.name with its learning-rate schedule."""
    try:
        builder = OPTIMIZERS[params.name]
    except KeyError:
        raise ValueError(
            f"unknown optimizer.name {params.name!r}; valid: {', '.join(OPTIMIZERS)}"
        ) from None
    return builder(params, build_schedule(params, steps_per_epoch, epochs))
