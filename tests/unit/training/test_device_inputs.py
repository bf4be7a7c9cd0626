"""training/device_inputs.py: batches made on the device under JAX match the NumPy pipeline's
augmentation statistics, stay jax.Arrays through Keras' data adapter, and train through
assemble with train.steps_per_execution > 1. Everything runs under JAX on the CPU, in one fresh
process (Keras picks its backend once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Images whose pixels say where they came from: channel 0 the row, 1 the column, 2 the image.
# The centre pixel of a crop then gives its offset, and the order of two neighbours a flip.
SCRIPT = """
import json
import jax, keras, numpy as np
from imgclf.augmentation import CUTOUT_FILL
from imgclf.params import parse_params
from imgclf.training.assemble import assemble
from imgclf.training.device_inputs import DeviceBatches, device_ready
from imgclf.training.inputs import ArrayBatches, make_dataset
from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation, mirror_half

COUNT, SIDE, BATCH, EPOCHS = 64, 8, 24, 24
rows, columns = np.meshgrid(np.arange(SIDE), np.arange(SIDE), indexing="ij")
coded = np.zeros((COUNT, SIDE, SIDE, 3), np.uint8)
coded[..., 0], coded[..., 1] = rows, columns
coded[..., 2] = np.arange(COUNT)[:, None, None]
labels = np.arange(COUNT) % 10

def numpy_epochs(images, online, seed=0):
    current = CurrentEpoch()
    if online.alternating_flip:
        images = mirror_half(images, seed)
    batches = ArrayBatches(images, labels, 10, BATCH, shuffle_seed=seed,
                           transform=online.batch_transform(seed, current_epoch=current))
    for epoch in range(EPOCHS):
        current.epoch = epoch
        yield epoch, np.concatenate([batches[i][0] for i in range(len(batches))])
        batches.on_epoch_end()

def device_epochs(images, online, seed=0):
    current = CurrentEpoch()
    batches = make_dataset(images, labels, 10, BATCH, shuffle_seed=seed, online=online,
                           current_epoch=current)
    assert isinstance(batches, DeviceBatches)
    for epoch in range(EPOCHS):
        current.epoch = epoch
        yield epoch, np.concatenate([np.asarray(batches[i][0]) for i in range(len(batches))])

def crop_statistics(epochs):
    dy, dx, flipped = [], [], []
    for _, out in epochs:
        mirrored = out[:, 4, 5, 1] < out[:, 4, 4, 1]
        dy += list(out[:, 4, 4, 0].astype(int) - 4)
        dx += list(out[:, 4, 4, 1].astype(int) - np.where(mirrored, 3, 4))
        flipped += list(mirrored)
    share = lambda values, v: float(np.mean(np.array(values) == v))
    return {"dy": [share(dy, v) for v in range(-3, 4)], "dx": [share(dx, v) for v in range(-3, 4)],
            "flipped": float(np.mean(flipped))}

def flips_by_epoch(epochs):
    out = {}
    for epoch, batch in epochs:
        mirrored = batch[:, 4, 5, 1] < batch[:, 4, 4, 1]
        out[epoch] = sorted(int(i) for i in batch[mirrored, 0, 0, 2])
    return [out[e] for e in range(3)]

def pixel_statistics(epochs):
    pixels = np.stack([out.astype(np.float32) for _, out in epochs])
    return {"mean": float(pixels.mean()), "std": float(pixels.std()),
            "image_mean_std": float(pixels.mean(axis=(2, 3, 4)).std()),
            "fill_share": float(np.mean(pixels == CUTOUT_FILL))}

report, BOTH = {}, (numpy_epochs, device_epochs)
crop = OnlineAugmentation(crop_pixels=2, flip="random")
report["crop"] = [crop_statistics(f(coded, crop)) for f in BOTH]
alternating = OnlineAugmentation(crop_pixels=0, flip="alternating")
report["half"] = sorted(int(i) for i in np.flatnonzero(np.random.default_rng(0).random(COUNT) < .5))
report["alternating"] = [flips_by_epoch(f(coded, alternating)) for f in BOTH]
noise = np.random.default_rng(1).integers(0, 100, (COUNT, SIDE, SIDE, 3), dtype=np.uint8)
jitter = OnlineAugmentation(color_jitter=0.4)
report["jitter"] = [pixel_statistics(f(noise, jitter)) for f in BOTH]
zeros = np.zeros_like(noise)
erase = OnlineAugmentation(cutout_fraction=0.5)
report["cutout"] = [pixel_statistics(f(zeros, erase)) for f in BOTH]

