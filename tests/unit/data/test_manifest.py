"""Unit tests for the per-image manifest."""

import numpy as np
import pandas as pd
import pytest

from imgclf.data.manifest import MANIFEST_COLUMNS, build_manifest, read_manifest, write_manifest

CLASS_NAMES = ["cat", "dog", "frog"]


def make_images(count: int, seed: int, shape: tuple[int, int, int] = (4, 4, 3)) -> np.ndarray:
    """Return distinct random uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def make_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return train/val/test arrays with known cross-split duplicates."""
    train, val, test = make_images(5, 0), make_images(3, 1), make_images(2, 2)
    train[1] = train[0]  # duplicate inside train only
    test[0] = train[2]  # shared by train and test
    val[0] = train[3]  # shared by train, val and test
    test[1] = train[3]
    return {
        "train": (train, np.array([0, 1, 2, 0, 1], dtype=np.int64)),
        "val": (val, np.array([2, 1, 0], dtype=np.int64)),
        "test": (test, np.array([1, 2], dtype=np.int64)),
    }


def test_one_row_per_image_with_expected_columns() -> None:
    manifest = build_manifest(make_splits(), CLASS_NAMES)
    assert len(manifest) == 10
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["split"].tolist() == ["train"] * 5 + ["val"] * 3 + ["test"] * 2
    assert manifest["index"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1]
    assert manifest["class_name"].tolist()[:3] == ["cat", "dog", "frog"]


def test_column_dtypes() -> None:
    manifest = build_manifest(make_splits(), CLASS_NAMES)
    for column in ("index", "label", "height", "width", "channels", "hash_split_count"):
        assert manifest[column].dtype == np.int64, column
    for column in ("pixel_min", "pixel_max"):
        assert manifest[column].dtype == np.int64, column
    assert manifest["pixel_mean"].dtype == np.float64
    for column in ("split", "class_name", "content_hash", "dtype"):
        assert pd.api.types.is_string_dtype(manifest[column]), column
    assert set(manifest["dtype"]) == {"uint8"}
    assert manifest[["height", "width", "channels"]].drop_duplicates().values.tolist() == [
        [4, 4, 3]
    ]


def test_pixel_stats_match_numpy() -> None:
    known = np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3) * 5
    manifest = build_manifest({"train": (known, np.array([0]))}, CLASS_NAMES)
    row = manifest.iloc[0]
    assert row["pixel_min"] == known.min() == 0
    assert row["pixel_max"] == known.max() == 235
    assert row["pixel_mean"] == pytest.approx(known.astype(np.float64).mean())


def test_identical_images_share_a_hash_and_distinct_ones_do_not() -> None:
    manifest = build_manifest(make_splits(), CLASS_NAMES).set_index(["split", "index"])
    hashes = manifest["content_hash"]
    assert hashes[("train", 0)] == hashes[("train", 1)]
    assert hashes[("train", 2)] == hashes[("test", 0)]
    assert hashes[("train", 0)] != hashes[("train", 2)]
    assert hashes.nunique() == 6  # 10 images, 4 of them copies
    assert all(len(digest) == 32 for digest in hashes)


def test_hash_includes_image_shape() -> None:
    image = make_images(1, 3, shape=(4, 4, 3))
    reshaped = image.reshape(1, 4, 12, 1)
    first = build_manifest({"train": (image, np.array([0]))}, CLASS_NAMES)
    second = build_manifest({"train": (reshaped, np.array([0]))}, CLASS_NAMES)
    assert first["content_hash"][0] != second["content_hash"][0]


def test_hash_split_count_counts_distinct_splits() -> None:
    manifest = build_manifest(make_splits(), CLASS_NAMES).set_index(["split", "index"])
    counts = manifest["hash_split_count"]
    assert counts[("train", 0)] == counts[("train", 1)] == 1
    assert counts[("train", 2)] == counts[("test", 0)] == 2
    assert counts[("train", 3)] == counts[("val", 0)] == counts[("test", 1)] == 3
    assert counts[("train", 4)] == 1


def test_out_of_range_label_is_kept_with_unknown_class_name() -> None:
    images = make_images(3, 4)
    manifest = build_manifest({"train": (images, np.array([0, 10, -1]))}, CLASS_NAMES)
    assert manifest["label"].tolist() == [0, 10, -1]
    assert manifest["class_name"].tolist() == ["cat", "<unknown:10>", "<unknown:-1>"]


def test_mismatched_labels_raise() -> None:
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        build_manifest({"train": (make_images(3, 5), np.array([0, 1]))}, CLASS_NAMES)


def test_parquet_round_trip(tmp_path) -> None:
    manifest = build_manifest(make_splits(), CLASS_NAMES)
    path = write_manifest(manifest, tmp_path / "nested" / "manifest.parquet")
    assert path.exists()
    pd.testing.assert_frame_equal(read_manifest(path), manifest)
