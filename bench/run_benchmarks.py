"""Measure imgclf against the hand-written Keras reference on one machine; write the JSON.

In one invocation, on the same images and split: the reference script (bench/reference_keras.py),
imgclf's `seed_cnn` with the seed recipe, and imgclf's shipped defaults, each through
`dvc exp run -S ...` in a scratch copy of this repository, over several seeds; plus the
pipeline's own overheads (data stages, a no-op `dvc repro`), the input-pipeline throughput and
`imgclf predict`'s. Writes docs/results/performance.json; `python bench/render performance`
turns it into docs/results/performance.md (`make bench` runs both). The JSON keeps the latest run
of each processor class (its features: bfloat16 units or AVX2 alone train at very different
speeds): a new run replaces the one from its own class and keeps the others beside it.

    python bench/run_benchmarks.py ../shared/datasets/cifar10-train-jpg.tar.gz --seeds 0 1
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from common import DATA_STAGES, REPO, RESULTS, SEED_RECIPE, run, session

RAW = RESULTS / "performance.json"
sys.path.insert(0, str(REPO / "tests"))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _last_json_line(command: list[str], project: Path, env: dict[str, str]) -> dict:
    _, out = run([sys.executable, *command], project, env)
    return json.loads(out.strip().splitlines()[-1])


def _history(folder: Path) -> list[dict[str, float]]:
    """Each epoch's row from DVCLive's files (one TSV per metric, its step the epoch)."""
    rows: dict[int, dict[str, float]] = {}
    for name in ("epoch_seconds", "val_accuracy", "image_side"):
        with (folder / f"{name}.tsv").open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                step = int(row["step"])
                rows.setdefault(step, {"epoch": float(step)})[name] = float(row[name])
    return [rows[step] for step in sorted(rows)]


def _experiment(project: Path, env: dict[str, str], overrides: dict[str, str], seed: int) -> dict:
    # `dvc exp run` leaves its params in the workspace: start every experiment from the commit.
    run(["git", "checkout", "--", "params.yaml"], project, env)
    settings = {**overrides, "train.seed": str(seed)}
    command = ["dvc", "exp", "run"]
    for key, value in settings.items():
        command += ["-S", f"{key}={value}"]
    wall, _ = run(command, project, env)
    train = _read_json(project / "reports/metrics/train.json")
    evaluation = _read_json(project / "reports/metrics/eval.json")
    return {
        "accuracy": evaluation["accuracy"],
        "train_seconds": train["train_seconds"],
        "pipeline_seconds": round(wall, 1),
        "peak_rss_mb": train.get("peak_rss_mb"),
        "train_images": train.get("num_train_images"),
        "history": _history(project / "dvclive/plots/metrics"),
        "command": "dvc exp run " + " ".join(f"-S {k}={v}" for k, v in settings.items()),
    }


def _predict_throughput(project: Path, env: dict[str, str]) -> dict:
    """`imgclf predict` on the carved test split written out as JPEG files, decoding included,
    beside `model.predict` on the same images preloaded (bench/predict_throughput.py)."""
    import numpy as np
    from PIL import Image

    folder = project / "bench-test-images"
    folder.mkdir(exist_ok=True)
    with np.load(project / "data/prepared/test.npz") as split:
        for index, pixels in enumerate(split["images"]):
            Image.fromarray(pixels.squeeze()).save(folder / f"{index:05d}.jpg", quality=95)
    script = str(REPO / "bench/predict_throughput.py")
    return _last_json_line([script, str(folder), "--rounds", "3"], project, env)


def measure(args: argparse.Namespace) -> dict:
    """Every measurement of the page, in a scratch project on args.data."""
    from support.project import make_project, pipeline_env

    data = args.data.resolve()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    project = make_project(args.workdir, {"data": {"source": "folder", "path": str(data)}})
    # The stages run the project's own copy of the code, whatever imgclf is installed.
    env = pipeline_env({"PYTHONPATH": str(project / "src")})
    measured = {"data": str(args.data), "seeds": args.seeds, "session": session()}
    stage_seconds = {}
    for stage in DATA_STAGES:
        stage_seconds[stage], _ = run(["dvc", "repro", "--single-item", stage], project, env)
    # Target 4: the default model fed by the real pipeline vs the same batches in memory.
    pipeline = [str(REPO / "bench/input_pipeline.py"), "data/augmented/train.npz"]
    feeding = _last_json_line(pipeline, project, env)
    rows: dict[str, list[dict]] = {"reference": [], "seed_cnn": [], "default": []}
    for seed in args.seeds:
        if not args.skip_reference:
            reference = [str(REPO / "bench/reference_keras.py"), str(data), "--seed", str(seed)]
            rows["reference"].append(_last_json_line(reference, project, env))
        rows["seed_cnn"].append(_experiment(project, env, SEED_RECIPE, seed))
        rows["default"].append(_experiment(project, env, {}, seed))
        print(json.dumps({"seed": seed, **{k: v[-1] for k, v in rows.items() if v}}), flush=True)
    # The workspace now holds the last experiment's params and outputs: nothing is left to run.
    noop_seconds, _ = run(["dvc", "repro"], project, env)
    return {
        **measured,
        "rows": rows,
        "stage_seconds": stage_seconds,
        "noop_seconds": noop_seconds,
        "feeding": feeding,
        "predict": _predict_throughput(project, env),
    }


def _features(measured: dict) -> str | None:
    """The processor class a run measured on: its recorded features (None before they were)."""
    return (measured.get("session") or {}).get("features")


def with_other_processors(measured: dict, previous: dict | None) -> dict:
    """The new run, with the previous file's runs from other processor classes kept beside it
    (newest first, one per class); the previous run of the new run's own class is dropped."""
    if previous is None:
        return measured
    earlier = {key: value for key, value in previous.items() if key != "other_processors"}
    seen, kept = {_features(measured)}, []
    for older in [earlier, *previous.get("other_processors", [])]:
        if _features(older) not in seen:
            seen.add(_features(older))
            kept.append(older)
    return {**measured, "other_processors": kept} if kept else measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="class-folder directory or archive")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/imgclf-benchmark"))
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    measured = measure(args)
    previous = _read_json(RAW) if RAW.exists() else None
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(
        json.dumps(with_other_processors(measured, previous), indent=1) + "\n", encoding="utf-8"
    )
    print(f"wrote {RAW}; `python bench/render performance` makes the page")


if __name__ == "__main__":
    main()
