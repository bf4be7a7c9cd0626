"""Tests for imgclf.params: strict parsing, dotted error names and the registries' names."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from imgclf.params import (
    ARCHITECTURE_NAMES,
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    ParamsError,
    flatten_params,
    load_params,
    parse_params,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_empty_mapping_gives_the_documented_defaults() -> None:
    params = parse_params({})
    assert params == parse_params(None)
    assert params.data.source == "cifar10"
    assert params.model.arch == "resnet_small"
    assert params.reg.l2 == 0.0
    assert params.optimizer.lr == pytest.approx(1e-3)
    assert params.train.epochs == 10
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


@pytest.mark.parametrize("warmup_epochs", [3, 3.5])
def test_warmup_not_shorter_than_training_names_both_fields(warmup_epochs: float) -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params({"optimizer": {"warmup_epochs": warmup_epochs}, "train": {"epochs": 3}})
    message = str(caught.value)
    assert "optimizer.warmup_epochs" in message and "train.epochs" in message
    parse_params({"optimizer": {"warmup_epochs": 2.9}, "train": {"epochs": 3}})


def test_evaluate_corruption_images_null_means_the_whole_test_split() -> None:
    assert parse_params({}).evaluate.corruption_images == 2000
    every = parse_params({"evaluate": {"corruption_images": None}})
    assert every.evaluate.corruption_images is None


def test_non_mapping_is_refused() -> None:
    with pytest.raises(ParamsError, match="expected a mapping"):
        parse_params(["data"])


def test_shipped_params_yaml_loads() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.optimizer.warmup_epochs < params.train.epochs
    assert params.model.arch in ARCHITECTURE_NAMES


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
    with pytest.raises(pydantic.ValidationError):
        params.reg.l2 = 0.1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        params.train = params.train  # type: ignore[misc]
    assert params.reg.l2 == 0.0
