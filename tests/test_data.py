import json
import os
import time

import pytest
import torch

from cgan_export.errors import DatasetError
from training.data import iterate_batches, load_dataset, scene_of, scene_split

from .conftest import write_fixture


def test_loads_images_as_uint8_with_multi_hot_labels(data_root):
    data = load_dataset(data_root)
    assert data.images.dtype == torch.uint8 and data.images.shape == (24, 3, 64, 64)
    assert data.labels.shape == (24, 24) and data.labels.sum(1).tolist()[:3] == [1, 2, 3]


def test_second_load_comes_from_the_cache(data_root, tmp_path):
    first = load_dataset(data_root)
    assert list((tmp_path / "cache" / "data").glob("*.npy"))
    start = time.time()
    second = load_dataset(data_root)
    assert time.time() - start < 5 and torch.equal(first.images, second.images)


def test_images_copied_afresh_decode_again_and_replace_their_stale_cache(data_root, tmp_path):
    load_dataset(data_root)
    stale = list((tmp_path / "cache" / "data").glob("*.npy"))
    for image in (data_root / "images").iterdir():  # the same files, copied afresh: new modification times
        os.utime(image, (image.stat().st_atime, image.stat().st_mtime + 3600))
    load_dataset(data_root)
    fresh = list((tmp_path / "cache" / "data").glob("*.npy"))
    assert len(stale) == len(fresh) == 1 and stale != fresh


def test_batches_are_in_minus_one_one(data_root):
    data = load_dataset(data_root)
    images, labels = next(iterate_batches(data, 8, torch.Generator().manual_seed(0)))
    assert images.shape == (8, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert labels.shape == (8, 24)


def test_other_image_sizes_are_resized(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_EXPORT_CACHE", str(tmp_path / "cache"))
    root = write_fixture(tmp_path / "big", size=128)
    assert load_dataset(root).images.shape[-2:] == (64, 64)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["objects.json", "train.json"])
def test_missing_json_is_named(data_root, name):
    (data_root / name).unlink()
    with pytest.raises(DatasetError, match=name):
        load_dataset(data_root)


def test_missing_image_is_named(data_root):
    (data_root / "images" / "CLEVR_train_000003_1.png").unlink()
    with pytest.raises(DatasetError, match="CLEVR_train_000003_1.png"):
        load_dataset(data_root)


def test_unknown_object_name_is_named(data_root):
    annotations = json.loads((data_root / "train.json").read_text())
    annotations["CLEVR_train_000000_0.png"] = ["pink cube"]
    (data_root / "train.json").write_text(json.dumps(annotations))
    with pytest.raises(DatasetError, match="pink cube"):
        load_dataset(data_root)


def test_corrupt_image_is_named(data_root):
    (data_root / "images" / "CLEVR_train_000002_0.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="CLEVR_train_000002_0.png"):
        load_dataset(data_root)


def test_scene_split_never_shares_a_scene():
    files = [f"CLEVR_train_{s:06d}_{k}.png" for s in range(100) for k in range(3)]
    train, held = scene_split(files, 0.1, seed=0)
    assert len(held) == 30 and len(train) == 270
    assert not {scene_of(files[i]) for i in train} & {scene_of(files[i]) for i in held}
