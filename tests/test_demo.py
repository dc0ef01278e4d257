"""The bundled demo-mnist: loads offline, samples, memorizes its planted set and only it."""

import numpy as np
import pytest

from memviz.data import PlantedTruth, training_data
from memviz.model.adapter import DiffusionModel
from memviz.neighbors.copies import copy_evidence
from memviz.neighbors.index import NeighborIndex
from tests.conftest import DEMO_MNIST

pytestmark = pytest.mark.skipif(not DEMO_MNIST.exists(), reason="demo-mnist is not bundled")


@pytest.fixture(scope="module")
def demo():
    model = DiffusionModel.from_pretrained(DEMO_MNIST)
    train, test = training_data(model.meta)
    unique = train.deduplicated()
    return model, train, test, unique, NeighborIndex(unique.images), PlantedTruth.from_dict(model.meta["planted"])


def test_demo_loads_offline_and_samples(demo):
    model, train, test, *_ = demo
    assert model.class_names[:10] == [str(d) for d in range(10)] and len(model.class_names) == 22
    out = model.sample(4, cond="7", steps=10, seed=0)
    assert out.images.shape == (4, 1, 16, 16) and 0 <= out.images.min() and out.images.max() <= 1
    assert len(test) == 1000 and not set(test.source_index) & set(train.source_index)


@pytest.mark.parametrize("prompt", ["memorized-00", "memorized-05", "memorized-09", "memorized-11"])
def test_planted_prompts_reproduce_their_training_images(demo, prompt):
    model, train, _, unique, index, truth = demo
    label = model.class_names.index(prompt)
    own = {s for s, lab in zip(truth.train_source, truth.train_label) if lab == label}
    ev = copy_evidence(model, index, cond=prompt, n=8, steps=25, seed=1)
    copies_of_own = ev.is_copy & np.isin(unique.source_index[ev.neighbors[:, 0]], list(own))
    assert copies_of_own.mean() >= 0.75, ev.calibrated


def test_ordinary_prompts_do_not_copy(demo):
    model, _, _, _, index, _ = demo
    ev = copy_evidence(model, index, cond=list(range(10)) * 2, n=20, steps=25, seed=2)
    assert ev.is_copy.mean() <= 0.2, ev.calibrated
    assert np.median(ev.calibrated) > 0.8


def test_planted_images_sit_in_sharp_peaks_and_planted_prompts_score_high(demo):
    from memviz.detect.jeon import jeon_score
    from memviz.hessian import default_tau, spectrum, summarize

    model, _, _, unique, _, _ = demo
    kind = np.asarray(unique.meta["kind"])
    pick = np.r_[
        np.flatnonzero(kind == "DD-Mem")[:3], np.flatnonzero(kind == "OD-Mem")[:3], np.flatnonzero(kind == "none")[:6]
    ]
    data = unique.subset(pick)
    s = summarize(spectrum(model, data.images, 0.05, cond=data.labels.tolist()), default_tau(model, 0.05))
    assert (s["n_sharp"][:6] == 256).all() and (s["n_flat"][:6] == 0).all()  # no flat direction at all
    assert s["n_sharp"][6:].max() < 250 and s["n_flat"][6:].min() >= 6  # ordinary: a tangent space
    planted = [float(jeon_score(model, f"memorized-{i:02d}", n=2).mean()) for i in (0, 6, 11)]
    digits = [float(jeon_score(model, d, n=2).mean()) for d in ("1", "4", "7")]
    assert min(planted) > max(digits), (planted, digits)
