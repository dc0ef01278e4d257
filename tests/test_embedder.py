"""Image features a user plugs in as local weights: a transformers vision folder read with
safetensors only, its vectors equal to the model's own projected embedding, stored per image
content and embedder, and the Study's copy judgement and map made in that space."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from memviz.neighbors import features as feats


@pytest.fixture(scope="module")
def embedder_folder(tmp_path_factory):
    """A tiny random CLIP vision tower with its projection and image processor, saved as a user would."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("tiny-clip")
    cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(cfg).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """40 16x16 grayscale digits-like images (blobs), image 5 a copy of image 2."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    arrays = []
    for i in range(40):
        cy, cx = rng.uniform(4, 12, 2)
        arrays.append((255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(4, 20))).astype(np.uint8))
    arrays[5] = arrays[2]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"{i:03d}.png")
    return folder


def test_the_vectors_are_the_models_own_projected_embedding(embedder_folder):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    emb = feats.ImageEmbedder(embedder_folder)
    x = torch.rand(5, 3, 20, 20) * 2 - 1
    model = CLIPVisionModelWithProjection.from_pretrained(embedder_folder).eval()
    pixels = CLIPImageProcessor.from_pretrained(embedder_folder)(
        images=list((x + 1) / 2), return_tensors="pt", do_rescale=False
    )["pixel_values"]
    with torch.no_grad():
        want = torch.nn.functional.normalize(model(pixel_values=pixels).image_embeds, dim=1).numpy()
    got = emb(x)
    assert got.shape == (5, 16) and emb.dim == 16
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    gray = x[:, :1]
    np.testing.assert_allclose(emb(gray), emb(gray.expand(-1, 3, -1, -1)), atol=1e-6)  # grayscale: three channels
    assert feats.feature_space("pixel") is None and feats.feature_space(None) is None


def test_a_folder_memviz_cannot_safely_load_is_refused_in_one_sentence(tmp_path, embedder_folder):
    import shutil

    with pytest.raises(ValueError, match="neither 'pixel' nor a folder"):
        feats.check_embedder_folder(tmp_path / "absent")
    with pytest.raises(ValueError, match="no config.json"):
        feats.check_embedder_folder(tmp_path)
    pickled = tmp_path / "pickled"
    shutil.copytree(embedder_folder, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"only pickled weights \(pytorch_model.bin\), which memviz never loads"):
        feats.ImageEmbedder(pickled)
    (pickled / "pytorch_model.bin").unlink()
    shutil.copy(embedder_folder / "model.safetensors", pickled)
    (pickled / "preprocessor_config.json").unlink()
    with pytest.raises(ValueError, match="no preprocessor_config.json"):
        feats.ImageEmbedder(pickled)


def test_the_study_judges_copies_and_maps_in_the_embedders_space(embedder_folder, image_folder, monkeypatch):
    import memviz
    from memviz.neighbors.copies import evidence_of

    study = memviz.open_study("demo-mnist", image_folder, n=None, features=embedder_folder)
    pixels = memviz.open_study("demo-mnist", image_folder, n=None)
    ref = study.reference
    assert len(ref) == 39 and ref.reference.shape[1] == 16 and pixels.reference.reference.shape[1] == 256
    first = study.train.first_rows()
    emb = feats.ImageEmbedder(embedder_folder)
    np.testing.assert_allclose(ref.reference, emb(study.train.images[torch.as_tensor(first)]), atol=1e-5)
    # a generation that is training image 2 (stored once, for rows 2 and 5) is judged a copy of it
    out = SimpleNamespace(images=(study.train.images[[2, 9]] + 1) / 2, noise=None, seed=0, x0=None)
    ev = evidence_of(out, ref, k=10)
    assert list(first[ev.neighbors[:, 0]]) == [2, 9] and ev.calibrated[0] < 1e-3 and ev.is_copy[0]
    torch.testing.assert_close(ev.nearest_images, out.images)  # the nearest image itself, not its vector
    assert study.spec["features"] == str(embedder_folder) and "features" not in pixels.spec
    assert study.with_n(10).embedder is study.embedder  # loaded once

    def no_model(self, images):
        raise AssertionError("embedded again although the store holds every row")

    monkeypatch.setattr(feats.ImageEmbedder, "__call__", no_model)
    again = memviz.open_study("demo-mnist", image_folder, n=None, features=embedder_folder)
    np.testing.assert_array_equal(again.reference.reference, ref.reference)  # read back per image content
    assert (
        again.embedding().shape == (len(again.rows), 2) == (39, 2)
    )  # the map of features needs no new model call either


def test_the_cli_takes_a_feature_space_and_refuses_a_wrong_one(embedder_folder, image_folder):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "memviz", *args], capture_output=True, text=True)

    ok = cli("compute", "neighbours", "--model", "demo-mnist", "--data", str(image_folder), "--features",
             str(embedder_folder))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "flat over 39 distinct training images (16-d)" in ok.stdout
    bad = cli("compute", "neighbours", "--model", "demo-mnist", "--data", str(image_folder), "--features", "clip")
    assert bad.returncode == 2 and "neither 'pixel' nor a folder" in bad.stderr and "Traceback" not in bad.stderr


def test_the_map_of_every_training_image_has_flipd_only_where_analysed(image_folder):
    import memviz

    study = memviz.open_study("demo-mnist", image_folder, n=10)
    table, every = study.table(), study.map_table()
    assert len(every) == 39 and every.row.tolist() == study.train.first_rows().tolist()  # one per distinct image
    analysed = every.row.isin(table.row).to_numpy()
    assert analysed.sum() == 10 and every.flipd[~analysed].isna().all()
    np.testing.assert_allclose(every.flipd[analysed], table.set_index("row").flipd[every.row[analysed]])
    assert (every.verdict[~analysed] == "not analysed").all() and not every.verdict[analysed].eq("not analysed").any()
    np.testing.assert_allclose(every.lid_mle, study.lid_data("mle", every.row))
    assert np.isfinite(every[["x", "y"]].to_numpy()).all() and every.copies.tolist().count(2) == 1  # rows 2 and 5
