"""Magnitude pruning: an entry's importance is its absolute value.

Paper: Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks",
https://arxiv.org/abs/1506.02626. The SD2 pruning study (https://arxiv.org/abs/2411.15113) takes a separate
threshold per weight matrix; ``granularity="global"`` takes one threshold across all selected tensors instead.
"""

from __future__ import annotations

import torch

from sdprobe.architecture import WeightRef
from sdprobe.prune.base import LazyScores, Scorer

GRANULARITIES = {"matrix": "matrix", "global": "global"}  # granularity -> comparison group


class MagnitudeScorer(Scorer):
    """Score = ``|W|``.

    Args:
        granularity (str): ``"matrix"`` (a threshold per weight matrix, as in the SD2 study) or ``"global"``
            (one threshold across all selected tensors). Default: ``"matrix"``.

    Example:
        >>> MagnitudeScorer().scores(refs)[refs[0].qualified_name]  # == refs[0].weight.abs()
    """

    name = "magnitude"

    def __init__(self, granularity: str = "matrix") -> None:
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown magnitude granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
        self.granularity = granularity
        self.group = GRANULARITIES[granularity]

    def scores(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        return dict(self.lazy_scores(refs))

    def lazy_scores(self, refs: list[WeightRef]) -> LazyScores:
        return LazyScores(refs, lambda r: r.weight.detach().abs().float())
