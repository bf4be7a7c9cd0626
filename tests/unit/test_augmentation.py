"""Tests for imgclf.augmentation: the affine warp against hand-computed pixels."""

from __future__ import annotations

import numpy as np
import pytest

from imgclf.augmentation import (
    AffineDraw,
    apply_affine,
    augment_copies,
    draw_affine,
    preview_grid,
)

FULL = {"flip": True, "rotation_degrees": 20.0, "translate_fraction": 0.1, "crop_fraction": 0.2}
NONE = {"flip": False, "rotation_degrees": 0.0, "translate_fraction": 0.0, "crop_fraction": 0.0}


def random_images(count: int, side: int = 12, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (count, side, side, channels), dtype=np.uint8
    )


def make_draw(count: int = 1, **values: float | bool) -> AffineDraw:
    """An identity draw for `count` images with some fields replaced."""
    fields = {"flip": False, "angle_radians": 0.0, "scale": 1.0, "shift_y": 0.0, "shift_x": 0.0}
    fields.update(values)
    return AffineDraw(
        flip=np.full(count, fields["flip"], dtype=bool),
        **{
            name: np.full(count, value, dtype=np.float64)
            for name, value in fields.items()
            if name != "flip"
        },
    )


def test_zero_ranges_give_exact_copies() -> None:
    images = random_images(5)
    labels = np.arange(5, dtype=np.int64)
    out, out_labels = augment_copies(images, labels, 2, seed=3, **NONE)
    np.testing.assert_array_equal(out, np.concatenate([images, images, images]))
    np.testing.assert_array_equal(out_labels, np.concatenate([labels, labels, labels]))


def test_flip_mirrors_exactly_the_drawn_images() -> None:
    images = random_images(40, side=9)
    out, _ = augment_copies(images, np.zeros(40, np.int64), 1, seed=5, **{**NONE, "flip": True})
    # augment_copies draws from default_rng(seed) with these arguments, so the mask is known.
    mask = draw_affine(40, (9, 9), np.random.default_rng(5), **{**NONE, "flip": True}).flip
    assert 0 < mask.sum() < 40
    copies = out[40:]
    np.testing.assert_array_equal(copies[mask], images[mask][:, :, ::-1])
    np.testing.assert_array_equal(copies[~mask], images[~mask])


def test_direct_flip_draw_mirrors_only_flagged_images() -> None:
    images = random_images(2, side=7)
    draw = make_draw(2)
    draw = AffineDraw(
        np.array([True, False]), draw.angle_radians, draw.scale, draw.shift_y, draw.shift_x
    )
    out = apply_affine(images, draw)
    np.testing.assert_array_equal(out[0], images[0, :, ::-1])
    np.testing.assert_array_equal(out[1], images[1])


def test_same_seed_same_output_other_seed_differs() -> None:
    images = random_images(6)
    labels = np.zeros(6, np.int64)
    first, _ = augment_copies(images, labels, 2, seed=11, **FULL)
    again, _ = augment_copies(images, labels, 2, seed=11, **FULL)
    other, _ = augment_copies(images, labels, 2, seed=12, **FULL)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[6:], other[6:])
    # Two copies of one image are drawn independently.
    assert not np.array_equal(first[6:12], first[12:18])


@pytest.mark.parametrize(("side", "channels"), [(12, 3), (10, 1)])
def test_copies_follow_originals_with_tiled_labels(side: int, channels: int) -> None:
    images = random_images(4, side=side, channels=channels)
    labels = np.array([3, 1, 0, 2], dtype=np.int64)
    out, out_labels = augment_copies(images, labels, 3, seed=0, **FULL)
    assert out.dtype == np.uint8
    assert out.shape == (16, side, side, channels)
    np.testing.assert_array_equal(out[:4], images)
    np.testing.assert_array_equal(out_labels, [3, 1, 0, 2] * 4)
    assert not np.array_equal(out[4:8], images)


def test_zero_copies_returns_the_originals() -> None:
    images = random_images(3)
    out, out_labels = augment_copies(images, np.array([0, 1, 2]), 0, seed=0, **FULL)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(out_labels, [0, 1, 2])


def test_small_rotation_keeps_a_centred_disc() -> None:
    side = 33
    yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2.0
    # A soft disc, so bilinear resampling error stays small everywhere.
    disc = 255.0 / (1.0 + np.exp(np.hypot(yy, xx) - 9.0))
    image = np.rint(disc).astype(np.uint8)[None, :, :, None]
    rotated = apply_affine(image, make_draw(angle_radians=np.deg2rad(17.0)))
    difference = np.abs(rotated.astype(int) - image.astype(int))
    assert difference.max() <= 6
    assert difference.mean() < 1.0
    # The same rotation moves an off-centre disc by far more.
    off_centre = np.roll(image, 8, axis=2)
    moved = apply_affine(off_centre, make_draw(angle_radians=np.deg2rad(17.0)))
    assert np.abs(moved.astype(int) - off_centre.astype(int)).max() > 100