# The order: every epoch a permutation of the whole split, new each epoch, the same per seed.
def orders(seed):
    current = CurrentEpoch()
    batches = DeviceBatches(coded, np.arange(COUNT), COUNT, BATCH, shuffle_seed=seed,
                            current_epoch=current)
    seen = []
    for epoch in range(3):
        current.epoch = epoch
        seen.append([int(i) for b in range(len(batches))
                     for i in np.asarray(batches[b][1]).argmax(axis=1)])
    return seen, batches
report["orders"], batches = orders(0)
report["orders_again"], report["orders_seed1"] = orders(0)[0], orders(1)[0]
first = batches[0]
adapter = keras.src.trainers.data_adapters.get_data_adapter(batches)
through_keras = next(iter(adapter.get_jax_iterator()))
report["types"] = [isinstance(x, jax.Array) for x in (*first, *through_keras)]
report["dtypes"] = [str(first[0].dtype), str(first[1].dtype)]
report["same_read_twice"] = bool(np.array_equal(np.asarray(batches[1][0]),
                                                np.asarray(batches[1][0])))
mixing = OnlineAugmentation(crop_pixels=2, mixup_alpha=0.4)
report["mixup_feeds"] = type(make_dataset(coded, labels, 10, BATCH, shuffle_seed=0,
                                          online=mixing)).__name__
report["ready_by_size"] = [device_ready(None, 400, 1000), device_ready(None, 600, 1000),
                           device_ready(OnlineAugmentation(small_side=4, small_epochs=1))]

# Progressive resizing on the device: the NumPy pipeline's area weights, then full size.
from imgclf.training import device_inputs, online_augmentation
photos = np.random.default_rng(2).integers(0, 256, (6, 32, 30, 3), dtype=np.uint8)
report["downscale"] = [
    [list(online_augmentation.downscale(photos, side).shape),
     list(device_inputs.downscale(jax.numpy.asarray(photos), side).shape),
     int(np.abs(online_augmentation.downscale(photos, side).astype(int)
                - np.asarray(device_inputs.downscale(jax.numpy.asarray(photos), side))).max())]
    for side in (24, 16, 20)]
current = CurrentEpoch()
small = make_dataset(coded, labels, 10, BATCH, shuffle_seed=0, current_epoch=current,
                     online=OnlineAugmentation(crop_pixels=2, small_side=4, small_epochs=2))
report["progressive"] = [type(small).__name__]
for epoch in range(3):
    current.epoch = epoch
    report["progressive"].append(list(small[0][0].shape[1:3]))
# Without a crop or a shuffle, the first small batch is the NumPy downscale of the first images.
plain = make_dataset(noise, labels, 10, BATCH, shuffle_seed=None,
                     online=OnlineAugmentation(small_side=4, small_epochs=1))
batch = np.asarray(plain[0][0]).astype(int)
expected = online_augmentation.downscale(noise[:BATCH], 4).astype(int)
report["small_batch_gap"] = int(np.abs(batch - expected).max())

# A tiny fit through assemble: 5 steps an epoch, so with 2 steps per execution each epoch
# ends on a short call; lookahead averages every 5 steps either way.
def fit(steps_per_execution):
    params = parse_params({"model": {"arch": "fast_cnn", "widths": [8, 8, 8]},
                           "train": {"epochs": 2, "batch_size": 16, "seed": 3,
                                     "mixed_precision": "off",
                                     "steps_per_execution": steps_per_execution},
                           "augment": {"progressive_side": None}})
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (72, 16, 16, 3), dtype=np.uint8)
    y = np.arange(72) % 4
    trainer = assemble(params, (images, y), (images[:16], y[:16]), list("abcd"),
                       say=lambda _: None)
    lookahead = [c for c in trainer.callbacks if type(c).__name__ == "Lookahead"][0]
    result = trainer.fit(verbose=0)
    return trainer, lookahead, result
