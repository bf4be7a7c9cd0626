"""bench/tune_choice.py and the page bench/render makes from its measurements (choice.md):
the seed start's recipe as params.yaml holds it, its space, and the gain and gap figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

tune_choice = pytest.importorskip("tune_choice")
choice = pytest.importorskip("render.choice")


def test_the_seed_recipe_reads_as_params_yaml_holds_it() -> None:
    assert tune_choice.typed("0.001") == 0.001 and tune_choice.typed("64") == 64
    assert tune_choice.typed("false") is False and tune_choice.typed("off") == "off"
    assert tune_choice.typed("null") is None
    recipe = {key: tune_choice.typed(value) for key, value in tune_choice.SEED_RECIPE.items()}
    from imgclf.params import parse_params

    params = parse_params(tune_choice._nested(recipe) | {"tune": {"space": tune_choice.SEED_SPACE}})
    assert params.optimizer.name == "adam" and params.augment.online_crop_flip is False
    assert params.train.mixed_precision == "off" and params.model.arch == "seed_cnn"


def test_the_seed_space_enqueues_the_seed_recipe_and_each_optimizer() -> None:
    from imgclf.params import parse_params
    from imgclf.tuning import warm_start

    recipe = {key: tune_choice.typed(value) for key, value in tune_choice.SEED_RECIPE.items()}
    params = parse_params(tune_choice._nested(recipe) | {"tune": {"space": tune_choice.SEED_SPACE}})
    trials, notes = warm_start.first_trials(
        params.tune.space, warm_start.recipe_values(params, params.tune)
    )
    assert notes == []  # the seed recipe and every option's start lie in the space
    assert [trial.label for trial in trials] == [
        warm_start.RECIPE,
        "optimizer.name=sgd",
        "optimizer.name=muon",
    ]  # adam is the recipe's own choice


def _start(baseline: list[float], chosen: float) -> dict:
    return {
        "recipe": {},
        "space": None,
        "baseline": {
            str(seed): {"best_val_accuracy": value, "train_seconds": 100.0}
            for seed, value in enumerate(baseline)
        },
        "study": {
            "wall_seconds": 900.0,
            "trials": [
                {
                    "trial": 0,
                    "state": "COMPLETE",
                    "screened": 0.5,
                    "warm_start": "recipe",
                    "values": {"optimizer.lr": 0.375},
                },
                {
                    "trial": 1,
                    "state": "COMPLETE",
                    "screened": 0.6,
                    "warm_start": None,
                    "values": {"optimizer.lr": 0.2},
                },
            ],  # fmt: skip
            "confirmed": {"1": {"0": chosen - 0.01, "1": chosen + 0.01}},
            "chosen": {"trial": 1, "mean": chosen, "line": "dvc exp run -S optimizer.lr=0.2"},
        },
    }


def test_the_page_gives_each_start_its_gain_and_the_seed_start_its_recovered_gap() -> None:
    measured = {
        "session": {"machine": "m", "features": "avx2", "date": "2026-12-06", "commit": "abc"},
        "images": 5000,
        "trials": 2,
        "screen_epochs": 2,
        "confirm": 1,
        "seeds": [0, 1],
        "starts": {"default": _start([0.80, 0.82], 0.83), "seed": _start([0.50, 0.52], 0.71)},
    }
    rows = {row["start"]: row for row in choice.summary_rows(measured)}
    assert rows["default"]["gain"] == pytest.approx(0.02) and rows["default"]["recovered"] is None
    # The seed start's gap to the default's baseline is 0.81 - 0.51 = 0.30; it gained 0.20.
    assert rows["seed"]["recovered"] == pytest.approx(0.20 / 0.30)
    text = choice.page(measured)
    assert "| the seed article's recipe | 0.5100 | 0.7100 | +0.2000 | 67% |" in text
    assert "| 1 (chosen) |  | 0.6000 | 0.8200, 0.8400 | 0.8300 |" in text
    assert "Processor features: avx2." in text
