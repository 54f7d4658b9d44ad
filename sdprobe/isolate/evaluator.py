"""The model-facing evaluation of an isolation: prune ``base ∪ S``, generate a split's images, read them with a
meaning metric.

An evaluation is handed out as a :class:`MaskJob` (levels, extra pruning, prompts, seeds), so that under
``accelerate launch`` every process generates its share of the images (:func:`generate_share`) while the main one
scores them and takes every decision (see :meth:`sdprobe.distributed.Processes.lead`).

Example:
    >>> evaluate = MaskEvaluator(pipe, masks, {"text_encoder": 0.40}, cands, split, GenerationConfig(), OracleMetric())
    >>> evaluate(np.array([0, 1, 2]))["color"]  # (N,) per-image correctness
    array([1., 0., 1., ...])
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from sdprobe.distributed import Processes
from sdprobe.evidence import Split
from sdprobe.generate import GenerationConfig, generate
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.store import split_by_component

UNREADABLE = "unreadable"  # the oracle's column for images it cannot read; logged beside the accuracies


@dataclass(frozen=True)
class MaskJob:
    """One evaluation, as every process needs it: each component's level, the extra entries to prune there
    (component -> qualified name -> flat indices) and the prompts and seeds to generate."""

    base: dict[str, float]
    prune: dict[str, dict[str, torch.Tensor]]
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]


@torch.no_grad()
def generate_share(pipe, masks: Mapping[str, object], generation: GenerationConfig, processes: Processes,
                   job: MaskJob) -> np.ndarray | None:
    """This process's share of a job's images (``None`` when it has none), generated with the job's pruning.

    Each mask is moved to the job's level and the extra entries are pruned inside ``mask.override``, so the
    weights are back at the job's level when it returns.
    """
    part = processes.share(len(job.prompts))
    if part.stop <= part.start:
        return None
    for component, sparsity in job.base.items():
        if masks[component].sparsity != sparsity:
            masks[component].set_sparsity(sparsity)
    with contextlib.ExitStack() as stack:
        for component, prune in job.prune.items():
            stack.enter_context(masks[component].override(prune=prune))
        return generate(pipe, list(job.prompts[part]), list(job.seeds[part]), generation)  # (n, H, W, 3)


def local_jobs(pipe, masks: Mapping[str, object], generation: GenerationConfig) -> Callable[[MaskJob], list]:
    """``ask`` for one process: run a job here and return ``[images]``."""
    return lambda job: [generate_share(pipe, masks, generation, Processes(), job)]


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
        ask (Callable[[MaskJob], list] | None): runs a job and returns the images of each process, in order
            (``ask`` of :meth:`sdprobe.distributed.Processes.lead`). Default: None, generate here.

    Every call leaves the weights at the base state: extra pruning happens inside ``mask.override``.
    """

    def __init__(self, pipe, masks: Mapping[str, object], base: Mapping[str, float], candidates: CandidateSet,
                 split: Split, generation: GenerationConfig, metric, meanings: Sequence[str],
                 ask: Callable[[MaskJob], list] | None = None):
        missing = sorted(set(base) - set(masks))
        if missing:
            raise ValueError(f"no mask for component(s) {missing}; masks cover: {', '.join(masks)}")
        self.pipe, self.masks, self.base = pipe, dict(masks), dict(base)
        self.candidates, self.split, self.generation = candidates, split, generation
        self.metric, self.meanings = metric, list(meanings)
        self.ask = ask or local_jobs(pipe, self.masks, generation)

    def __call__(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        job = MaskJob(self.base, split_by_component(self.candidates.to_dict(ids)), tuple(self.split.prompts),
                      tuple(self.split.seeds))
        images = np.concatenate([part for part in self.ask(job) if part is not None])  # (N, H, W, 3)
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
