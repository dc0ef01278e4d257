"""Memorization detectors (Wen et al., Jeon et al., MMH FLIPD, nearest neighbours) and their
evaluation against a planted ground truth."""

from memviz.detect.evaluate import KEYS, eval_detection
from memviz.detect.metrics import auroc, tpr_at_fpr
from memviz.detect.prompts import PromptScores, prompt_scores
from memviz.detect.samples import sample_scores
from memviz.detect.wen import wen_score

__all__ = ["KEYS", "PromptScores", "auroc", "eval_detection", "prompt_scores", "sample_scores", "tpr_at_fpr",
           "wen_score"]
