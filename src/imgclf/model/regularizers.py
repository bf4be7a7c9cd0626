"""Kernel regularizers (reg.l1 / reg.l2) and the max-norm constraint (reg.max_norm)."""

from __future__ import annotations

import keras

# The axes of one output unit's incoming weights: a Conv2D kernel is (height, width, in, out),
# a Dense kernel (in, out). Max-norm caps the norm over these axes, unit by unit.
_UNIT_AXES = {"conv": [0, 1, 2], "dense": 0}


def build_kernel_regularizer(l1: float, l2: float) -> keras.regularizers.Regularizer | None:
    """L1, L2, both (L1L2) or none, from the two penalty weights."""
    if l1 == 0 and l2 == 0:
        return None
    return keras.regularizers.L1L2(l1=l1, l2=l2)


def build_kernel_constraint(
    max_norm: float | None, kind: str
) -> keras.constraints.Constraint | None:
    """MaxNorm on each unit's incoming weights of a `conv` or `dense` kernel; None when off.

    Keras applies it after every optimizer step, rescaling any unit whose norm exceeds max_norm.
    """
    try:
        axes = _UNIT_AXES[kind]
    except KeyError:
        raise ValueError(f"unknown kernel kind {kind!r}; valid: {', '.join(_UNIT_AXES)}") from None
    if not max_norm:
        return None
    return keras.constraints.MaxNorm(max_value=max_norm, axis=axes)
