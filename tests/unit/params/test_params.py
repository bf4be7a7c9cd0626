"""Tests for imgclf.params: strict parsing, dotted error names and the registries' names."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from imgclf.params import (
    ARCHITECTURE_NAMES,
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    ParamsError,
    flatten_params,
    lever_warnings,
    load_params,
    parse_params,
    progressive_epochs_used,
    step_epochs_used,
    warmup_epochs_used,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_empty_mapping_gives_the_documented_defaults() -> None:
    params = parse_params({})
    assert params == parse_params(None)
    assert params.data.source == "cifar10"
    assert params.model.arch == "fast_cnn"
    assert params.reg.l2 == pytest.approx(0.00066)
    assert params.optimizer.lr == pytest.approx(0.375)
    assert params.train.epochs == 8
    assert params.augment.progressive_side is None
    assert params.validate_.min_rows == 100
    assert params.augment.copies == 0


@pytest.mark.parametrize(
    ("raw", "dotted_key"),
    [
        ({"reg": {"l3": 0.1}}, "reg.l3"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"reg": {"l2": -1}}, "reg.l2"),
        ({"model": {"arch": "vgg"}}, "model.arch"),
        ({"validate": {"min_rows": 0}}, "validate.min_rows"),
        ({"augment": {"crop_fraction": 1.0}}, "augment.crop_fraction"),
        ({"data": {"md5": "not-a-digest"}}, "data.md5"),
        ({"colour": {"hue": 1}}, "colour"),
        ({"evaluate": {"corruption_images": 0}}, "evaluate.corruption_images"),
        ({"evaluate": {"mistakes_shown": 101}}, "evaluate.mistakes_shown"),
    ],
)
def test_bad_value_names_its_dotted_key(raw: dict, dotted_key: str) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw, "my.yaml")
    message = str(caught.value)
    assert f"  {dotted_key}: " in message
    assert message.startswith("my.yaml is invalid")


def test_unknown_key_is_called_unknown_and_shows_its_value() -> None:
    with pytest.raises(ParamsError, match=r"reg\.l3: unknown key"):
        parse_params({"reg": {"l3": 1}})


def test_bad_literal_lists_the_allowed_names() -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params({"model": {"arch": "vgg"}})
    message = str(caught.value)
    assert "'vgg'" in message
    for name in ARCHITECTURE_NAMES:
        assert name in message


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params({"reg": {"l3": 1, "l2": -1}, "train": {"epochs": "ten"}})
    message = str(caught.value)
    assert all(key in message for key in ("reg.l3", "reg.l2", "train.epochs"))


def test_folder_source_without_path_names_data_path() -> None:
    with pytest.raises(ParamsError, match=r"data\.path"):
        parse_params({"data": {"source": "folder"}})
    assert parse_params({"data": {"source": "folder", "path": "imgs"}}).data.path == "imgs"


@pytest.mark.parametrize(("warmup_epochs", "used"), [(3, 1.5), (1.5, 1.5), (3.5, 1.5), (0.5, 0.5)])
def test_warmup_is_clipped_to_half_of_training_with_a_note(warmup_epochs, used) -> None:
    params = parse_params({"optimizer": {"warmup_epochs": warmup_epochs}, "train": {"epochs": 3}})
    assert warmup_epochs_used(params.optimizer, params.train.epochs) == used
    notes = lever_warnings(params)
    if used < warmup_epochs:
        assert "optimizer.warmup_epochs" in notes["warning.warmup_clipped"]
        assert "train.epochs (3)" in notes["warning.warmup_clipped"]
    else:
        assert "warning.warmup_clipped" not in notes


@pytest.mark.parametrize(
    ("arch", "side", "share", "epochs", "small"),
    [
        ("fast_cnn", 24, 0.6, 10, 6),
        ("fast_cnn", 24, 0.6, 1, 0),  # -S train.epochs=1: the one epoch at full size
        ("fast_cnn", 24, 0.6, 2, 1),
        ("resnet_small", 24, 0.5, 4, 2),
        ("fast_cnn", None, 0.6, 10, 0),
        ("seed_cnn", 24, 0.6, 10, 0),  # Flatten -> Dense takes one size only
    ],
)
def test_progressive_epochs_round_the_share_down_for_resizable_models(
    arch, side, share, epochs, small
) -> None:
    params = parse_params(
        {
            "model": {"arch": arch},
            "augment": {"progressive_side": side, "progressive_share": share},
            "train": {"epochs": epochs},
        }
    )
    assert progressive_epochs_used(params.augment, arch, epochs) == small
    note = lever_warnings(params).get("warning.progressive_ignored", "")
    assert ("seed_cnn takes one input size" in note) == (arch == "seed_cnn")


def _shipped_with(key: str, value) -> dict:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    section, name = key.split(".")
    raw[section][name] = value
    return raw


# The single-key overrides a user types first (`dvc exp run -S key=value`): each must pass
# validation with the shipped params.yaml, whatever else that file sets.
SINGLE_OVERRIDES = [
    ("train.epochs", 1),
    ("train.epochs", 2),
    ("train.epochs", 3),
    ("train.batch_size", 1),
    ("train.batch_size", 2),
    *(("optimizer.name", name) for name in OPTIMIZER_NAMES),
    *(("optimizer.schedule", name) for name in SCHEDULE_NAMES),
    *(("model.arch", name) for name in ARCHITECTURE_NAMES),
]


@pytest.mark.parametrize(("key", "value"), SINGLE_OVERRIDES)
def test_every_single_override_of_the_shipped_params_validates(
    key: str, value, tmp_path: Path
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_shipped_with(key, value)), encoding="utf-8")
    params = load_params(path)
    section, name = key.split(".")
    assert getattr(getattr(params, section), name) == value
    epochs = params.train.epochs
    warmup = warmup_epochs_used(params.optimizer, epochs)
    assert 0 <= warmup <= epochs / 2
    assert all(warmup < epoch < epochs for epoch in step_epochs_used(params.optimizer, epochs))
    lever_warnings(params)  # the notes the train stage prints are computable too


def test_one_epoch_with_the_shipped_params_warms_up_for_half_of_it() -> None:
    params = parse_params(_shipped_with("train.epochs", 1))
    assert warmup_epochs_used(params.optimizer, 1) == 0.5
    assert "warming up for 0.5 epochs" in lever_warnings(params)["warning.warmup_clipped"]


@pytest.mark.parametrize(
    ("raw", "field", "works"),
    [
        ({"loss": {"name": "squared_hinge", "label_smoothing": 0.1}}, "loss.label_smoothing", "0"),
        ({"data": {"source": "folder"}}, "data.path", "directory"),
        (
            {"optimizer": {"schedule": "step", "step_every": 1, "warmup_epochs": 1}},
            "optimizer.step_every",
            "set optimizer.step_every to 2",
        ),
        (
            {
                "optimizer": {"schedule": "step", "step_epochs": [1, 4], "warmup_epochs": 1},
                "train": {"epochs": 10},
            },
            "optimizer.step_epochs",
            "such as [2, 6]",
        ),
        ({"optimizer": {"schedule": "cosine", "step_every": 2}}, "optimizer.step_every", "null"),
        (
            {"train": {"backend": "jax", "distribution": "mirrored"}},
            "train.distribution",
            "auto or none",
        ),
    ],
)
def test_a_refused_combination_names_its_field_and_a_value_that_works(raw, field, works) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert f"\n  {field}: " in message and works in message
    assert "<top>" not in message


def test_evaluate_corruption_images_null_means_the_whole_test_split() -> None:
    assert parse_params({}).evaluate.corruption_images == 2000
    every = parse_params({"evaluate": {"corruption_images": None}})
    assert every.evaluate.corruption_images is None


def test_non_mapping_is_refused() -> None:
    with pytest.raises(ParamsError, match="expected a mapping"):
        parse_params(["data"])


def test_shipped_params_yaml_loads() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.model.arch in ARCHITECTURE_NAMES


def test_params_yaml_and_the_code_defaults_are_one_source() -> None:
    """Every key is in params.yaml with the value the code uses when a key is left out."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    shipped = parse_params(raw).model_dump(by_alias=True)
    defaults = parse_params({}).model_dump(by_alias=True)
    differ = [
        f"{section}.{key}: params.yaml {value!r}, code {defaults[section][key]!r}"
        for section, values in shipped.items()
        for key, value in values.items()
        if value != defaults[section][key]
    ]
    assert not differ, "params.yaml and the code defaults disagree: " + "; ".join(differ)
    undocumented = [
        f"{section}.{key}"
        for section, values in defaults.items()
        for key in values
        if key not in (raw.get(section) or {})
    ]
    assert not undocumented, f"params.yaml does not show these keys: {undocumented}"


