"""The bundled demo-mnist: loads offline, samples, memorizes its planted set and only it."""

import numpy as np
import pytest

from memviz.data import PlantedTruth, training_data
from memviz.memorization import copy_evidence
from memviz.models import DiffusionModel
from memviz.neighbors import NeighborIndex
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
