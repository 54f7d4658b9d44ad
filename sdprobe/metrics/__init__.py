"""Metrics that score generated images (see :mod:`sdprobe.metrics.base` for the interface)."""

from sdprobe.metrics.base import Metric, aggregate
from sdprobe.metrics.clipscore import CLIPScoreMetric
from sdprobe.metrics.distance import DistanceMetric
from sdprobe.metrics.fid import FIDMetric
from sdprobe.metrics.oracle import OracleMetric
from sdprobe.metrics.registry import REGISTRY, make_metric, make_metrics
from sdprobe.metrics.unreadable import UnreadableMetric

__all__ = [
    "Metric", "aggregate", "CLIPScoreMetric", "DistanceMetric", "FIDMetric", "OracleMetric", "UnreadableMetric",
    "REGISTRY", "make_metric", "make_metrics",
]
