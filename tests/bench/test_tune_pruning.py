"""bench/tune_pruning.py and the page bench/render makes from its measurements (tuning.md):
pruned against full, the earlier runs it keeps, the trials' curves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

tune_pruning = pytest.importorskip("tune_pruning")
tuning = pytest.importorskip("render.tuning")

SPACE = {"optimizer.lr": {"low": 0.1, "high": 0.75, "log": True}}
PRUNER = {"pruner": "successive_halving", "pruner_warmup_epochs": 1, "pruner_reduction_factor": 3}


def _study(seconds: list[float], states: list[str], accuracies: list[float]) -> dict:
    rows = [
        {
            "trial": number,
            "state": state,
            "values": {"optimizer.lr": 0.1 + number / 10},
            "best_val_accuracy": accuracy,
            "epochs": 8 if state == "COMPLETE" else 1,
            "train_seconds": spent,
        }
        for number, (spent, state, accuracy) in enumerate(
            zip(seconds, states, accuracies, strict=True)
        )
    ]
    best = max(rows, key=lambda row: row["best_val_accuracy"])
    return {
        "wall_seconds": sum(seconds) + 60,
        "trials": rows,
        "best_trial": best["trial"],
        "best_val_accuracy": best["best_val_accuracy"],
        "best_values": best["values"],
        "train_seconds": sum(seconds),
        "importances": {"optimizer.lr": 1.0},
        "importances_missing": "",
        "best_line": f"dvc exp run -S optimizer.lr={best['values']['optimizer.lr']}",
    }


def _measured(pruned_seconds: list[float]) -> dict:
    return {
        "images": 10000,
        "epochs": 8,
        "trials": 3,
        "seed": 0,
        "space": SPACE,
        "pruner": PRUNER,
        "defaults": {"best_val_accuracy": 0.70, "train_seconds": 60.0, "repro_seconds": 90.0},
        "full": _study([60.0, 60.0, 60.0], ["COMPLETE"] * 3, [0.70, 0.72, 0.69]),
        "pruned": _study(pruned_seconds, ["COMPLETE", "PRUNED", "PRUNED"], [0.70, 0.40, 0.41]),
        "noise_seeds": [1, 2],
        "noise_accuracies": [0.71, 0.73],
        "total_seconds": 900.0,
    }


@pytest.mark.parametrize(
    ("epochs", "factor", "rungs"),
    [(8, 3, "after epoch 1 and again after epoch 3, "), (4, 2, "1 and again after epoch 2, ")],
)
def test_the_rungs_are_where_successive_halving_compares(epochs, factor, rungs) -> None:
    text = tuning._rungs_text({**PRUNER, "pruner_reduction_factor": factor}, epochs)
    assert rungs in text
    assert f"epoch {epochs}" not in text  # the last epoch ends a trial; it prunes nothing


@pytest.mark.parametrize(
    ("pruned_seconds", "verdict"), [([60, 15, 15], "met"), ([60, 40, 40], "not met")]
)
def test_the_page_gives_the_ratio_and_its_verdict(tmp_path: Path, pruned_seconds, verdict) -> None:
    out = tmp_path / "tuning.md"
    tuning.write_report(_measured(pruned_seconds), out)
    page = out.read_text(encoding="utf-8")
    ratio = sum(pruned_seconds) / 180.0
    assert f"pruned / full = **{ratio:.2f}** (target: at most 0.50: {verdict})" in page
    assert "| `optimizer.lr` |" in page  # the searched keys come from the measurements
    assert "dvc exp run -S optimizer.lr=0.2" in page  # the full study's best trial, reproducible


def test_the_page_says_where_and_from_which_code_it_was_measured(tmp_path: Path) -> None:
    out = tmp_path / "tuning.md"
    session = {"machine": "Some CPU, 2 cores", "date": "2026-12-04", "commit": "abc1234"}
    tuning.write_report({**_measured([60, 40, 40]), "session": session}, out)
    line = "Machine: Some CPU, 2 cores. Date: 2026-12-04. Code: commit abc1234."
    assert line in out.read_text(encoding="utf-8")
    tuning.write_report(_measured([60, 40, 40]), out)  # a run saved before it was recorded
    assert "Machine:" not in out.read_text(encoding="utf-8")


def test_the_curve_table_ranks_trials_by_their_last_epoch() -> None:
    study = _study([60.0, 60.0], ["COMPLETE", "COMPLETE"], [0.7, 0.72])
    study["trials"][0]["val_accuracy_by_epoch"] = [0.45, 0.70]  # leads early, ends second
    study["trials"][1]["val_accuracy_by_epoch"] = [0.35, 0.72]
    table = tuning._curve_table(study)
    assert table[0] == "| trial | epoch 1 | epoch 2 | final rank |"
    assert table[2:] == ["| 0 | 0.450 | 0.700 | 2 |", "| 1 | 0.350 | 0.720 | 1 |"]
    assert tuning._curve_table(_study([1.0], ["COMPLETE"], [0.5])) == []  # none recorded


def test_an_earlier_pruner_stays_on_the_page_with_its_own_verdict(tmp_path: Path) -> None:
    measured = _measured([60, 40, 40])
    earlier = _study([60, 10, 10], ["COMPLETE", "PRUNED", "PRUNED"], [0.70, 0.40, 0.41])
    measured["earlier_pruned"] = [{"pruner": PRUNER, "study": earlier, "why": "Too eager."}]
    out = tmp_path / "tuning.md"
    tuning.write_report(measured, out)
    page = out.read_text(encoding="utf-8")
    assert "warm-up 1 and factor 3: pruned / full = 0.44, best val accuracy 0.7000" in page
    assert "(difference +0.0200, within the seed spread). Too eager." in page
    assert "Wall time of the first benchmark run" in page


def test_the_page_says_where_the_stopped_trials_would_have_ranked(tmp_path: Path) -> None:
    measured = _measured([60, 15, 15])  # full: 0.70, 0.72, 0.69; trials 1 and 2 pruned
    out = tmp_path / "tuning.md"
    tuning.write_report(measured, out)
    assert (
        "of the 3 settings both studies tried, it stopped 2, which ranked 1, 3 of 3 in the full "
        "study; the pruned study's best setting ranked 2 there."
    ) in out.read_text(encoding="utf-8")
    measured["pruned"]["trials"][2]["values"] = {"optimizer.lr": 0.9}  # the sampler diverged
    assert "of the 2 settings both studies tried, it stopped 1, which ranked 1 of 3" in (
        tuning._what_pruning_stopped(measured["full"], measured["pruned"])
    )


def test_a_new_run_keeps_the_runs_before_it_on_the_page(tmp_path: Path) -> None:
    first = _measured([60, 40, 40])  # 0.78 of the seconds, best val 0.70 against 0.72
    # A pruned study measured before the run's last one (--rerun-pruned) is kept too.
    earlier = _study([60, 10, 10], ["COMPLETE", "PRUNED", "PRUNED"], [0.70, 0.40, 0.41])
    first["earlier_pruned"] = [{"pruner": PRUNER, "study": earlier, "why": ""}]
    second = {**_measured([60, 15, 15]), "earlier_runs": tune_pruning.earlier_runs(first)}
    third = {**_measured([60, 15, 15]), "epochs": 16}
    third["earlier_runs"] = tune_pruning.earlier_runs(second)
    assert [run["pruned_train_seconds"] for run in third["earlier_runs"]] == [80, 140, 90]
    assert tune_pruning.earlier_runs(None) == []
    out = tmp_path / "tuning.md"
    tuning.write_report(third, out)
    page = out.read_text(encoding="utf-8")
    assert "## Earlier runs of this benchmark" in page
    # seed spread of the full study's best setting: 0.72, 0.71, 0.73 -> 0.02
    row = "| 10,000 | 8 | 3 | successive_halving (1, 3) | {} | 0.7200 | 0.7000 | 0.0200 | yes |"
    assert row.format("0.78") in page and row.format("0.50") in page
    assert page.index(row.format("0.78")) < page.index(row.format("0.50"))  # oldest first


def test_a_trial_curve_is_its_runs_val_accuracy_in_epoch_order(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("imgclf"))
    for step, value in ((1, 0.61234), (0, 0.4), (2, 0.7)):  # logged out of order
        client.log_metric(run.info.run_id, "val_accuracy", value, step=step)
    client.log_metric(run.info.run_id, "accuracy", 0.9, step=0)  # not val: left out
    assert tune_pruning.val_curve(client, run.info.run_id) == [0.4, 0.6123, 0.7]
    assert tune_pruning.val_curve(client, None) == []  # a failed trial recorded no run
