"""What a training run records about where it came from: code, data, device and versions."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _git_commit(project_root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def describe_device() -> dict[str, str]:
    """The device training runs on and its name, for run tags."""
    import keras  # imported here: reading where a store is must not start a backend

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return {"device": "GPU", "accelerator": device.device_kind}
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return {"device": "GPU", "accelerator": details.get("device_name", gpus[0].name)}
    return {"device": "CPU", "accelerator": _cpu_name()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_tags(environ: Mapping[str, str], project_root: Path, data_hash: str) -> dict[str, str]:
    """Tags every training run carries: code, DVC experiment, data, device and versions."""
    import keras

    from imgclf import __version__

    tags = {
        "data.hash": data_hash,
        "keras.version": keras.__version__,
        "keras.backend": keras.backend.backend(),
        "imgclf.version": __version__,
        **describe_device(),
    }
    for package in ("tensorflow", "jax"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            tags[f"{package}.version"] = importlib.metadata.version(package)
    commit = _git_commit(project_root)
    if commit:
        tags["git.commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    for variable, tag in (
        ("DVC_EXP_NAME", "dvc.exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev"),
    ):
        if environ.get(variable):
            tags[tag] = environ[variable]
    return tags


def training_tags(
    environ: Mapping[str, str],
    project_root: Path,
    data_hash: str,
    source_info: Mapping[str, Any],
    accelerator: Any,
) -> dict[str, str]:
    """run_tags plus what only training knows: data source and checksum, precision, XLA.

    accelerator is the training.AcceleratorSetup in force.
    """
    tags = run_tags(environ, project_root, data_hash)
    # augment, upstream, refuses data that failed validate: a training run's data passed.
    tags["data.validation"] = "passed"
    tags["data.source"] = str(source_info["source"])
    if source_info.get("checksum"):
        tags["data.checksum"] = str(source_info["checksum"])
    tags["precision.policy"] = accelerator.precision_policy
    tags["jit_compile"] = str(accelerator.jit_compile)
    return tags