def test_load_params_reports_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("reg: [l2\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text("reg:\n  l3: 1\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"bad\.yaml is invalid:\n  reg\.l3"):
        load_params(bad)


def test_flatten_params_uses_dotted_keys_and_the_validate_alias() -> None:
    params = parse_params({"reg": {"l2": 5e-4}, "validate": {"min_rows": 7}})
    flat = flatten_params(params)
    assert flat["reg.l2"] == pytest.approx(5e-4)
    assert flat["validate.min_rows"] == 7
    assert flat["data.path"] is None
    assert not any(key.startswith(("validate_", "tune.")) for key in flat)
    sections = {key.split(".")[0] for key in flat}
    assert sections == {
        "data",
        "preprocess",
        "validate",
        "augment",
        "model",
        "loss",
        "reg",
        "optimizer",
        "train",
        "mlflow",
        "evaluate",
        "promote",
    }
    # Every flat key round-trips into the same params.
    nested: dict[str, dict] = {}
    for key, value in flat.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    assert parse_params(nested) == params


def test_literal_names_match_the_model_registries() -> None:
    from imgclf.model.architectures import ARCHITECTURES
    from imgclf.model.losses import LOSSES
    from imgclf.model.optimizers import DECAYS, OPTIMIZERS, build_schedule
    from imgclf.params import OptimizerParams

    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)
    assert set(LOSS_NAMES) == set(LOSSES)
    assert set(OPTIMIZER_NAMES) == set(OPTIMIZERS)
    assert set(SCHEDULE_NAMES) == set(DECAYS)
    for name in SCHEDULE_NAMES:
        extra = {"step_every": 1} if name == "step" else {}
        schedule = build_schedule(
            OptimizerParams(schedule=name, **extra), steps_per_epoch=2, epochs=3
        )
        assert schedule.decay == name


def test_params_are_frozen() -> None:
    params = parse_params({})
    before = params.reg.l2
    with pytest.raises(pydantic.ValidationError):
        params.reg.l2 = 0.1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        params.train = params.train  # type: ignore[misc]
    assert params.reg.l2 == before != 0.1


@pytest.mark.parametrize("key", ["mixed_precision", "jit_compile"])
def test_bare_yaml_on_off_reads_as_the_setting(tmp_path, key: str) -> None:
    # `dvc exp run -S train.mixed_precision=off` writes a bare off, which YAML 1.1 reads as false.
    path = tmp_path / "params.yaml"
    path.write_text(f"train:\n  {key}: off\n", encoding="utf-8")
    assert getattr(load_params(path).train, key) == "off"
    path.write_text(f"train:\n  {key}: on\n", encoding="utf-8")
    assert getattr(load_params(path).train, key) == "on"


def test_the_tune_section_checks_keys_against_the_sections_params_holds() -> None:
    from imgclf.params.loading import Params
    from imgclf.params.tuning import OTHER_SECTIONS, TuneParams

    held = {field.alias or name: field.annotation for name, field in Params.model_fields.items()}
    assert held == {**OTHER_SECTIONS, "tune": TuneParams}
