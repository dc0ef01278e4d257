"""Local intrinsic dimension: the model's (FLIPD, normal bundle) and the data's (LID*)."""

from memviz.lid.data_lid import data_lid
from memviz.lid.flipd import DEFAULT_TS, flipd, flipd_curve, knee_index
from memviz.lid.normal_bundle import normal_bundle
from memviz.lid.verdict import VERDICTS, calibrate_threshold, mmh_verdict

__all__ = ["DEFAULT_TS", "VERDICTS", "calibrate_threshold", "data_lid", "flipd", "flipd_curve", "knee_index",
           "mmh_verdict", "normal_bundle"]
