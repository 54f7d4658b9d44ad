"""Bias versus sparsity: a probe's bias metrics while one component is pruned progressively.

The pruning engine (:mod:`sdprobe.prune`) scores the component once and moves its mask level by level; all
weights are restored exactly when the measurement ends, also on errors.

Example:
    >>> vs, labels = bias_vs_sparsity(pipe, probe, classify, "text_encoder", "magnitude", [0.2, 0.4],
    ...                               n_images=64, generation=GenerationConfig())
    >>> vs.columns.tolist()[:4]
    ['component', 'method', 'level', 'probe']
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from sdprobe.architecture import select
from sdprobe.bias.classify import Classifier
from sdprobe.bias.measure import measure, metric_rows
from sdprobe.bias.probes import BiasProbe
from sdprobe.generate import GenerationConfig
from sdprobe.prune import make_scorer, mask_from_scorer

log = logging.getLogger(__name__)


def condition_name(component: str, method: str, level: float) -> str:
    """Condition label of a pruned measurement, e.g. ``text_encoder/magnitude@0.40``."""
    return f"{component}/{method}@{level:.2f}"


def bias_vs_sparsity(pipe, probe: BiasProbe, classify: Classifier, component: str, method: str,
                     sparsities: Sequence[float], n_images: int, generation: GenerationConfig, seed: int = 0,
                     selectors: Sequence[str] | None = None, n_boot: int = 2000,
                     progress: bool = True, measured: Callable[[str, Callable[[], pd.DataFrame]], pd.DataFrame]
                     | None = None) -> tuple[pd.DataFrame, dict[float, pd.DataFrame]]:
    """Measure the probe at each sparsity of ``component`` pruned by ``method``.

    Args:
        pipe: the pipeline (restored exactly on return).
        probe (BiasProbe): the probe; classify (Classifier): its classifier.
        component (str): e.g. ``"text_encoder"`` or ``"unet"``.
        method (str): a pruning method of :data:`sdprobe.prune.METHODS`.
        sparsities (Sequence[float]): levels in [0, 1).
        n_images (int): images per group and level.
        generation (GenerationConfig): sampler settings.
        seed (int): first image seed, and seed of random scores / calibration. Default: 0.
        selectors (Sequence[str] | None): what to prune. Default: the whole component.
        n_boot (int): bootstrap resamples. Default: 2000.
        progress (bool): show a progress bar. Default: ``True``.
        measured (Callable | None): ``measured(condition, compute)`` returns the labels of a condition, calling
            ``compute()`` only when it has none yet; a run uses it to keep each level's labels on disk, so a killed
            run resumes at the level it was measuring. Default: ``None`` (always compute).

    Returns:
        tuple: the ``vs_sparsity`` table (``component, method, level, probe, metric, value, ci_low, ci_high, n``)
        and the per-image labels at each level.
    """
    levels = sorted({float(s) for s in sparsities})
    if not levels:
        raise ValueError("no sparsity given; e.g. --sparsities 0.2 0.4 0.6")
    bad = [s for s in levels if not 0.0 <= s < 1.0]
    if bad:
        raise ValueError(f"sparsities must be in [0, 1), got {bad}")
    refs = select(pipe, list(selectors) if selectors else component)
    calibration = [p for g in probe.groups for p in g.prompts] + list(probe.explicit)
    scorer = make_scorer(method, pipe, calibration_prompts=calibration, seed=seed, generation=generation)
    frames, labels = [], {}
    with mask_from_scorer(refs, scorer, max_sparsity=max(levels)) as mask:
        for level in tqdm(levels, desc=f"{component}/{method}", disable=not progress):
            def compute(level=level):
                mask.set_sparsity(level)
                return measure(pipe, probe, classify, n_images, generation, seed)

            cond = condition_name(component, method, level)
            labels[level] = compute() if measured is None else measured(cond, compute)
            rows = metric_rows(labels[level], probe, cond, n_boot, seed=seed)
            frames.append(rows.drop(columns="condition").assign(component=component, method=method, level=level))
    table = pd.concat(frames, ignore_index=True)
    return table[["component", "method", "level", "probe", "metric", "value", "ci_low", "ci_high", "n"]], labels
