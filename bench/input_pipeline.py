"""Training throughput fed by the real input pipeline vs the same batches already in memory.

Assembles training as the train stage does from a params file (imgclf.training.assemble), then
times `fit` over the same number of steps twice, alternating (pipeline, memory, pipeline,
memory, ...) so a busy machine slows both alike:
- pipeline: the assembly's train_data, as the train stage feeds it (seeded shuffle, one-hot,
  online augmentation, prefetch);
- memory: those very batches taken once from the pipeline, cached as tensors, and replayed.
Prints one JSON line: images/s of each (median over rounds) and their ratio, and the ratio of
the best rounds, which a machine whose free CPU comes and goes disturbs least.

    python bench/input_pipeline.py data/augmented/train.npz --params params.yaml --steps 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path, help="a train.npz written by the augment stage")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--steps", type=int, default=60, help="training steps per timing")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import keras

    from imgclf.data.arrays import load_split
    from imgclf.params import load_params
    from imgclf.training.assemble import assemble

    params = load_params(args.params)
    # Full-size batches throughout and the fast kernels, as this benchmark always measured.
    augment = params.augment.model_copy(update={"progressive_side": None})
    train = params.train.model_copy(update={"deterministic": False})
    params = params.model_copy(update={"augment": augment, "train": train})
    images, labels = load_split(args.train)
    names = [str(label) for label in range(int(labels.max()) + 1)]
    trainer = assemble(params, (images, labels), None, names, say=lambda _: None)
    steps = min(args.steps, trainer.plan.steps_per_epoch)
    timings = _timings(trainer.model, trainer.train_data, steps, trainer.plan.global_batch, args)
    pipeline_rate = statistics.median(timings["pipeline"])
    memory_rate = statistics.median(timings["memory"])
    summary = {
        "backend": keras.backend.backend(),
        "model": f"{params.model.arch} width {params.model.width}",
        "batch_size": trainer.plan.global_batch,
        "steps": steps,
        "rounds": args.rounds,
        "pipeline_images_per_second": round(pipeline_rate, 1),
        "memory_images_per_second": round(memory_rate, 1),
        "ratio": round(pipeline_rate / memory_rate, 3),
        "best_ratio": round(max(timings["pipeline"]) / max(timings["memory"]), 3),
        "timings": {k: [round(v, 1) for v in values] for k, values in timings.items()},
    }
    print(json.dumps(summary))


def _timings(model, batches, steps: int, batch_size: int, args) -> dict[str, list[float]]:
    """Images/s of `steps` training steps fed by the pipeline and by its batches cached."""
    import tensorflow as tf

    pipeline = batches.repeat()
    in_memory = pipeline.take(steps).cache()
    for _ in in_memory:  # fill the cache: from here on these batches are plain tensors
        pass
    in_memory = in_memory.repeat().prefetch(tf.data.AUTOTUNE)

    def images_per_second(dataset) -> float:
        started = time.perf_counter()
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        return steps * batch_size / (time.perf_counter() - started)

    images_per_second(in_memory)  # tracing and first-step costs, paid once, not timed
    timings: dict[str, list[float]] = {"pipeline": [], "memory": []}
    for _ in range(args.rounds):
        timings["pipeline"].append(images_per_second(pipeline))
        timings["memory"].append(images_per_second(in_memory))
    return timings


if __name__ == "__main__":
    main()
