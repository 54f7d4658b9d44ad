"""OWL: outlier-weighted layer-wise sparsity.

Paper: Yin et al. 2023, "Outlier Weighed Layerwise Sparsity (OWL): A Missing Secret Sauce for Pruning LLMs to
High Sparsity", https://arxiv.org/abs/2310.05175. Layers with more outlier scores keep more weights.

For each layer (all tensors sharing :func:`sdprobe.architecture.describe`'s component, region and block) the
outlier ratio is the share of its scores above ``hyper_m`` times the layer's mean score. The ratios are min-max
normalised to ``[0, 2 * lam]``, and a layer's sparsity is ``target + shift - normalised ratio``, clamped to
``[0, max_layer_sparsity]``. The shift is solved so that the parameter-weighted mean sparsity equals the target;
where no clamp binds this is the paper's centring (the layers of an LLM or a CLIP text encoder are equally
large, so weighted and plain means agree), and where one binds the target is still met exactly. Every layer's
sparsity is non-decreasing in the target, so masks stay nested.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from sdprobe.architecture import WeightRef, describe
from sdprobe.prune.base import Scorer

DEFAULT_HYPER_M = 7.0  # outlier threshold, in multiples of the layer's mean score (the paper's M)
DEFAULT_LAMBDA = 0.08  # half-width of the per-layer sparsity range (the paper's lambda)
SHIFT_BISECTIONS = 60  # bisection steps solving for the shift; 60 halvings reach float64 resolution


def layer_key(ref: WeightRef) -> tuple:
    """The OWL layer of a weight: (component, region, block)."""
    d = describe(ref)
    return d["component"], d["region"], d["block"]


class OwlAllocation:
    """Per-tensor sparsity from outlier ratios; call it with a target sparsity.

    Args:
        refs (list[WeightRef]): the weights in scope.
        scores (dict[str, torch.Tensor]): their scores (magnitude or Wanda).
        hyper_m (float): outlier threshold in multiples of the layer mean. Default: 7.
        lam (float): sparsities span ``[target - lam, target + lam]`` before clamping. Default: 0.08.
        max_layer_sparsity (float): upper clamp of a layer's sparsity. Default: 1.0.

    Example:
        >>> alloc = OwlAllocation(refs, MagnitudeScorer().scores(refs))
        >>> alloc(0.5)["text_encoder.text_model.encoder.layers.0.mlp.fc1.weight"]
        0.47...
    """

    def __init__(self, refs: list[WeightRef], scores: Mapping[str, torch.Tensor], hyper_m: float = DEFAULT_HYPER_M,
                 lam: float = DEFAULT_LAMBDA, max_layer_sparsity: float = 1.0) -> None:
        if hyper_m <= 0 or lam < 0:
            raise ValueError(f"OWL needs hyper_m > 0 and lam >= 0, got hyper_m={hyper_m}, lam={lam}")
        if not 0.0 < max_layer_sparsity <= 1.0:
            raise ValueError(f"max_layer_sparsity must be in (0, 1], got {max_layer_sparsity}")
        self.hyper_m, self.lam, self.cap = float(hyper_m), float(lam), float(max_layer_sparsity)
        self.layers: list[tuple] = list(dict.fromkeys(layer_key(r) for r in refs))
        self.layer_of = {r.qualified_name: self.layers.index(layer_key(r)) for r in refs}
        ratio = np.zeros(len(self.layers))
        sizes = np.zeros(len(self.layers))
        for i, key in enumerate(self.layers):
            members = [scores[r.qualified_name].reshape(-1).float() for r in refs if layer_key(r) == key]
            total = sum(float(m.sum()) for m in members)
            n = sum(m.numel() for m in members)
            mean = total / n
            ratio[i] = sum(int((m > self.hyper_m * mean).sum()) for m in members) / n
            sizes[i] = n
        self.outlier_ratio = ratio
        self.weights = sizes / sizes.sum()
        span = ratio.max() - ratio.min()
        normalised = (ratio - ratio.min()) / span * 2 * self.lam if span > 0 else np.zeros_like(ratio)
        self.offsets = normalised - float(self.weights @ normalised)  # sparsity_l = target + shift - offsets_l

    def layer_sparsity(self, target: float) -> np.ndarray:
        """Each layer's sparsity at ``target``; their parameter-weighted mean is ``target``."""
        if not 0.0 <= target <= self.cap:
            raise ValueError(f"target sparsity must be in [0, {self.cap}], got {target}")
        if target == 0.0:
            return np.zeros(len(self.layers))

        def mean_at(u: float) -> float:
            return float(self.weights @ np.clip(u - self.offsets, 0.0, self.cap))

        lo, hi = target - 2 * self.lam - 1.0, target + 2 * self.lam + 1.0  # mean_at(lo) = 0, mean_at(hi) = cap
        for _ in range(SHIFT_BISECTIONS):  # smallest u with mean_at(u) >= target
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if mean_at(mid) >= target else (mid, hi)
        return np.clip(hi - self.offsets, 0.0, self.cap)

    def __call__(self, target: float) -> dict[str, float]:
        per_layer = self.layer_sparsity(target)
        return {name: float(per_layer[i]) for name, i in self.layer_of.items()}


class OwlScorer(Scorer):
    """A base scorer's scores with OWL's per-layer allocation.

    After :meth:`scores`, :attr:`allocation` is the :class:`OwlAllocation` to pass to a ``ProgressiveMask``.

    Args:
        base (Scorer): magnitude or Wanda; its comparison group is kept.
        hyper_m (float): outlier threshold (the paper's M). Default: 7.
        lam (float): the paper's lambda. Default: 0.08.

    Example:
        >>> scorer = OwlScorer(MagnitudeScorer())
        >>> scores = scorer.scores(refs)
        >>> mask = ProgressiveMask(refs, scores, group=scorer.group, allocation=scorer.allocation)
    """

    def __init__(self, base: Scorer, hyper_m: float = DEFAULT_HYPER_M, lam: float = DEFAULT_LAMBDA) -> None:
        self.base, self.hyper_m, self.lam = base, hyper_m, lam
        self.name = f"owl-{base.name}"
        self.group = base.group
        self._allocation: OwlAllocation | None = None

    @property
    def allocation(self) -> OwlAllocation:
        if self._allocation is None:
            raise RuntimeError("OWL's allocation comes from the scores; call scores(refs) first")
        return self._allocation

    def scores(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        scores = self.base.scores(refs)
        self._allocation = OwlAllocation(refs, scores, self.hyper_m, self.lam)
        return scores

    def lazy_scores(self, refs: list[WeightRef]) -> Mapping[str, torch.Tensor]:
        scores = self.base.lazy_scores(refs)  # the allocation reads them one layer at a time
        self._allocation = OwlAllocation(refs, scores, self.hyper_m, self.lam)
        return scores
