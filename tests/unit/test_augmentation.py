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
from support.images import random_images

FULL = {"flip": True, "rotation_degrees": 20.0, "translate_fraction": 0.1, "crop_fraction": 0.2}
NONE = {"flip": False, "rotation_degrees": 0.0, "translate_fraction": 0.0, "crop_fraction": 0.0}


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


# --- Colour jitter and cutout -----------------------------------------------------------------


def test_zero_jitter_is_identity_and_gray_stays_gray() -> None:
    from imgclf.augmentation import jitter_colors

    images = random_images(5)
    np.testing.assert_array_equal(jitter_colors(images, np.random.default_rng(0), 0.0), images)
    gray = np.repeat(random_images(5, channels=1), 3, axis=3)
    out = jitter_colors(gray, np.random.default_rng(1), 0.4)
    # Saturation scales the distance from the channel mean, which is zero for gray pixels.
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 1], out[..., 2])


def test_jitter_brightness_scales_the_mean_by_the_drawn_factor() -> None:
    from imgclf.augmentation import jitter_colors

    # Mid-range pixels so nothing clips: contrast and saturation keep the image mean.
    images = np.random.default_rng(2).integers(100, 140, (4, 6, 6, 3), dtype=np.uint8)
    out = jitter_colors(images, np.random.default_rng(7), 0.2)
    brightness = np.random.default_rng(7).uniform(0.8, 1.2, size=(3, 4))[0]
    expected = images.reshape(4, -1).mean(axis=1) * brightness
    np.testing.assert_allclose(out.reshape(4, -1).mean(axis=1), expected, atol=0.6)
    assert not np.array_equal(out, images)


def test_box_mask_by_hand() -> None:
    from imgclf.augmentation import box_mask

    # integers(0, 6) with this seed gives the centres; the box spans centre - 1 .. centre + 1.
    rng = np.random.default_rng(3)
    tops = rng.integers(0, 6, size=2) - 1
    lefts = rng.integers(0, 6, size=2) - 1
    mask = box_mask(2, (6, 6), (3, 3), np.random.default_rng(3))
    for index in range(2):
        expected = np.zeros((6, 6), dtype=bool)
        expected[max(tops[index], 0) : tops[index] + 3, max(lefts[index], 0) : lefts[index] + 3] = (
            True
        )
        np.testing.assert_array_equal(mask[index], expected)


def test_cutout_erases_one_grey_square_and_nothing_else() -> None:
    from imgclf.augmentation import CUTOUT_FILL, cutout

    images = np.zeros((50, 10, 10, 3), dtype=np.uint8)
    out = cutout(images, np.random.default_rng(0), 0.4)
    erased = (out == CUTOUT_FILL).all(axis=3)
    assert ((out == 0) | (out == CUTOUT_FILL)).all()
    counts = erased.sum(axis=(1, 2))
    assert counts.max() == 16 and counts.min() >= 4  # 4x4 square, clipped near the borders
    for mask in erased:  # a rectangle: its rows and columns form one solid block
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].all()
    assert images.max() == 0  # the input is left alone


def test_offline_copies_get_jitter_and_cutout() -> None:
    from imgclf.augmentation import CUTOUT_FILL

    images = np.zeros((6, 10, 10, 3), dtype=np.uint8)
    out, _ = augment_copies(
        images, np.zeros(6, np.int64), 1, seed=0, **NONE, color_jitter=0.3, cutout_fraction=0.3
    )
    np.testing.assert_array_equal(out[:6], images)  # originals first, untouched
    assert ((out[6:] == CUTOUT_FILL).all(axis=3).sum(axis=(1, 2)) > 0).all()


def test_augment_params_reject_out_of_range_values() -> None:
    from imgclf.params import ParamsError, parse_params

    parsed = parse_params({"augment": {"mixup_alpha": 0.2, "online_cutout_fraction": 0.5}})
    assert parsed.augment.mixup_alpha == 0.2 and parsed.augment.cutmix_alpha == 0.0
    for key, value in (("mixup_alpha", -1), ("color_jitter", 1.0), ("cutout_fraction", 2)):
        with pytest.raises(ParamsError, match=f"augment.{key}"):
            parse_params({"augment": {key: value}})


def test_the_copy_bar_is_silent_off_a_terminal_and_counts_the_copies_when_on(
    capsys: pytest.CaptureFixture,
) -> None:
    images, labels = random_images(4), np.arange(4, dtype=np.int64)
    augment_copies(images, labels, 3, seed=0, **FULL)  # progress None: only on a terminal
    assert capsys.readouterr().err == ""
    shown, _ = augment_copies(images, labels, 3, seed=0, **FULL, progress=True)
    assert "3/3" in capsys.readouterr().err
    quiet, _ = augment_copies(images, labels, 3, seed=0, **FULL, progress=False)
    np.testing.assert_array_equal(shown, quiet)  # the bar draws no random numbers
