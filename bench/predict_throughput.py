"""`imgclf predict` throughput on a folder of images vs `model.predict` on them preloaded.

Times, alternating (predict, preloaded, predict, ...) so a busy machine slows both alike:
- predict: what `imgclf predict FOLDER` does after start-up: list the files, decode each (EXIF,
  mode conversion, resize to the model's input) and classify them batch by batch;
- preloaded: `model.predict` over the same images already decoded into one uint8 array.
Prints one JSON line: images/s of each (median and best over rounds) and the ratio of the
medians. One warm-up pass of each comes first (graph tracing, file cache).

    python bench/predict_throughput.py test_images/ --model models/model.keras --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder of JPEG/PNG images (recursive)")
    parser.add_argument("--model", type=Path, default=Path("models/model.keras"))
    parser.add_argument("--classes", type=Path, default=Path("data/prepared/classes.json"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from imgclf.data.user_files import decode_image
    from imgclf.serving import prediction

    classifier = prediction.load_classifier(str(args.model), args.classes, download=None)
    height, width, channels = classifier.model.input_shape[1:4]

    def run_predict() -> int:
        with tempfile.TemporaryDirectory() as scratch:
            inputs = prediction.collect_inputs([args.folder], Path(scratch))
            rows = prediction.predict_images(
                classifier, inputs, batch_size=args.batch_size, top_k=1
            )
        return len(rows)

    with tempfile.TemporaryDirectory() as scratch:
        listed = prediction.collect_inputs([args.folder], Path(scratch))
    images = np.stack([decode_image(item.path, (height, width), channels) for item in listed])

    def run_preloaded() -> int:
        classifier.model.predict(images, batch_size=args.batch_size, verbose=0)
        return len(images)

    rates: dict[str, list[float]] = {"predict": [], "preloaded": []}
    for round_number in range(args.rounds + 1):
        for name, action in (("predict", run_predict), ("preloaded", run_preloaded)):
            started = time.perf_counter()
            count = action()
            if round_number:  # round 0 is the warm-up
                rates[name].append(count / (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(
        json.dumps(
            {
                "images": int(len(images)),
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "predict_images_per_s": round(medians["predict"], 1),
                "preloaded_images_per_s": round(medians["preloaded"], 1),
                "best_predict_images_per_s": round(max(rates["predict"]), 1),
                "best_preloaded_images_per_s": round(max(rates["preloaded"]), 1),
                "predict_vs_preloaded": round(medians["predict"] / medians["preloaded"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
