"""Kernel regularizers from reg.l1 / reg.l2."""

from __future__ import annotations

import keras


def build_kernel_regularizer(l1: float, l2: float) -> keras.regularizers.Regularizer | None:
    """L1, L2, both (L1L2) or none, from the two penalty weights."""
    if l1 == 0 and l2 == 0:
        return None
    return keras.regularizers.L1L2(l1=l1, l2=l2)
