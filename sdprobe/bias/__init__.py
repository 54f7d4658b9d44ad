"""Bias probes: attribute distributions of neutral prompts, bias metrics with bootstrap intervals, bias versus
sparsity, and the weights whose removal debiases a group, confirmed on held-out prompts and seeds."""

from sdprobe.bias.classify import Classifier, clip_classifier, make_classifier, oracle_classifier
from sdprobe.bias.confirm import DEBIASES, NONE_FOUND, NOT_REPLICATED, DebiasEvidence, confirm_debias, verdict
from sdprobe.bias.critical import (
    OBJECTIVES, BiasCriticalResult, BiasSearchConfig, debias_splits, find_bias_critical, rank_candidates,
    search_and_confirm, target_group,
)
from sdprobe.bias.dose import dose_response
from sdprobe.bias.evaluate import DebiasEvaluator, DebiasSplit
from sdprobe.bias.measure import counts_of, distribution_rows, group_prompts, measure, metric_rows
from sdprobe.bias.metrics import BIAS_METRICS, bias_metrics, bootstrap_shares, distance, moved_fraction, share_intervals
from sdprobe.bias.objective import PromptCheck, explicit_checks, objective, shift, tv_effect, wilson
from sdprobe.bias.probes import (
    BiasProbe, ProbeError, ProbeGroup, builtin_probes, explicit_by_value, load_bias_probe, parse_bias_probe,
    stated_value,
)
from sdprobe.bias.run import BiasRunConfig, adjust_bias_family, run_bias, run_seeds, write_bias_critical
from sdprobe.bias.sparsity import bias_vs_sparsity, condition_name

__all__ = [
    "Classifier", "clip_classifier", "make_classifier", "oracle_classifier",
    "DEBIASES", "NONE_FOUND", "NOT_REPLICATED", "DebiasEvidence", "confirm_debias", "verdict",
    "OBJECTIVES", "BiasCriticalResult", "BiasSearchConfig", "debias_splits", "find_bias_critical", "rank_candidates",
    "search_and_confirm", "target_group", "dose_response", "DebiasEvaluator", "DebiasSplit",
    "counts_of", "distribution_rows", "group_prompts", "measure", "metric_rows",
    "BIAS_METRICS", "bias_metrics", "bootstrap_shares", "distance", "moved_fraction", "share_intervals",
    "PromptCheck", "explicit_checks", "objective", "shift", "tv_effect", "wilson",
    "BiasProbe", "ProbeError", "ProbeGroup", "builtin_probes", "explicit_by_value", "load_bias_probe",
    "parse_bias_probe", "stated_value",
    "BiasRunConfig", "adjust_bias_family", "run_bias", "run_seeds", "write_bias_critical", "bias_vs_sparsity",
    "condition_name",
]
