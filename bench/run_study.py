"""The lever studies: one change at a time from a recipe, as a `dvc exp run --queue` grid.

Two studies (bench/studies.yaml): `levers` (the default) changes the seed recipe one lever at a
time and ranks by test accuracy (levers.md, kept reproducible as it was run); `fast` is the
ablation of the shipped fast recipe, one lever removed or replaced by its plain alternative at a
time, ranked by the saved model's validation accuracy with the test accuracy beside it
(ablation.md). Runs every row for every seed as a queued DVC experiment in a scratch copy of
this repository on a class-folder data set (its carved, stratified test split) and saves
`dvc exp show --json` in docs/results/; `python bench/render levers` (or `ablation`) makes the
page and its plot from that JSON alone.

    python bench/run_study.py ../shared/datasets/cifar10-train-jpg.tar.gz --seeds 0 1
    python bench/run_study.py DATA --study fast --seeds 0 1 2 --add-missing   # fill the gaps
    python bench/run_study.py DATA --study fast --seeds 0 1 2 --replace       # start over
    python bench/run_study.py --study fast --note "..."   # only set the page's notes

`--add-missing` runs only the row x seed experiments the saved JSON lacks and adds them to it;
the page then lists them apart (machine, date, commit) and marks the paired differences that
compare runs from two different sessions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import DATA_STAGES, REPO, STUDIES, Study, as_recorded, collect, run, session

sys.path.insert(0, str(REPO / "tests"))
LEVERS, FAST = STUDIES["levers"], STUDIES["fast"]


def run_grid(
    data: Path,
    runs: list[tuple[str, int]],
    workdir: Path,
    jobs: int,
    study: Study = LEVERS,
    names: list[str] | None = None,
) -> list:
    """Queue every (row, seed) of `runs` (named `names`, else by the study), run the queue,
    return `dvc exp show --json`."""
    from support.project import make_project, pipeline_env

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    project = make_project(workdir, {"data": {"source": "folder", "path": str(data.resolve())}})
    # The stages run the project's own copy of the code, whatever imgclf is installed.
    env = pipeline_env({"PYTHONPATH": str(project / "src")})
    for stage in DATA_STAGES:
        run(["dvc", "repro", "--single-item", stage], project, env)
    # Queued experiments start from the last commit: it must hold the data stages' lock.
    run(["git", "add", "dvc.lock"], project, env)
    run(["git", "commit", "-qm", "data stages for the study"], project, env)
    for index, (row, seed) in enumerate(runs):
        overrides = study.rows[row][1]
        name = names[index] if names else study.experiment(row, seed)
        command = ["dvc", "exp", "run", "--queue", "--name", name]
        for key, value in {**study.recipe, **overrides, "train.seed": str(seed)}.items():
            command += ["-S", f"{key}={value}"]
        run(command, project, env)
    started = time.monotonic()
    # The queue's workers outlive `dvc queue start` and would hold captured pipes open.
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(jobs)],
        cwd=project,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    total = len(runs)
    while True:
        time.sleep(30)
        _, status = run(["dvc", "queue", "status"], project, env)
        pending = sum(word in status for word in ("Queued", "Running"))
        counts = {word: status.count(word) for word in ("Queued", "Running", "Success", "Failed")}
        minutes = (time.monotonic() - started) / 60
        print(f"[{minutes:5.1f} min] {counts} of {total}", flush=True)
        if not pending:
            break
    if counts["Failed"]:
        print(f"warning: {counts['Failed']} experiments failed; see `dvc queue logs`", flush=True)
    return json.loads(run(["dvc", "exp", "show", "--json"], project, env)[1])


# --- From `dvc exp show --json` to the report ------------------------------------------------


def missing_runs(
    shown: list, rows: list[str], seeds: list[int], study: Study = LEVERS
) -> list[tuple[str, int]]:
    """The (row, seed) pairs of the grid that have no finished run in `shown`, seeds first."""
    found = collect(shown, study)
    have = {(row, record["seed"]) for row, records in found.items() for record in records}
    return [(row, seed) for seed in seeds for row in rows if (row, seed) not in have]


def add_runs(saved: dict, shown: list, addition: dict) -> dict:
    """The saved study with a later session's `dvc exp show --json` and its details added.

    Rows are read from every commit entry of the list, so the later runs are appended as they
    are; `addition` (machine, date, commit, jobs, experiments) says where they came from.
    """
    meta = {**saved["meta"], "additions": [*saved["meta"].get("additions", []), addition]}
    return {"meta": meta, "exp_show": [*saved["exp_show"], *shown]}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="class-folder directory or archive")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--study", choices=list(STUDIES), default="levers")
    parser.add_argument("--rows", nargs="+", help="rows to run (default: all of the study's)")
    parser.add_argument("--jobs", type=int, default=1, help="queue workers (dvc queue start -j)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgclf-study"))
    parser.add_argument("--note", action="append", default=[], help="a line added to the page")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--add-missing",
        action="store_true",
        help="run only the row x seed experiments the saved JSON lacks and add them to it",
    )
    keep.add_argument(
        "--replace", action="store_true", help="start the study over: the saved JSON is replaced"
    )
    parser.add_argument(
        "--baseline-again",
        action="store_true",
        help="with --add-missing: run the baseline row anew for every seed, so the added rows "
        "pair with runs from their own machine and code",
    )
    return parser


def _add_missing(args, parser, study: Study, saved: dict, rows: list[str]) -> dict | None:
    """Run the row x seed experiments `saved` lacks (and the baseline anew); the study with
    them added, or None when nothing is missing."""
    where = session()
    runs = missing_runs(saved["exp_show"], rows, args.seeds, study)
    if not runs and not args.baseline_again:
        print(f"nothing missing: every row has seeds {args.seeds} in {study.raw}")
        return None
    experiments = [study.experiment(*run) for run in runs]
    addition = {**where, "jobs": args.jobs}
    if args.baseline_again:
        additions = saved["meta"].get("additions", [])
        number = len(additions) + 1  # this session's
        if not runs:  # nothing missing: the baseline anew for the last session's rows
            if not additions or additions[-1]["machine"] != where["machine"]:
                parser.error(
                    "--baseline-again with nothing missing serves the last session's rows, "
                    "which must come from this machine; none do"
                )
            addition["baseline_for"] = len(additions)
        runs += [(study.baseline, seed) for seed in args.seeds]
        experiments += [study.experiment(study.baseline, seed, number) for seed in args.seeds]
    print(f"running {len(runs)}: {', '.join(experiments)}")
    shown = run_grid(args.data, runs, args.workdir, args.jobs, study, experiments)
    return add_runs(saved, shown, {**addition, "experiments": experiments})


def _new(args, study: Study, rows: list[str]) -> dict:
    """The whole grid of `rows` x seeds, run afresh."""
    meta = {
        "data": str(args.data),
        "data_description": f"{args.data.name} (class folders; preprocess carves a "
        "stratified test split)",
        **session(),
        "jobs": args.jobs,
        "notes": args.note,
        "rows": study.rows,  # what each row changed, as the page will describe it
    }
    runs = [(row, seed) for seed in args.seeds for row in rows]
    return {"meta": meta, "exp_show": run_grid(args.data, runs, args.workdir, args.jobs, study)}


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.baseline_again and not args.add_missing:
        parser.error("--baseline-again adds to a saved study: give it with --add-missing")
    study = STUDIES[args.study]
    saved = json.loads(study.raw.read_text(encoding="utf-8")) if study.raw.exists() else None
    if saved and (args.add_missing or args.data is None):
        study = as_recorded(study, saved["meta"])
    rows = args.rows or list(study.rows)
    if unknown := sorted(set(rows) - set(study.rows)):
        parser.error(f"unknown rows {unknown} for study {study.name}: {', '.join(study.rows)}")
    if args.add_missing and not saved:
        parser.error(f"no saved study in {study.raw} to add to")
    if args.data is None:
        if not (saved and args.note):
            parser.error("give the class-folder data (or --note to set a saved study's notes)")
    elif saved and not (args.add_missing or args.replace):
        parser.error(
            f"{study.raw.relative_to(REPO)} already holds this study's runs: --add-missing runs "
            "only the row x seed experiments it lacks and keeps the rest; --replace starts over"
        )
    elif args.add_missing:
        saved = _add_missing(args, parser, study, saved, rows)
        if saved is None:
            return
    else:
        saved = _new(args, study, rows)
    if args.note:  # kept with the results, so a later rebuild says the same
        saved["meta"]["notes"] = args.note
    study.raw.parent.mkdir(parents=True, exist_ok=True)
    study.raw.write_text(json.dumps(saved, indent=1), encoding="utf-8")
    print(f"wrote {study.raw}; `python bench/render {study.out.stem}` makes the page")


if __name__ == "__main__":
    main()