def test_quarter_turn_is_rot90() -> None:
    images = random_images(2, side=8)
    out = apply_affine(images, make_draw(2, angle_radians=np.pi / 2))
    # Output pixel (i, j) samples source (j, W-1-i): numpy's counter-clockwise rot90.
    np.testing.assert_array_equal(out, np.rot90(images, k=1, axes=(1, 2)))


def test_integer_translation_moves_a_bright_pixel() -> None:
    image = np.zeros((1, 15, 15, 3), np.uint8)
    image[0, 7, 6] = 255
    out = apply_affine(image, make_draw(shift_y=-2.0, shift_x=3.0))
    # Output (i, j) samples source (i + shift_y, j + shift_x): content moves by -shift.
    expected = np.zeros_like(image)
    expected[0, 9, 3] = 255
    np.testing.assert_array_equal(out, expected)


def test_fractional_translation_splits_a_pixel_bilinearly() -> None:
    image = np.zeros((1, 9, 9, 1), np.uint8)
    image[0, 4, 4] = 255
    out = apply_affine(image, make_draw(shift_x=0.25))
    expected = np.zeros_like(image)
    expected[0, 4, 3] = np.rint(255 * 0.25)  # samples x = 3.25: a quarter of the bright pixel
    expected[0, 4, 4] = np.rint(255 * 0.75)  # samples x = 4.25
    np.testing.assert_array_equal(out, expected)


def test_translation_past_the_border_mirrors() -> None:
    row = np.arange(10, dtype=np.uint8) * 20
    image = np.broadcast_to(row[None, None, :, None], (1, 4, 10, 1)).copy()
    out = apply_affine(image, make_draw(shift_x=2.0))
    # Columns 8 and 9 sample 10 and 11, which mirror back to 9 and 8.
    np.testing.assert_array_equal(out[0, 0, :, 0], row[[2, 3, 4, 5, 6, 7, 8, 9, 9, 8]])


def test_crop_scale_zooms_about_the_centre() -> None:
    side = 16
    ramp = np.arange(side, dtype=np.float64) * 10
    image = np.broadcast_to(ramp[None, None, :, None], (1, side, side, 1)).astype(np.uint8)
    out = apply_affine(image, make_draw(scale=0.5))
    centre = (side - 1) / 2
    # Bilinear sampling of a linear ramp at x = c + 0.5 (j - c) is exact up to rounding.
    expected = np.rint(10 * (centre + 0.5 * (np.arange(side) - centre)))
    np.testing.assert_array_equal(out[0, 5, :, 0], expected)


def test_draw_affine_respects_its_ranges() -> None:
    draw = draw_affine(
        2000,
        (32, 32),
        np.random.default_rng(0),
        flip=False,
        rotation_degrees=15.0,
        translate_fraction=0.1,
        crop_fraction=0.2,
    )
    assert not draw.flip.any()
    assert np.abs(np.rad2deg(draw.angle_radians)).max() <= 15.0
    assert np.rad2deg(draw.angle_radians).max() > 14.0
    assert draw.scale.min() >= 0.8 and draw.scale.max() <= 1.0
    # Shift room: the translation plus where a crop window of that scale can sit.
    room = 0.1 * 32 + (1 - draw.scale) / 2 * 32
    assert np.all(np.abs(draw.shift_x) <= room) and np.all(np.abs(draw.shift_y) <= room)
    assert np.abs(draw.shift_x).max() > 3.0


def test_preview_grid_layout() -> None:
    originals = random_images(3, side=5)
    variants = [random_images(3, side=5, seed=1), random_images(3, side=5, seed=2)]
    grid = preview_grid(originals, variants, gap=2)
    assert grid.shape == (3 * 7 + 2, 3 * 7 + 2, 3)
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[2:7, 2:7], originals[0])
    np.testing.assert_array_equal(grid[9:14, 16:21], variants[1][1])
    np.testing.assert_array_equal(grid[16:21, 9:14], variants[0][2])
    assert (grid[:2] == 255).all() and (grid[:, 7:9] == 255).all()


def test_draw_affine_scales_each_shift_by_its_own_side() -> None:
    draw = draw_affine(
        2000,
        (8, 64),
        np.random.default_rng(0),
        flip=False,
        rotation_degrees=0.0,
        translate_fraction=0.25,
        crop_fraction=0.0,
    )
    assert np.abs(draw.shift_y).max() <= 2.0
    assert np.abs(draw.shift_x).max() > 12.0


def test_random_crop_flip_takes_a_window_of_the_mirror_padded_image() -> None:
    from imgclf.augmentation import random_crop_flip

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
