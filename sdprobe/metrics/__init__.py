"""Metrics that score generated images (see :mod:`sdprobe.metrics.base` for the interface)."""

from sdprobe.metrics.base import PER, SCALES, Metric, Quantity, aggregate, directions, quantities_of, set_quantities
from sdprobe.metrics.clipscore import CLIPScoreMetric
from sdprobe.metrics.distance import DistanceMetric
from sdprobe.metrics.fid import FIDMetric
from sdprobe.metrics.oracle import OracleMetric
from sdprobe.metrics.registry import REGISTRY, declared_quantities, make_metric, make_metrics
from sdprobe.metrics.unreadable import UnreadableMetric

__all__ = [
    "PER", "SCALES", "Metric", "Quantity", "aggregate", "directions", "quantities_of", "set_quantities", "CLIPScoreMetric",
    "DistanceMetric", "FIDMetric", "OracleMetric", "UnreadableMetric", "REGISTRY", "declared_quantities",
    "make_metric", "make_metrics",
]
