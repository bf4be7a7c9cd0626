"""The data.* keys added with the fashion_mnist source: null url/md5, subsets, folder URLs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from imgclf.data.arrays import load_split
from imgclf.data.cifar10 import CIFAR10_MD5, CIFAR10_URL
from imgclf.data.idx import FASHION_MNIST_URL
from imgclf.params import ParamsError, parse_params
from imgclf.stages import download


def run_download(project: Path, **data) -> int:
    (project / "params.yaml").write_text(yaml.safe_dump({"data": data}), encoding="utf-8")
    return download.main(["--out", "data/raw"])


def test_null_url_and_md5_mean_the_official_ones() -> None:
    cifar = parse_params({}).data
    assert (cifar.url, cifar.md5) == (None, None)
    assert (cifar.source_url(), cifar.source_md5()) == (CIFAR10_URL, CIFAR10_MD5)
    mirror = parse_params({"data": {"url": "file:///m/c.tar.gz", "md5": "0" * 32}}).data
    assert (mirror.source_url(), mirror.source_md5()) == ("file:///m/c.tar.gz", "0" * 32)
    fashion = parse_params({"data": {"source": "fashion_mnist"}}).data
    assert (fashion.source_url(), fashion.source_md5()) == (FASHION_MNIST_URL, None)
    assert parse_params({"data": {"source": "synthetic"}}).data.source_url() is None


def test_fashion_mnist_refuses_a_md5_naming_data_md5() -> None:
    with pytest.raises(ParamsError) as caught:
        parse_params({"data": {"source": "fashion_mnist", "md5": "0" * 32}})
    assert "data.md5 must be null" in str(caught.value)


def test_fashion_mnist_url_must_name_the_folder() -> None:
    url = "file:///usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
    with pytest.raises(ParamsError, match="names a file") as caught:
        parse_params({"data": {"source": "fashion_mnist", "url": url}})
    assert "data.url" in str(caught.value)


@pytest.mark.parametrize("key", ["max_train_images", "max_test_images"])
def test_subset_limits_are_checked(key: str) -> None:
    with pytest.raises(ParamsError, match=rf"data\.{key}"):
        parse_params({"data": {key: 0}})


def test_subsets_are_stratified_seeded_and_sized(project: Path) -> None:
    sizes = {"synthetic_train_size": 400, "synthetic_test_size": 200}
    assert (
        run_download(project, source="synthetic", max_train_images=100, max_test_images=50, **sizes)
        == 0
    )
    train_images, train_labels = load_split(project / "data/raw/train.npz")
    _, test_labels = load_split(project / "data/raw/test.npz")
    # The synthetic classes are balanced, so a stratified subset keeps exactly a tenth of each.
    assert np.bincount(train_labels).tolist() == [10] * 10
    assert np.bincount(test_labels).tolist() == [5] * 10
    assert (
        run_download(project, source="synthetic", max_train_images=100, max_test_images=50, **sizes)
        == 0
    )
    np.testing.assert_array_equal(load_split(project / "data/raw/train.npz")[0], train_images)
    assert run_download(project, source="synthetic", max_train_images=100, seed=0, **sizes) == 0
    assert len(load_split(project / "data/raw/test.npz")[1]) == 200  # null: all of them


def test_limit_above_the_split_size_keeps_everything(project: Path) -> None:
    assert (
        run_download(project, source="synthetic", synthetic_train_size=40, max_train_images=1000)
        == 0
    )
    assert len(load_split(project / "data/raw/train.npz")[1]) == 40


def test_missing_fashion_mnist_folder_names_data_url(project: Path, tmp_path: Path, capsys) -> None:
    url = (tmp_path / "nowhere").as_uri() + "/"
    assert run_download(project, source="fashion_mnist", url=url) == 2
    message = capsys.readouterr().err
    assert "data.url" in message and url in message and "dataset-fashion-mnist" in message
    assert not (project / "data/raw/source.json").exists()


def test_folder_without_the_official_files_is_refused(
    project: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    assert run_download(project, source="fashion_mnist", url=folder.as_uri()) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_source_json_records_the_synthetic_origin(project: Path) -> None:
    assert run_download(project, source="synthetic", synthetic_train_size=40, seed=3) == 0
    source = json.loads((project / "data/raw/source.json").read_text(encoding="utf-8"))
    assert source == {"source": "synthetic", "seed": 3}
