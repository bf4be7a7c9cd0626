"""Training throughput fed by the real input pipeline vs the same batches already in memory.

Builds the model, loss and optimizer the train stage would from a params file, then times
`fit` over the same number of steps twice, alternating (pipeline, memory, pipeline, memory,
...) so a busy machine slows both alike:
- pipeline: `imgclf.training.inputs.make_datasets`, as the train stage feeds it (seeded shuffle,
  one-hot, online augmentation, prefetch);
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
    import tensorflow as tf

    from imgclf.data.arrays import load_split
    from imgclf.model.losses import build_loss
    from imgclf.model.optimizers import build_optimizer
    from imgclf.params import load_params
    from imgclf.training.classifier import build_classifier, learn_whitening
    from imgclf.training.fit import compile_model
    from imgclf.training.inputs import make_datasets, online_augmentation
    from imgclf.training.runtime import configure_accelerator, make_reproducible

    params = load_params(args.params)
    images, labels = load_split(args.train)
    num_classes = int(labels.max()) + 1
    settings = params.train
    make_reproducible(settings.seed, False)
    configure_accelerator(settings.mixed_precision, settings.jit_compile)  # as the train stage
    whitening = learn_whitening(params.model, images, settings.seed)
    model = build_classifier(
        params.model, params.reg, images.shape[1:], num_classes, images, whitening
    )
    steps_per_epoch = -(-len(images) // settings.batch_size)
    compile_model(
        model,
        loss=build_loss(params.loss),
        optimizer=build_optimizer(params.optimizer, steps_per_epoch, settings.epochs),
    )
    pipeline, _ = make_datasets(
        (images, labels),
        (images[:1], labels[:1]),
        num_classes,
        settings.batch_size,
        settings.seed,
        online_augmentation(params.augment),
    )
    pipeline = pipeline.repeat()
    steps = min(args.steps, steps_per_epoch)
    in_memory = pipeline.take(steps).cache()
    for _ in in_memory:  # fill the cache: from here on these batches are plain tensors
        pass
    in_memory = in_memory.repeat().prefetch(tf.data.AUTOTUNE)

    def images_per_second(dataset) -> float:
        started = time.perf_counter()
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
        return steps * settings.batch_size / (time.perf_counter() - started)

    images_per_second(in_memory)  # tracing and first-step costs, paid once, not timed
    timings: dict[str, list[float]] = {"pipeline": [], "memory": []}
    for _ in range(args.rounds):
        timings["pipeline"].append(images_per_second(pipeline))
        timings["memory"].append(images_per_second(in_memory))
    pipeline_rate = statistics.median(timings["pipeline"])
    memory_rate = statistics.median(timings["memory"])
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "model": f"{params.model.arch} width {params.model.width}",
                "batch_size": settings.batch_size,
                "steps": steps,
                "rounds": args.rounds,
                "pipeline_images_per_second": round(pipeline_rate, 1),
                "memory_images_per_second": round(memory_rate, 1),
                "ratio": round(pipeline_rate / memory_rate, 3),
                "best_ratio": round(max(timings["pipeline"]) / max(timings["memory"]), 3),
                "timings": {k: [round(v, 1) for v in values] for k, values in timings.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
