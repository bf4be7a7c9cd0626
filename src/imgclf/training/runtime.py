"""Where and how training runs: the Keras backend, seeds, the device and its precision.

Nothing here imports Keras at module level: the backend must be chosen before the first import.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import ImgclfError


def select_backend(backend: str) -> None:
    """Keras reads KERAS_BACKEND once, at import: set it before anything imports Keras."""
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise ImgclfError(
            f"train.backend is {backend!r} but Keras is already running on "
            f"{loaded.backend.backend()!r} in this process; run the stage in a fresh process"
        )
    if backend == "jax" and importlib.util.find_spec("jax") is None:
        raise ImgclfError("train.backend is 'jax' but jax is not installed: uv pip install jax")
    os.environ["KERAS_BACKEND"] = backend


@dataclass(frozen=True)
class AcceleratorSetup:
    """How training will run: what compute device, precision policy and XLA setting."""

    gpu: bool
    precision_policy: str
    jit_compile: bool | str  # "auto" leaves the choice to Keras


def gpu_visible() -> bool:
    """Whether the active Keras backend sees a GPU."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return False


# CPU flags of bfloat16 multiply instructions that oneDNN's convolutions use: Intel AMX tiles
# (Sapphire Rapids and later) and AVX-512 BF16 dot products (Intel Cooper Lake, AMD Zen 4).
BFLOAT16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_bfloat16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX-512 BF16); Linux only."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(
        BFLOAT16_FLAGS.intersection(line.split(":", 1)[1].split())
        for line in text.splitlines()
        if line.startswith("flags") and ":" in line
    )


def precision_policy(mixed_precision: str, gpu: bool, cpu_bfloat16: bool) -> str:
    """The Keras dtype policy for train.mixed_precision on this machine."""
    if mixed_precision == "on" or (mixed_precision == "auto" and gpu):
        return "mixed_float16"
    # float16 math only pays off on GPUs; on CPUs it is slower and less accurate. bfloat16 runs
    # the fast recipe about 2x as fast with AMX units and about 1.4x with AVX-512 BF16 (an AMD
    # Zen 4), for the same accuracy (docs/guide/fast-recipe.md, the precision row).
    if mixed_precision == "bfloat16" or (mixed_precision == "auto" and cpu_bfloat16):
        return "mixed_bfloat16"
    return "float32"


def configure_accelerator(mixed_precision: str, jit_compile: str) -> AcceleratorSetup:
    """Set the global precision policy (before any model is built) from auto/on/off choices."""
    import keras

    gpu = gpu_visible()
    policy = precision_policy(mixed_precision, gpu, not gpu and cpu_has_bfloat16_units())
    keras.mixed_precision.set_global_policy(policy)
    jit: bool | str = {"on": True, "off": False}.get(jit_compile, True if gpu else "auto")
    return AcceleratorSetup(gpu=gpu, precision_policy=policy, jit_compile=jit)


def make_reproducible(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and the backend; with `deterministic`, use deterministic kernels too.

    Seeds alone leave TensorFlow free to pick kernels whose float sums run in any order; op
    determinism pins them, so one seed, one data set and one set of params give one result.
    """
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
