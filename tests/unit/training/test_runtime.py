"""training/runtime.py: the precision policy, auto's choice per machine, and a bfloat16 fit."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from imgclf.training.runtime import configure_accelerator, cpu_has_bfloat16_units, precision_policy


@pytest.mark.parametrize(
    ("setting", "gpu", "cpu_bfloat16", "expected"),
    [
        ("auto", True, False, "mixed_float16"),
        ("auto", False, True, "mixed_bfloat16"),
        ("auto", False, False, "float32"),
        ("on", False, True, "mixed_float16"),
        ("bfloat16", False, False, "mixed_bfloat16"),
        ("off", True, True, "float32"),
    ],
)
def test_policy_for_each_setting_and_machine(setting, gpu, cpu_bfloat16, expected) -> None:
    assert precision_policy(setting, gpu, cpu_bfloat16) == expected


@pytest.mark.integration
def test_a_bfloat16_fit_learns_and_the_saved_file_reloads(tmp_path: Path) -> None:
    from imgclf.data.synthetic import draw_synthetic
    from imgclf.model.architectures import ModelSpec, build_model
    from imgclf.training.classifier import channel_statistics
    from imgclf.training.fit import compile_model

    try:
        setup = configure_accelerator("bfloat16", "auto")
        assert setup.precision_policy == "mixed_bfloat16"
        keras.utils.set_random_seed(0)
        images, labels = draw_synthetic(256, 0)
        mean, std = channel_statistics(images)
        spec = ModelSpec((32, 32, 3), 10, mean, std, widths=(8, 16, 16))
        model = build_model("fast_cnn", spec)
        assert model.get_layer("group1_conv1").compute_dtype == "bfloat16"
        assert model.get_layer("probabilities").compute_dtype == "float32"
        compile_model(
            model,
            loss=keras.losses.CategoricalCrossentropy(),
            optimizer=keras.optimizers.Adam(0.003),
        )
        one_hot = np.eye(10, dtype="float32")[labels]
        before = model.evaluate(images, one_hot, verbose=0)[0]
        model.fit(images, one_hot, batch_size=32, epochs=2, verbose=0)
        after = model.evaluate(images, one_hot, verbose=0)[0]
        assert np.isfinite(after) and after < before
        model.save(tmp_path / "bf16.keras")
        reloaded = keras.saving.load_model(tmp_path / "bf16.keras", compile=False)
        np.testing.assert_allclose(
            reloaded.predict(images[:8], verbose=0), model.predict(images[:8], verbose=0)
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bfloat16_detection_reads_the_flags_line(tmp_path: Path) -> None:
    with_amx = tmp_path / "amx"
    with_amx.write_text("model name\t: Xeon\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    zen4 = tmp_path / "zen4"
    zen4.write_text("model name\t: AMD EPYC\nflags\t\t: fpu avx512f avx512_bf16 avx512vl\n")
    without = tmp_path / "plain"
    without.write_text(
        "model name\t: amx_bf16 avx512_bf16 lookalike\nflags\t\t: fpu avx2 avx512f\n"
    )
    assert cpu_has_bfloat16_units(with_amx) is True
    assert cpu_has_bfloat16_units(zen4) is True
    assert cpu_has_bfloat16_units(without) is False
    assert cpu_has_bfloat16_units(tmp_path / "missing") is False
