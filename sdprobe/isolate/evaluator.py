"""The model-facing evaluation of an isolation: prune ``base ∪ S``, generate a split's images, read them with a
meaning metric.

Example:
    >>> evaluate = MaskEvaluator(pipe, masks, {"text_encoder": 0.40}, cands, split, GenerationConfig(), OracleMetric())
    >>> evaluate(np.array([0, 1, 2]))["color"]  # (N,) per-image correctness
    array([1., 0., 1., ...])
"""

from __future__ import annotations

import contextlib
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from sdprobe.evidence import Split
from sdprobe.generate import GenerationConfig, generate
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.store import split_by_component

UNREADABLE = "unreadable"  # the oracle's column for images it cannot read; logged beside the accuracies


class MaskEvaluator:
    """Per-image scores of each meaning with ``base ∪ S`` pruned, for subsets ``S`` of the candidates.

    Args:
        pipe: the pipeline whose weights the masks hold.
        masks (Mapping[str, ProgressiveMask]): one entered mask per pruned component (see
            :func:`sdprobe.sweep.run.progressive_masks`).
        base (Mapping[str, float]): component -> its sparsity at the window's start; each mask is moved there.
        candidates (CandidateSet): the universe the item ids index.
        split (Split): the prompts and seeds generated at every call.
        generation (GenerationConfig): the run's sampler settings.
        metric: a per-image meaning metric (``score(prompts, images) -> DataFrame``, e.g. ``OracleMetric``).
        meanings (Sequence[str]): the metric columns to return.

    Every call leaves the weights at the base state: extra pruning happens inside ``mask.override``.
    """

    def __init__(self, pipe, masks: Mapping[str, object], base: Mapping[str, float], candidates: CandidateSet,
                 split: Split, generation: GenerationConfig, metric, meanings: Sequence[str]):
        missing = sorted(set(base) - set(masks))
        if missing:
            raise ValueError(f"no mask for component(s) {missing}; masks cover: {', '.join(masks)}")
        self.pipe, self.masks, self.base = pipe, dict(masks), dict(base)
        self.candidates, self.split, self.generation = candidates, split, generation
        self.metric, self.meanings = metric, list(meanings)

    def _at_base(self) -> None:
        for component, sparsity in self.base.items():
            if self.masks[component].sparsity != sparsity:
                self.masks[component].set_sparsity(sparsity)

    @torch.no_grad()
    def __call__(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        self._at_base()
        subset = split_by_component(self.candidates.to_dict(ids))
        with contextlib.ExitStack() as stack:
            for component, prune in subset.items():
                stack.enter_context(self.masks[component].override(prune=prune))
            images = generate(self.pipe, list(self.split.prompts), list(self.split.seeds), self.generation)  # (N,H,W,3)
        table = self.metric.score(list(self.split.prompts), images)
        return {k: table[k].to_numpy(dtype=float) for k in self.meanings if k in table}


def mean_scores(evaluate: Callable[[np.ndarray], dict]) -> Callable[[np.ndarray], dict[str, float]]:
    """Wrap a per-image evaluator into one that returns each meaning's NaN-mean (what a search compares)."""
    def means(ids: np.ndarray) -> dict[str, float]:
        out = {}
        for k, v in evaluate(ids).items():
            v = np.asarray(v, dtype=float)
            out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        return out
    return means
