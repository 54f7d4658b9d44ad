"""The model-facing evaluation of an isolation search: prune ``mask(s_lo) ∪ S``, generate, read with the oracle.

Example:
    >>> evaluate = MaskEvaluator(pipe, masks, {"text_encoder": 0.40}, cands, prompts, seeds, GenerationConfig())
    >>> evaluate(np.array([0, 1, 2]))
    {'color': 0.25, 'shape': 1.0, 'position': 1.0, 'size': 0.97, 'unreadable': 0.0}
"""

from __future__ import annotations

import contextlib
from typing import Mapping, Sequence

import numpy as np
import torch

from sdprobe.generate import GenerationConfig, generate
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.store import split_by_component
from sdprobe.metrics import OracleMetric, aggregate
from sdprobe.world import MEANINGS

UNREADABLE = "unreadable"  # the oracle's column for images it cannot read; logged beside the accuracies


class MaskEvaluator:
    """Accuracies per meaning with ``mask(s_lo) ∪ S`` pruned, for subsets ``S`` of the candidates.

    Args:
        pipe: the pipeline whose weights the masks hold.
        masks (Mapping[str, ProgressiveMask]): one entered mask per pruned component (see
            :func:`sdprobe.sweep.run.progressive_masks`).
        base (Mapping[str, float]): component -> its sparsity at ``s_lo``; each mask is moved there if needed.
        candidates (CandidateSet): the universe the item ids index.
        prompts (Sequence[str]), seeds (Sequence[int]): the run's fixed prompts and generation seeds.
        generation (GenerationConfig): the run's sampler settings.

    Every call leaves the weights at the ``s_lo`` state: extra pruning happens inside ``mask.override``.
    """

    def __init__(self, pipe, masks: Mapping[str, object], base: Mapping[str, float], candidates: CandidateSet,
                 prompts: Sequence[str], seeds: Sequence[int], generation: GenerationConfig):
        missing = sorted(set(base) - set(masks))
        if missing:
            raise ValueError(f"no mask for component(s) {missing}; masks cover: {', '.join(masks)}")
        self.pipe, self.masks, self.base = pipe, dict(masks), dict(base)
        self.candidates, self.prompts, self.seeds, self.generation = candidates, list(prompts), list(seeds), generation
        self.metric = OracleMetric()

    def _at_base(self) -> None:
        for component, sparsity in self.base.items():
            if self.masks[component].sparsity != sparsity:
                self.masks[component].set_sparsity(sparsity)

    @torch.no_grad()
    def __call__(self, ids: np.ndarray) -> dict[str, float]:
        self._at_base()
        subset = split_by_component(self.candidates.to_dict(ids))
        with contextlib.ExitStack() as stack:
            for component, prune in subset.items():
                stack.enter_context(self.masks[component].override(prune=prune))
            images = generate(self.pipe, self.prompts, self.seeds, self.generation)  # (N, H, W, 3)
        means = aggregate(self.metric.score(self.prompts, images))
        return {k: means[k] for k in (*MEANINGS, UNREADABLE)}
