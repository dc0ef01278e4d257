"""What each number memviz shows means: one sentence per quantity, with its unit, its sign and its
paper. The app's "?" helps and table headers, and anyone reading a table in a notebook, take them
from here, so that a quantity is explained the same way everywhere."""

from __future__ import annotations

from memviz.lid.verdict import DATA_THRESHOLD, FALSE_POSITIVE_RATE
from memviz.neighbors.index import COPY_ALPHA, COPY_NEIGHBORS, COPY_THRESHOLD

FLIPD = (
    "The model's local intrinsic dimension LID_theta (FLIPD, Kamkari et al. 2024): D + sigma_t^2 "
    "(tr grad s + ||s||^2) at t0, in dimensions. Low: the model has collapsed the neighbourhood (memorized). "
    "The raw estimate can fall below 0 at a small t0 on a learned model (its score is not exact); the verdict "
    "compares raw values with the same estimate on held-out images, so it stays comparable."
)
LID_STAR = (
    "The data's local intrinsic dimension LID* around the image, estimated from its nearest training images "
    "(MLE of Levina and Bickel, k = 20; lPCA, k = 100), in dimensions. Near 0: the training set holds "
    "(near) copies of it."
)
VERDICT = (
    "The Manifold Memorization Hypothesis's verdict (Ross, Kamkari et al., ICLR 2025): memorized when "
    f"LID_theta is below the threshold that {FALSE_POSITIVE_RATE:.0%} of held-out images fall below; then "
    f"DD-Mem (data-driven) when LID* is also below {DATA_THRESHOLD:g}, else OD-Mem (overfitting-driven)."
)
VERDICTS = {
    "not memorized": "LID_theta is in the range of held-out images: the model has not collapsed here.",
    "OD-Mem": "Overfitting-driven memorization: LID_theta is far below that of held-out images while the data's LID* "
    "is not: the model has collapsed a neighbourhood the data span.",
    "DD-Mem": "Data-driven memorization: LID_theta and LID* are both low: the training set itself holds copies of the "
    "image, and the model has learned them as a point.",
}
KIND = "The ground truth a demo planted (DD-Mem: stored many times; OD-Mem: tied to its own prompt); none otherwise."
NN_DISTANCE = "l2 distance, in the model's space, to the nearest other training image (0: a stored copy)."
COPIES = "How many training rows hold this image (its source image, or identical pixels); 1: it is unique."
N_SHARP = (
    "Sharpness count (Jeon, Kim and No, ICML 2025): eigenvalues of the Hessian of the learned log density "
    "below -tau at t0; many sharp directions: the model's density is a narrow peak here (memorized)."
)
SPECTRUM = (
    "Eigenvalues of the Hessian of the learned log density at t0, smallest first (Jeon, Kim and No, ICML "
    "2025). A memorized point sits in a sharp peak: many large negative eigenvalues, below -tau (the dotted "
    "lines are -tau and +tau); an ordinary one has few."
)
CALIBRATED_L2 = (
    f"Carlini et al. 2023: the l2 distance to the nearest training image divided by {COPY_ALPHA:g} times "
    f"the mean distance to its {COPY_NEIGHBORS} nearest; below {COPY_THRESHOLD:g} the generation is a copy "
    "of that image."
)
COPY_RULE = f"calibrated l2 < {COPY_THRESHOLD:g}"

COLUMNS = {
    "row": "The training row (its index in the training set; ?row= opens it on the Samples page).",
    "label": "The class label (the prompt of a class model), -1 when the data have none.",
    "kind": KIND,
    "flipd": FLIPD + " Under the image's own condition when it has one.",
    "flipd_uncond": "LID_theta (FLIPD) of the unconditional model at t0, in dimensions.",
    "lid_lpca": LID_STAR,
    "lid_mle": LID_STAR,
    "verdict": VERDICT,
    "nn_distance": NN_DISTANCE,
    "copies": COPIES,
    "x": "UMAP coordinate (no unit).",
    "y": "UMAP coordinate (no unit).",
    "n_sharp": N_SHARP,
}
AUROC = (
    "Area under the ROC curve of a detector: the chance that a memorized query scores as more memorized than an "
    "ordinary one (0.5: chance, 1: perfect), with its 95% bootstrap interval over prompts (or images)."
)
TPR_AT_FPR = (
    "True-positive rate at 1% false positives: the share of memorized queries flagged when the threshold lets "
    "through 1% of the ordinary ones."
)
SCAN_THRESHOLD = (
    "A detector's threshold in a scan: the score beyond which at most --fpr of the reference prompts (trusted as "
    "ordinary) lie, on the memorized side of the detector's sign; a prompt beyond it is flagged."
)
COPY_RATE = f"The share of a prompt's generations that copy a training image ({COPY_RULE})."
UTILITY = (
    "The share of a mitigated generation set that still shows what the prompt asks for (the prompt's label, read "
    "by a classifier of the training data); NaN, with the reason, where the prompt has no label to keep."
)
PARETO = "The Pareto front: the settings no other setting beats on both copy rate (lower) and utility (higher)."

TERMS = {
    "LID_theta (FLIPD)": FLIPD,
    "LID*": LID_STAR,
    "MMH verdict": VERDICT,
    **VERDICTS,
    "Copies (training rows)": COPIES,
    "Nearest-neighbour distance": NN_DISTANCE,
    "Hessian spectrum": SPECTRUM,
    "Sharpness count": N_SHARP,
    "Calibrated l2": CALIBRATED_L2,
    "Copy rate": COPY_RATE,
    "Scan threshold": SCAN_THRESHOLD,
    "AUROC": AUROC,
    "TPR at 1% FPR": TPR_AT_FPR,
    "Utility": UTILITY,
    "Pareto front": PARETO,
}
"""Every term the audit report's glossary defines, in reading order (``memviz.report``)."""
