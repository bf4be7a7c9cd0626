"""bench/run_study.py and the study pages bench/render makes from its JSON (levers.md,
ablation.md): from `dvc exp show --json` rows to the pages' numbers and verdicts.

The JSON below follows DVC 3's layout (workspace entry, then the baseline commit whose
`experiments` hold `revs` with `name` and `data.metrics` / `data.params`); the study script
reads real output of that layout in its own runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

run_study = pytest.importorskip("run_study")
common = pytest.importorskip("common")
study_page = pytest.importorskip("render.study")


def _revision(name: str, accuracy: float, seconds: float = 90.0) -> dict:
    return {
        "rev": name[::-1],
        "name": name,
        "data": {
            "metrics": {
                "reports/metrics/eval.json": {"data": {"accuracy": accuracy, "ece": 0.05}},
                "reports/metrics/train.json": {"data": {"train_seconds": seconds}},
            },
            "params": {"params.yaml": {"data": {"train": {"seed": int(name[-1])}}}},
        },
    }


def _shown(results: dict[str, list[float]]) -> list:
    experiments = [
        {"name": f"study-{row}-s{seed}", "revs": [_revision(f"study-{row}-s{seed}", accuracy)]}
        for row, accuracies in results.items()
        for seed, accuracy in enumerate(accuracies)
    ]
    # A stranger experiment and an unfinished one are ignored.
    experiments.append({"name": "other", "revs": [_revision("exp-abc12-s0", 0.99)]})
    unfinished = _revision("study-cutmix-s0", 0.0)
    unfinished["data"]["metrics"] = {}
    experiments.append({"name": "study-cutmix-s0", "revs": [unfinished]})
    return [
        {"rev": "workspace", "name": None, "data": {}, "experiments": None},
        {"rev": "0123abc", "name": "main", "data": {}, "experiments": experiments},
    ]


RESULTS = {
    "seed-recipe": [0.60, 0.62],
    "mixup": [0.66, 0.67],  # +5.5 points, spread 0.014: helped
    "focal": [0.59, 0.64],  # +0.5 points within the spread: no clear effect
    "dropout": [0.50, 0.52],  # -10 points: hurt
}


def test_collect_keeps_finished_study_runs_by_row() -> None:
    rows = common.collect(_shown(RESULTS), run_study.LEVERS)
    assert [record["accuracy"] for record in rows["mixup"]] == [0.66, 0.67]
    assert rows["cutmix"] == [] and rows["l2"] == []
    assert {record["seed"] for record in rows["seed-recipe"]} == {0, 1}


def test_report_numbers_verdicts_and_best_changes(tmp_path: Path) -> None:
    out, plot = tmp_path / "results.md", tmp_path / "levers.png"
    study_page.write_report(_shown(RESULTS), {"jobs": 1}, run_study.LEVERS, out=out, plot=plot)
    text = out.read_text(encoding="utf-8")
    line = {
        row: next(x for x in text.splitlines() if x.startswith(f"| {row} |")) for row in RESULTS
    }
    assert "0.6650 ± 0.0071" in line["mixup"] and "+5.50" in line["mixup"]
    assert "s0 +6.00, s1 +5.00" in line["mixup"]
    assert line["mixup"].endswith("| helped |")
    assert line["focal"].endswith("| no clear effect |")
    assert "-10.00" in line["dropout"] and line["dropout"].endswith("| hurt |")
    assert "Three best single changes by mean gain: mixup (+5.50 points), focal (+0.50 points)" in (
        text
    )
    assert "Did not help (no clear effect or hurt): focal, dropout." in text
    assert "Missing seeds (failed or not run):" in text and "cutmix" in text
    assert plot.stat().st_size > 1000


def test_the_fast_ablation_ranks_by_validation_and_shows_test_beside(tmp_path: Path) -> None:
    def revision(row: str, seed: int, val: float, test: float) -> dict:
        name = f"fast-{row}-s{seed}"
        found = _revision(name, test)
        found["data"]["metrics"]["reports/metrics/train.json"]["data"]["serving_val_accuracy"] = val
        return {"name": name, "revs": [found]}

    experiments = [
        revision("default", 0, 0.80, 0.70),
        revision("default", 1, 0.81, 0.71),
        # Better on test, worse on validation: the validation decides.
        revision("no-tta", 0, 0.70, 0.90),
        revision("no-tta", 1, 0.71, 0.91),
        revision("gelu", 0, 0.85, 0.60),  # one seed only
        {"name": "study-l2-s0", "revs": [_revision("study-l2-s0", 0.99)]},  # the other study
    ]
    shown = [{"rev": "0123abc", "name": "main", "data": {}, "experiments": experiments}]
    rows = common.collect(shown, run_study.FAST)
    assert [r["score"] for r in rows["no-tta"]] == [0.70, 0.71]
    assert [r["accuracy"] for r in rows["no-tta"]] == [0.90, 0.91]
    assert "l2" not in rows
    out, plot = tmp_path / "ablation.md", tmp_path / "ablation.png"
    study_page.write_report(shown, {"jobs": 1}, out=out, plot=plot, study=run_study.FAST)
    text = out.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("| no-tta |"))
    assert "-10.00" in line and "s0 -10.00, s1 -10.00" in line and "0.9050 ± 0.0071" in line
    assert line.endswith("| hurt |")
    assert "validation accuracy" in text and "--study fast" in text
    assert "Missing seeds (failed or not run):" in text and "gelu" in text
    # In an ablation a row that hurts is a lever that earns its place.
    assert "- The default's lever earns its place against these rows" in text
    assert "the seed spread): no-tta." in text
    assert "- Too few seeds to say: gelu." in text
    assert "- Better without (the replacement helped): none." in text


def _fast_entry(runs: dict[str, float]) -> list:
    """One `dvc exp show --json` commit entry holding fast-study runs, name -> val accuracy."""
    experiments = []
    for name, val in runs.items():
        found = _revision(name, val - 0.01)
        found["data"]["metrics"]["reports/metrics/train.json"]["data"]["serving_val_accuracy"] = val
        experiments.append({"name": name, "revs": [found]})
    return [{"rev": "0123abc", "name": "main", "data": {}, "experiments": experiments}]


def test_add_missing_runs_only_the_gaps_and_marks_pairs_across_sessions(tmp_path: Path) -> None:
    first = _fast_entry({"fast-default-s0": 0.80, "fast-default-s1": 0.82, "fast-gelu-s0": 0.81})
    unfinished = _revision("fast-gelu-s1", 0.0)
    unfinished["data"]["metrics"] = {}
    first[0]["experiments"].append({"name": "fast-gelu-s1", "revs": [unfinished]})
    missing = run_study.missing_runs(first, ["default", "gelu"], [0, 1, 2], run_study.FAST)
    assert missing == [("gelu", 1), ("default", 2), ("gelu", 2)]  # seed by seed, as queued

    saved = {"meta": {"jobs": 2, "machine": "first machine", "notes": []}, "exp_show": first}
    later = _fast_entry({"fast-gelu-s1": 0.84, "fast-default-s2": 0.81, "fast-gelu-s2": 0.83})
    experiments = [run_study.FAST.experiment(*run) for run in missing]
    addition = {"machine": "second machine", "date": "2026-12-03", "commit": "abc1234"}
    merged = run_study.add_runs(saved, later, {**addition, "jobs": 1, "experiments": experiments})
    assert (
        run_study.missing_runs(merged["exp_show"], ["default", "gelu"], [0, 1, 2], run_study.FAST)
        == []
    )
    assert saved["exp_show"] == first and "additions" not in saved["meta"]  # the saved one kept

    out, plot = tmp_path / "ablation.md", tmp_path / "ablation.png"
    study_page.write_report(
        merged["exp_show"], merged["meta"], out=out, plot=plot, study=run_study.FAST
    )
    text = out.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("| gelu |"))
    # s0: both from the first session; s1: a later gelu against the first default; s2: both later.
    assert "s0 +1.00, s1 +2.00†, s2 +2.00 |" in line
    assert "| 3 | 0.8267 ± 0.0153 |" in line
    # Filled: default and gelu left the missing list (the other rows never ran here).
    assert "Missing seeds (failed or not run): no-whitening, progressive, no-dirac," in text
    assert "Added later with `--add-missing`: fast-gelu-s1, fast-default-s2, fast-gelu-s2" in text
    assert "second machine, 2026-12-03, commit abc1234" in text


def test_a_saved_study_is_not_overwritten_without_a_choice(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import dataclasses

    raw = tmp_path / "ablation_exp_show.json"
    raw.write_text('{"meta": {}, "exp_show": []}', encoding="utf-8")
    study = dataclasses.replace(run_study.FAST, raw=raw)
    monkeypatch.setattr(run_study, "STUDIES", {"fast": study})
    monkeypatch.setattr(run_study, "REPO", tmp_path)
    monkeypatch.setattr(sys, "argv", ["run_study.py", str(tmp_path / "data"), "--study", "fast"])
    with pytest.raises(SystemExit) as stopped:
        run_study.main()  # stops before any project is made or experiment queued
    assert stopped.value.code == 2
    assert raw.read_text(encoding="utf-8") == '{"meta": {}, "exp_show": []}'
    assert "--add-missing runs only the row x seed experiments it lacks" in capsys.readouterr().err


def test_baseline_run_again_pairs_the_rows_of_its_session(tmp_path: Path) -> None:
    first = _fast_entry({"fast-default-s0": 0.80, "fast-default-s1": 0.82})
    saved = {"meta": {"jobs": 2, "machine": "first machine", "notes": []}, "exp_show": first}
    later = _fast_entry({"fast-gelu-s0": 0.85, "fast-gelu-s1": 0.86})
    where = {"machine": "second machine", "date": "2026-12-04", "commit": "abc1234", "jobs": 2}
    merged = run_study.add_runs(
        saved, later, {**where, "experiments": ["fast-gelu-s0", "fast-gelu-s1"]}
    )
    out, plot = tmp_path / "ablation.md", tmp_path / "ablation.png"

    def gelu_line() -> str:
        study_page.write_report(
            merged["exp_show"], merged["meta"], out=out, plot=plot, study=run_study.FAST
        )
        return next(x for x in out.read_text().splitlines() if x.startswith("| gelu |"))

    # Against the first machine's default: +4.5 points, every pair across sessions.
    assert "| +4.50 | s0 +5.00†, s1 +4.00† |" in gelu_line()
    # The default run anew on the second machine for session 1's rows: the gelu rows now pair
    # with it (no dagger), the default row keeps its first runs, and the rerun shows below it.
    names = [run_study.FAST.experiment("default", seed, 2) for seed in (0, 1)]
    assert names == ["fast-default-s0-again2", "fast-default-s1-again2"]
    again = _fast_entry(dict(zip(names, (0.84, 0.85), strict=True)))
    merged = run_study.add_runs(merged, again, {**where, "baseline_for": 1, "experiments": names})
    assert "| +1.00 | s0 +1.00, s1 +1.00 |" in gelu_line()
    text = out.read_text()
    assert (
        "| default | the shipped defaults (fast_cnn, params.yaml) | 2 | 0.8100 ± 0.0141 |" in text
    )
    assert (
        "| default, again | the same, run anew on second machine, 2026-12-04, for the rows " in text
    )
    assert "rows added in session 1, which compare with these runs | 2 | 0.8450 ± 0.0071 |" in text
    assert "for the rows of session 1: their differences, verdicts and ranks compare" in text
    # collect keeps the first runs and the runs anew, told apart by `again`.
    collected = common.collect(merged["exp_show"], run_study.FAST)
    assert sorted(r["again"] for r in collected["default"]) == [0, 0, 2, 2]


def test_a_saved_study_keeps_the_rows_it_ran_with(tmp_path: Path) -> None:
    assert common.as_recorded(run_study.FAST, {"notes": []}) is run_study.FAST
    # As saved in JSON: a row the code no longer has, in the order it was queued.
    rows = {
        "default": ["the defaults then", {}],
        "retired": ["a lever since dropped", {"a.b": "1"}],
    }
    study = common.as_recorded(run_study.FAST, {"rows": rows})
    assert list(study.rows) == ["default", "retired"]
    assert study.rows["retired"] == ("a lever since dropped", {"a.b": "1"})
    assert study.baseline == "default" and study.out == run_study.FAST.out

    shown = _fast_entry({"fast-default-s0": 0.80, "fast-retired-s0": 0.83})
    out, plot = tmp_path / "ablation.md", tmp_path / "ablation.png"
    study_page.write_report(shown, {"rows": rows}, out=out, plot=plot, study=study)
    text = out.read_text(encoding="utf-8")
    assert "| retired | a lever since dropped | 1 | 0.8300 |" in text
    assert "| gelu |" not in text  # today's rows that the saved study never ran
