"""Local intrinsic dimension: the model's (FLIPD, normal bundle) and the data's (LID*).

May import ``memviz.io``, ``data``, ``model`` and ``neighbors`` (LID* on the shared neighbour graph)."""

from memviz.lid.data_lid import data_lid
from memviz.lid.flipd import DEFAULT_T0, T_GRID, at_t0, flipd, flipd_curve, knee_index, t_grid
from memviz.lid.normal_bundle import normal_bundle
from memviz.lid.verdict import VERDICTS, calibrate_threshold, mmh_verdict, verdict_rule

__all__ = [
    "DEFAULT_T0",
    "T_GRID",
    "VERDICTS",
    "at_t0",
    "t_grid",
    "calibrate_threshold",
    "data_lid",
    "flipd",
    "flipd_curve",
    "knee_index",
    "mmh_verdict",
    "normal_bundle",
    "verdict_rule",
]
