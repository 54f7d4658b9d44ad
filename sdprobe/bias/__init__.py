"""Bias probes: attribute distributions of neutral prompts, bias metrics with bootstrap intervals, bias versus
sparsity, and the weights that carry a bias."""

from sdprobe.bias.classify import Classifier, clip_classifier, make_classifier, oracle_classifier
from sdprobe.bias.critical import BiasCriticalResult, BiasSearchConfig, find_bias_critical, rank_candidates
from sdprobe.bias.measure import counts_of, distribution_rows, group_prompts, measure, metric_rows
from sdprobe.bias.metrics import BIAS_METRICS, bias_metrics, bootstrap_shares, moved_fraction, share_intervals
from sdprobe.bias.probes import (
    BiasProbe, ProbeError, ProbeGroup, builtin_probes, load_bias_probe, parse_bias_probe,
)
from sdprobe.bias.run import BiasRunConfig, run_bias, write_bias_critical
from sdprobe.bias.sparsity import bias_vs_sparsity, condition_name

__all__ = [
    "Classifier", "clip_classifier", "make_classifier", "oracle_classifier",
    "BiasCriticalResult", "BiasSearchConfig", "find_bias_critical", "rank_candidates",
    "counts_of", "distribution_rows", "group_prompts", "measure", "metric_rows",
    "BIAS_METRICS", "bias_metrics", "bootstrap_shares", "moved_fraction", "share_intervals",
    "BiasProbe", "ProbeError", "ProbeGroup", "builtin_probes", "load_bias_probe", "parse_bias_probe",
    "BiasRunConfig", "run_bias", "write_bias_critical", "bias_vs_sparsity", "condition_name",
]
