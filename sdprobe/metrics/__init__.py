"""Metrics that score generated images (see :mod:`sdprobe.metrics.base` for the interface)."""

from sdprobe.metrics.base import Metric, aggregate
from sdprobe.metrics.distance import DistanceMetric
from sdprobe.metrics.oracle import OracleMetric
from sdprobe.metrics.registry import REGISTRY, make_metric, make_metrics

__all__ = ["Metric", "aggregate", "DistanceMetric", "OracleMetric", "REGISTRY", "make_metric", "make_metrics"]
