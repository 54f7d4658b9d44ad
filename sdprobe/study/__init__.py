"""Studies: every analysis of sdprobe on one model, from one recipe, into one report."""

from sdprobe.study.config import (
    AttributionSpec,
    BiasSpec,
    IsolationSpec,
    StudyConfig,
    SweepSpec,
    default_sweeps,
    load_study_config,
    study_config_from_dict,
)
from sdprobe.study.run import REPORT_FILE, STUDY_FILE, run_study

__all__ = [
    "AttributionSpec", "BiasSpec", "IsolationSpec", "StudyConfig", "SweepSpec", "default_sweeps", "load_study_config",
    "study_config_from_dict", "REPORT_FILE", "STUDY_FILE", "run_study",
]