one, one_lookahead, _ = fit(1)
two, two_lookahead, result = fit(2)
report["fit"] = {
    "epochs": [row["epoch"] for row in result.history],
    "val_accuracy": "val_accuracy" in result.history[-1],
    "steps_per_execution": two.model.steps_per_execution,
    "train_data": type(two.train_data).__name__, "val_data": type(two.val_data).__name__,
    "lookahead_steps": [one_lookahead._step, two_lookahead._step],
    "lookahead_updated_at": [one_lookahead._updated_at, two_lookahead._updated_at],
    "iterations": int(keras.ops.convert_to_numpy(two.model.optimizer.iterations)),
    "weights_gap": max(float(np.abs(a - b).max()) for a, b in
                       zip(one.model.get_weights(), two.model.get_weights())),
}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_crop_offsets_and_flips_are_drawn_as_the_numpy_pipeline_draws_them(report) -> None:
    numpy_side, device = report["crop"]
    # Offsets -2..2 (pad 2) each a fifth of the time, none beyond; half the images flipped.
    # 64 images x 24 epochs: a share's standard error is about 0.01.
    for name in ("dy", "dx"):
        assert device[name][0] == device[name][-1] == 0.0, device
        for ours, theirs in zip(device[name][1:-1], numpy_side[name][1:-1], strict=True):
            assert ours == pytest.approx(0.2, abs=0.05) and theirs == pytest.approx(0.2, abs=0.05)
    assert device["flipped"] == pytest.approx(0.5, abs=0.05)
    assert numpy_side["flipped"] == pytest.approx(0.5, abs=0.05)


@pytest.mark.integration
def test_the_alternating_flip_mirrors_the_same_half_then_the_other(report) -> None:
    half = report["half"]
    other = sorted(set(range(64)) - set(half))
    for flips in report["alternating"]:  # the NumPy pipeline's epochs 0-2, then the device's
        assert flips == [half, other, half]


@pytest.mark.integration
def test_colour_jitter_and_cutout_match_the_numpy_pipeline(report) -> None:
    (numpy_jitter, device_jitter), (numpy_cutout, device_cutout) = (
        report["jitter"],
        report["cutout"],
    )
    # 64 x 24 draws per path: the mean's standard error is about 0.7%. The spread of the
    # images' means follows the brightness factor's range (half as wide would halve it).
    assert device_jitter["mean"] == pytest.approx(numpy_jitter["mean"], rel=0.04)
    assert device_jitter["std"] == pytest.approx(numpy_jitter["std"], rel=0.05)
    assert device_jitter["image_mean_std"] == pytest.approx(numpy_jitter["image_mean_std"], rel=0.1)
    # A 4x4 box centred anywhere on an 8x8 zero image, clipped at the borders.
    assert numpy_cutout["fill_share"] > 0.1
    assert device_cutout["fill_share"] == pytest.approx(numpy_cutout["fill_share"], rel=0.05)


@pytest.mark.integration
def test_each_epoch_is_a_seeded_permutation_of_the_whole_split(report) -> None:
    orders = report["orders"]
    for order in orders:
        assert sorted(order) == list(range(64))
    assert orders[0] != orders[1] != orders[2]
    assert report["orders_again"] == orders
    assert report["orders_seed1"] != orders
    assert report["same_read_twice"] is True


@pytest.mark.integration
def test_batches_are_jax_arrays_through_keras_and_the_rest_falls_back_to_numpy(report) -> None:
    assert report["types"] == [True, True, True, True]
    assert report["dtypes"] == ["uint8", "float32"]
    assert report["mixup_feeds"] == "ArrayBatches"
    # A split over half the device's memory stays on the host; progressive resizing does not.
    assert report["ready_by_size"] == [True, False, True]


@pytest.mark.integration
def test_progressive_resizing_downscales_on_the_device_as_numpy_does(report) -> None:
    for numpy_shape, device_shape, largest_gap in report["downscale"]:
        assert numpy_shape == device_shape and largest_gap <= 1  # float sums' order, then rint
    assert [shape[1:3] for shape, _, _ in report["downscale"]] == [[26, 24], [17, 16], [21, 20]]
    assert report["progressive"] == ["DeviceBatches", [4, 4], [4, 4], [8, 8]]
    assert report["small_batch_gap"] <= 1


@pytest.mark.integration
def test_assemble_trains_with_two_steps_per_execution_as_with_one(report) -> None:
    fit = report["fit"]
    assert fit["epochs"] == [1, 2] and fit["val_accuracy"]
    assert fit["steps_per_execution"] == 2 and fit["iterations"] == 10
    assert fit["train_data"] == fit["val_data"] == "DeviceBatches"
    # Lookahead counts steps, not calls: it averaged at steps 5 and 10 both times, so the two
    # runs end on the same weights.
    assert fit["lookahead_steps"] == [10, 10] and fit["lookahead_updated_at"] == [10, 10]
    assert fit["weights_gap"] < 1e-5
