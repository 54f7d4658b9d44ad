"""N:M semi-structured pruning: in every group of M consecutive input weights of a row, prune the N lowest.

Paper: Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks", https://arxiv.org/abs/2104.08378
(2:4 sparsity on NVIDIA Ampere). With a :class:`ProgressiveMask` in group ``"nm:M"``, sparsity ``k/M`` prunes
the ``k`` lowest-scoring entries of each group, so 0.5 with M=4 is the 2:4 pattern; levels between multiples of
``1/M`` round down.
"""

from __future__ import annotations

from typing import Mapping

import torch

from sdprobe.architecture import WeightRef
from sdprobe.prune.base import Scorer
from sdprobe.prune.magnitude import MagnitudeScorer

DEFAULT_M = 4  # group size of the 2:4 pattern sparse tensor cores accelerate


class NMScorer(Scorer):
    """Scores of a base method, compared within groups of ``m`` consecutive input weights.

    Args:
        m (int): group size M (at least 2); each row's length must be a multiple of it. Default: 4.
        base (Scorer | None): the scores to rank by. Default: magnitude.

    Example:
        >>> scorer = NMScorer(m=4)
        >>> with ProgressiveMask(refs, scorer.scores(refs), group=scorer.group) as mask:
        ...     mask.set_sparsity(0.5)  # 2:4
    """

    def __init__(self, m: int = DEFAULT_M, base: Scorer | None = None) -> None:
        if int(m) != m or m < 2:
            raise ValueError(f"N:M group size must be an integer >= 2, got {m}")
        self.m = int(m)
        self.base = base or MagnitudeScorer()
        self.name = "nm" if base is None else f"nm-{self.base.name}"
        self.group = f"nm:{self.m}"

    def _check(self, refs: list[WeightRef]) -> None:
        for r in refs:
            row = r.weight[0].numel()
            if row % self.m:
                raise ValueError(f"{r.qualified_name} has rows of {row} weights, not a multiple of M={self.m}")

    def scores(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        self._check(refs)
        return self.base.scores(refs)

    def lazy_scores(self, refs: list[WeightRef]) -> Mapping[str, torch.Tensor]:
        self._check(refs)
        return self.base.lazy_scores(refs)
