"""What makes a finding evidence: splits, controls, sequential tests, multiplicity, power and set files.

Isolation (:mod:`sdprobe.isolate`) and bias-critical weights (:mod:`sdprobe.bias`) share this machinery, so both
follow the same rules (``shared/reference/evidence.md`` of the project): search on one split and confirm on
another, compare with controls that went through the same process, test necessity and sufficiency, correct for
every test a run reports, and report readable effects with their power.

Modules: ``splits`` (search/confirmation prompts and seeds), ``controls`` (tensor-stratified and
magnitude-matched control sets), ``stats`` (empirical and sequential p-values, Holm, bootstrap CIs, power),
``confirm`` (necessity and sufficiency of a set against its controls), ``setfile`` (the weight-set file format).
"""

from sdprobe.evidence.confirm import DIRECTIONS, ConfirmConfig, DirectionResult, confirm_set
from sdprobe.evidence.controls import FAMILIES, draw_controls, magnitude_strata
from sdprobe.evidence.setfile import SetFileError, WeightSet, check_fits, read_set_file, write_set_file
from sdprobe.evidence.splits import Split, confirmation_split
from sdprobe.evidence.stats import (
    SequentialTest,
    beats_all,
    bootstrap_mean_ci,
    empirical_p_value,
    holm,
    min_controls,
    minimal_detectable_effect,
    power,
    reaches,
    required_n,
)

__all__ = [
    "DIRECTIONS", "ConfirmConfig", "DirectionResult", "confirm_set", "FAMILIES", "draw_controls", "magnitude_strata",
    "SetFileError", "WeightSet", "check_fits", "read_set_file", "write_set_file", "Split", "confirmation_split",
    "SequentialTest", "beats_all", "bootstrap_mean_ci", "empirical_p_value", "holm", "min_controls", "minimal_detectable_effect",
    "power", "reaches", "required_n",
]
