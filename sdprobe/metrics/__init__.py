"""Metrics that score generated images (see :mod:`sdprobe.metrics.base` for the interface).

Meaning metrics (:data:`MEANING_METRICS`) judge, per image, each meaning a prompt states: the organism's exact
oracle, or ``clip-attributes`` (CLIP zero-shot, from a labelled prompt suite) for models without one. Thresholds,
isolation, bias probes and attribution heads take either by name.
"""

from sdprobe.metrics.base import PER, SCALES, Metric, Quantity, aggregate, directions, quantities_of, set_quantities
from sdprobe.metrics.clip_attributes import ClipAttributesMetric
from sdprobe.metrics.clipscore import CLIPScoreMetric
from sdprobe.metrics.distance import DistanceMetric
from sdprobe.metrics.fd_clip import FDCLIPMetric
from sdprobe.metrics.fid import FIDMetric
from sdprobe.metrics.oracle import OracleMetric
from sdprobe.metrics.registry import (
    MEANING_METRICS, REGISTRY, declared_quantities, make_metric, make_metrics, meaning_metric,
)
from sdprobe.metrics.unreadable import UnreadableMetric

__all__ = [
    "PER", "SCALES", "Metric", "Quantity", "aggregate", "directions", "quantities_of", "set_quantities", "CLIPScoreMetric",
    "ClipAttributesMetric", "DistanceMetric", "FDCLIPMetric", "FIDMetric", "OracleMetric", "UnreadableMetric",
    "MEANING_METRICS", "REGISTRY", "declared_quantities", "make_metric", "make_metrics", "meaning_metric",
]
