"""How the epoch schedules (learning rate, progressive resizing) fit train.epochs: used values,
notes and checks."""

from __future__ import annotations

import math

from imgclf.params.base import FieldError
from imgclf.params.data import AugmentParams
from imgclf.params.recipe import OptimizerParams

# Warm-up longer than this share of training leaves too little of it at the peak rate to be
# what anyone meant: `-S train.epochs=1` with the shipped 1-epoch warm-up gets half an epoch.
WARMUP_MAX_SHARE = 0.5
# schedule 'step' with neither step_epochs nor step_every: step down at these shares of
# training (the classic 50%/75% milestones of ResNet-style recipes).
DEFAULT_STEP_SHARES = (0.5, 0.75)


def warmup_epochs_used(optimizer: OptimizerParams, epochs: int) -> float:
    """The warm-up a run gets: none with one_cycle (its own rise), at most half of training."""
    if optimizer.schedule == "one_cycle":
        return 0.0
    return min(optimizer.warmup_epochs, WARMUP_MAX_SHARE * epochs)


# Progressive resizing feeds smaller images: only models that pool globally take any size
# (seed_cnn's Flatten -> Dense needs the size it was built for).
RESIZABLE_ARCHS = ("fast_cnn", "resnet_small")


def progressive_epochs_used(augment: AugmentParams, arch: str, epochs: int) -> int:
    """How many first epochs train at augment.progressive_side (0: full size throughout)."""
    if augment.progressive_side is None or arch not in RESIZABLE_ARCHS:
        return 0
    return math.floor(augment.progressive_share * epochs)


def step_epochs_used(optimizer: OptimizerParams, epochs: int) -> list[int]:
    """The epochs where schedule 'step' multiplies the rate (none for other schedules)."""
    if optimizer.schedule != "step":
        return []
    if optimizer.step_epochs is not None:
        return list(optimizer.step_epochs)
    if optimizer.step_every is not None:
        return list(range(optimizer.step_every, epochs, optimizer.step_every))
    warmup = warmup_epochs_used(optimizer, epochs)
    shares = (round(share * epochs) for share in DEFAULT_STEP_SHARES)
    return sorted({epoch for epoch in shares if warmup < epoch < epochs})


def schedule_notes(optimizer: OptimizerParams, epochs: int) -> dict[str, str]:
    """How the run adapts the schedule settings to train.epochs: MLflow tag name -> message."""
    notes: dict[str, str] = {}
    warmup = optimizer.warmup_epochs
    if optimizer.schedule == "one_cycle" and warmup > 0:
        notes["warning.warmup_ignored"] = (
            f"optimizer.warmup_epochs ({warmup}) is not used with optimizer.schedule "
            "'one_cycle', which has its own rise (optimizer.one_cycle_rise_fraction); set "
            "optimizer.warmup_epochs to 0 to silence this note"
        )
    elif warmup > WARMUP_MAX_SHARE * epochs:
        notes["warning.warmup_clipped"] = (
            f"optimizer.warmup_epochs ({warmup}) is more than half of train.epochs ({epochs}): "
            f"warming up for {warmup_epochs_used(optimizer, epochs):g} epochs instead"
        )
    if (
        optimizer.schedule == "step"
        and optimizer.step_epochs is None
        and optimizer.step_every is None
    ):
        used = step_epochs_used(optimizer, epochs)
        notes["warning.step_epochs_default"] = (
            "optimizer.schedule 'step' without optimizer.step_epochs or optimizer.step_every: "
            + (
                f"stepping down after epochs {used}"
                if used
                else f"train.epochs ({epochs}) is too short to step down, the rate stays constant"
            )
        )
    return notes


def check_schedule(optimizer: OptimizerParams, epochs: int) -> None:
    listed, every = optimizer.step_epochs, optimizer.step_every
    warmup = warmup_epochs_used(optimizer, epochs)
    # The first epoch that may hold a step: after the warm-up, before the end.
    first = math.floor(warmup) + 1
    if listed is not None and every is not None:
        raise FieldError(
            "optimizer.step_every",
            "optimizer.step_epochs and optimizer.step_every both set: give one of them (a list "
            "of epochs or a period in epochs) and set optimizer.step_every to null",
        )
    if optimizer.schedule != "step" and (listed is not None or every is not None):
        raise FieldError(
            "optimizer.step_epochs" if listed is not None else "optimizer.step_every",
            "optimizer.step_epochs and optimizer.step_every apply to schedule 'step' only, "
            f"not {optimizer.schedule!r}: set them to null",
        )
    if listed is not None:
        example = [epoch for epoch in (first, (first + epochs) // 2) if first <= epoch < epochs]
        works = f" such as {sorted(set(example))}" if example else ""
        if not listed or any(b <= a for a, b in zip(listed, listed[1:], strict=False)):
            raise FieldError(
                "optimizer.step_epochs",
                f"optimizer.step_epochs {list(listed)} must be a non-empty, strictly increasing "
                f"list of epochs{works}",
            )
        for epoch in listed:
            if not warmup < epoch < epochs:
                raise FieldError(
                    "optimizer.step_epochs",
                    f"optimizer.step_epochs: epoch {epoch} is not after the warm-up ({warmup:g} "
                    f"epochs) and before the end (train.epochs {epochs}), so that step would "
                    f"never change the rate: use epochs from {first} to {epochs - 1}{works}",
                )
    if every is not None and not warmup < every < epochs:
        works = (
            f"set optimizer.step_every to {first}"
            if first < epochs
            else "raise train.epochs or use another optimizer.schedule"
        )
        raise FieldError(
            "optimizer.step_every",
            f"optimizer.step_every ({every}) must be after the warm-up ({warmup:g} epochs) and "
            f"below train.epochs ({epochs}), or its first step falls in the warm-up or never "
            f"comes: {works}",
        )
