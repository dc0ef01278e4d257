"""Memorization detectors, one module each, registered in ``DETECTORS`` (``memviz.detect.registry``),
and their evaluation against a planted ground truth (``eval_detection``).

May import every estimator layer below it (model, runner, neighbors, lid, hessian) but not the Study,
which it reaches only through what it is handed (a ``Study`` object, a ``StudySpec`` that reopens one)."""

import importlib
import pkgutil

from memviz.detect.registry import DETECTORS, Detector, detectors, register

for _module in pkgutil.iter_modules(__path__):  # every module registers its detectors: one file adds one
    importlib.import_module(f"{__name__}.{_module.name}")

from memviz.detect.evaluate import KEYS, eval_detection  # noqa: E402
from memviz.detect.metrics import auroc, tpr_at_fpr  # noqa: E402
from memviz.detect.prompts import PromptScores, prompt_scores  # noqa: E402
from memviz.detect.wen import wen_score  # noqa: E402

__all__ = [
    "DETECTORS",
    "Detector",
    "KEYS",
    "PromptScores",
    "auroc",
    "detectors",
    "eval_detection",
    "prompt_scores",
    "register",
    "tpr_at_fpr",
    "wen_score",
]
