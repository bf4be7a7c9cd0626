"""Tests for imgclf.training.online_augmentation: crop and flip, MixUp, CutMix and
the per-batch pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from support.images import random_images


def test_random_crop_flip_takes_a_window_of_the_mirror_padded_image() -> None:
    from imgclf.training.online_augmentation import random_crop_flip

    images = random_images(12, side=6, seed=3)
    out = random_crop_flip(images, np.random.default_rng(0), 2)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    flipped = 0
    for index in range(len(images)):
        windows = [
            padded[index, top : top + 6, left : left + 6] for top in range(5) for left in range(5)
        ]
        plain = any(np.array_equal(out[index], window) for window in windows)
        mirrored = any(np.array_equal(out[index], window[:, ::-1]) for window in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert 0 < flipped < len(images)
    same_seed = random_crop_flip(images, np.random.default_rng(0), 2)
    np.testing.assert_array_equal(out, same_seed)


def test_mixup_blends_images_and_labels_by_one_weight() -> None:
    from imgclf.training.online_augmentation import mixup

    images = random_images(8)
    labels = np.eye(4, dtype=np.float32)[np.arange(8) % 4]
    out, mixed = mixup(images, labels, np.random.default_rng(5), 0.4)
    reference = np.random.default_rng(5)
    weight = reference.beta(0.4, 0.4)
    partner = reference.permutation(8)
    expected = np.rint(weight * images.astype(np.float64) + (1 - weight) * images[partner])
    assert np.abs(out.astype(np.float64) - expected).max() <= 1
    np.testing.assert_allclose(mixed, weight * labels + (1 - weight) * labels[partner], atol=1e-6)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-6)
    assert out.dtype == np.uint8 and mixed.dtype == np.float32


def test_cutmix_labels_follow_the_pasted_area() -> None:
    from imgclf.training.online_augmentation import cutmix

    images = np.stack([np.full((8, 8, 1), value, np.uint8) for value in range(0, 240, 30)])
    labels = np.eye(8, dtype=np.float32)
    out, mixed = cutmix(images, labels, np.random.default_rng(4), 1.0)
    for index in range(8):
        own = (out[index] == images[index, 0, 0]).mean()
        assert mixed[index, index] == pytest.approx(own) or own == 1.0  # partner may be itself
        np.testing.assert_allclose(mixed[index].sum(), 1.0, atol=1e-6)
    assert 0 < (out != images).any(axis=(1, 2, 3)).sum() <= 8


def test_online_augmentation_off_on_and_seeded() -> None:
    from imgclf.training.online_augmentation import OnlineAugmentation

    assert OnlineAugmentation().batch_transform(0) is None
    images = random_images(16)
    labels = np.eye(4, dtype=np.float32)[np.arange(16) % 4]
    online = OnlineAugmentation(crop_pixels=2, color_jitter=0.2, cutout_fraction=0.3)
    first = online.batch_transform(1)(images, labels)
    again = online.batch_transform(1)(images, labels)
    other = online.batch_transform(2)(images, labels)
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])
    np.testing.assert_array_equal(first[1], labels)  # no mixing: labels stay one-hot
    both = OnlineAugmentation(mixup_alpha=1.0, cutmix_alpha=1.0).batch_transform(0)
    kinds = set()
    for _ in range(12):
        out, mixed = both(images, labels)
        assert out.dtype == np.uint8 and mixed.shape == labels.shape
        # CutMix leaves some pixels untouched in every image; MixUp blends all of them.
        kinds.add("cutmix" if (out == images).all(axis=3).any(axis=(1, 2)).all() else "mixup")
    assert kinds == {"mixup", "cutmix"}


def test_tf_batches_carry_soft_labels_from_mixup() -> None:
    from imgclf.training.inputs import make_dataset
    from imgclf.training.online_augmentation import OnlineAugmentation

    images = random_images(24, side=8)
    labels = np.arange(24) % 3
    online = OnlineAugmentation(crop_pixels=1, mixup_alpha=1.0)
    batches = [
        (np.asarray(batch), np.asarray(soft))
        for batch, soft in make_dataset(images, labels, 3, 8, shuffle_seed=0, online=online)
    ]
    assert len(batches) == 3
    for batch, soft in batches:
        assert batch.dtype == np.uint8 and batch.shape == (8, 8, 8, 3)
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert any(((soft > 0) & (soft < 1)).any() for _, soft in batches)


def test_tf_batches_turn_tf_data_autotuning_off() -> None:
    """Closing an autotuned iterator (Keras opens one per epoch) idled the CPU for seconds."""
    from imgclf.training.inputs import make_dataset
    from imgclf.training.online_augmentation import OnlineAugmentation

    images, labels = random_images(16, side=8), np.arange(16) % 2
    for online in (None, OnlineAugmentation(crop_pixels=1)):
        dataset = make_dataset(images, labels, 2, 8, shuffle_seed=0, online=online)
        assert dataset.options().autotune.enabled is False
        assert sum(len(batch) for batch, _ in dataset) == 16


def test_mirror_half_mirrors_a_seeded_half_exactly() -> None:
    from imgclf.training.online_augmentation import mirror_half

    images = random_images(40)
    out = mirror_half(images, seed=3)
    mirrored = [not np.array_equal(a, b) for a, b in zip(out, images, strict=True)]
    for index, flag in enumerate(mirrored):
        expected = images[index][:, ::-1] if flag else images[index]
        np.testing.assert_array_equal(out[index], expected)
    assert 10 < sum(mirrored) < 30
    np.testing.assert_array_equal(out, mirror_half(images, seed=3))


def test_alternating_flip_mirrors_every_batch_of_the_odd_epochs_only() -> None:
    from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation

    images = random_images(8)
    labels = np.eye(4, dtype=np.float32)[np.arange(8) % 4]
    # No room to shift (0 px): what comes out is the batch or its mirror, nothing random.
    online = OnlineAugmentation(crop_pixels=0, flip="alternating")
    assert online.alternating_flip
    transform = online.batch_transform(0, steps_per_epoch=2)
    outputs = [transform(images, labels)[0] for _ in range(6)]  # 3 epochs of 2 batches
    for batch, out in enumerate(outputs):
        odd_epoch = (batch // 2) % 2 == 1
        np.testing.assert_array_equal(out, images[:, :, ::-1] if odd_epoch else images)
    # Told the epoch, it follows the training loop rather than its own count (a loader that
    # reads one batch ahead to learn the shapes, or a resume, would shift the count).
    current = CurrentEpoch()
    told = online.batch_transform(0, steps_per_epoch=2, current_epoch=current)
    np.testing.assert_array_equal(told(images, labels)[0], images)  # a look-ahead read
    for epoch in (0, 0, 1, 1, 4, 5):
        current.epoch = epoch
        expected = images[:, :, ::-1] if epoch % 2 else images
        np.testing.assert_array_equal(told(images, labels)[0], expected)
    # The random flip mirrors some images of a batch, not all or none.
    randomly = OnlineAugmentation(crop_pixels=0).batch_transform(0)(images, labels)[0]
    same = [np.array_equal(a, b) for a, b in zip(randomly, images, strict=True)]
    assert 0 < sum(same) < len(images)


def test_downscale_averages_the_pixels_each_output_pixel_covers() -> None:
    from imgclf.training.online_augmentation import area_taps, downscale

    images = random_images(5, side=8, seed=2)
    # Halving: every output pixel is the mean of its 2x2 block.
    halves = images.astype(np.float64).reshape(5, 4, 2, 4, 2, 3).mean(axis=(2, 4))
    np.testing.assert_array_equal(downscale(images, 4), np.rint(halves).astype(np.uint8))
    # 8 -> 6 (the 32 -> 24 ratio): spans of 4/3 pixel, weights summing to 1 per output pixel.
    indices, weights = area_taps(8, 6)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    dense = np.zeros((6, 8))
    for row in range(6):
        np.add.at(dense[row], indices[row], weights[row])
    np.testing.assert_allclose(dense[0], [0.75, 0.25, 0, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(dense[1], [0, 0.5, 0.5, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(dense[5], [0, 0, 0, 0, 0, 0, 0.25, 0.75], atol=1e-6)
    # Against a plain weighted sum over a whole batch.
    expected = np.einsum("ih,nhwc,jw->nijc", dense, images.astype(np.float64), dense)
    np.testing.assert_array_equal(downscale(images, 6), np.rint(expected).astype(np.uint8))
    flat = np.full((2, 8, 8, 3), 77, np.uint8)
    out = downscale(flat, 6)
    assert out.shape == (2, 6, 6, 3) and out.dtype == np.uint8 and (out == 77).all()
    # Not square: the shorter side becomes `side`, the other keeps the ratio.
    assert downscale(np.zeros((1, 8, 12, 3), np.uint8), 6).shape == (1, 6, 9, 3)


def test_progressive_resizing_shrinks_the_first_epochs_batches_only() -> None:
    from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation

    images = random_images(4, side=8)
    labels = np.eye(4, dtype=np.float32)
    online = OnlineAugmentation(small_side=6, small_epochs=2)
    assert online.active and online.resizes
    assert not OnlineAugmentation(small_side=6, small_epochs=0).resizes
    # Counting batches (2 per epoch): epochs 0 and 1 small, then full size.
    counted = online.batch_transform(0, steps_per_epoch=2)
    sides = [counted(images, labels)[0].shape[1] for _ in range(6)]
    assert sides == [6, 6, 6, 6, 8, 8]
    # Told the epoch (as after a resume at epoch 2): full size from the first batch.
    current = CurrentEpoch(epoch=2)
    told = online.batch_transform(0, steps_per_epoch=2, current_epoch=current)
    assert told(images, labels)[0].shape[1] == 8
    current.epoch = 1
    small, same_labels = told(images, labels)
    assert small.shape == (4, 6, 6, 3)
    np.testing.assert_array_equal(same_labels, labels)
    # The side DVCLive and the MLflow run record for each epoch: the batches' own.
    assert [online.image_side(epoch, 8) for epoch in range(3)] == [6, 6, 8]
    assert OnlineAugmentation(small_side=6, small_epochs=0).image_side(0, 8) == 8


def test_tf_batches_follow_the_current_epochs_size() -> None:
    from imgclf.training.inputs import CurrentEpochCallback, make_dataset
    from imgclf.training.online_augmentation import CurrentEpoch, OnlineAugmentation

    images, labels = random_images(16, side=8), np.arange(16) % 2
    current = CurrentEpoch()
    online = OnlineAugmentation(crop_pixels=1, small_side=4, small_epochs=1)
    dataset = make_dataset(
        images, labels, 2, 8, shuffle_seed=0, online=online, current_epoch=current
    )
    assert tuple(dataset.element_spec[0].shape) == (None, None, None, 3)
    clock = CurrentEpochCallback(current)
    clock.on_epoch_begin(0)
    assert {tuple(batch.shape) for batch, _ in dataset} == {(8, 4, 4, 3)}
    clock.on_epoch_begin(1)
    assert {tuple(batch.shape) for batch, _ in dataset} == {(8, 8, 8, 3)}


def test_progressive_side_not_below_the_images_trains_at_full_size(capsys) -> None:
    from imgclf.params import parse_params
    from imgclf.training.inputs import progressive_epochs

    params = parse_params(
        {"augment": {"progressive_side": 24, "progressive_share": 0.5}, "train": {"epochs": 4}}
    )
    assert progressive_epochs(params, 4, (32, 32, 3)) == 2
    assert capsys.readouterr().out == ""
    assert progressive_epochs(params, 4, (24, 28, 3)) == 0  # e.g. a folder of 24 px images
    assert "augment.progressive_side (24) is not smaller than the images (24x28)" in (
        capsys.readouterr().out
    )
