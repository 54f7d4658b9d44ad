"""Measuring a probe's attribute distribution over many seeds, and turning it into tidy tables.

Each group's prompts are cycled over ``n_images`` images; image ``i`` uses seed ``seed + i``, so a condition
(dense, a sparsity, a removed weight set) is compared with another on the same initial noise.

Example:
    >>> labels = measure(pipe, probe, classify, n_images=64, generation=GenerationConfig())
    >>> distribution_rows(labels, probe, "dense")[["probe", "value", "share"]].head(1)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from sdprobe.bias.classify import Classifier
from sdprobe.bias.metrics import DEFAULT_BOOTSTRAP, DEFAULT_CONFIDENCE, bias_metrics, share_intervals
from sdprobe.bias.probes import BiasProbe, ProbeGroup
from sdprobe.generate import GenerationConfig, generate

log = logging.getLogger(__name__)


def group_prompts(group: ProbeGroup, n_images: int, seed: int) -> tuple[list[str], list[int]]:
    """The prompts (cycled) and seeds of ``n_images`` images of one group."""
    if n_images <= 0:
        raise ValueError(f"n_images must be positive, got {n_images}")
    prompts = [group.prompts[i % len(group.prompts)] for i in range(n_images)]
    return prompts, [seed + i for i in range(n_images)]


def measure(pipe, probe: BiasProbe, classify: Classifier, n_images: int, generation: GenerationConfig,
            seed: int = 0, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Generate and classify ``n_images`` images per group.

    Args:
        pipe: the pipeline (in whatever pruned state the caller holds it).
        probe (BiasProbe): the probe.
        classify (Classifier): image -> value (None if unreadable).
        n_images (int): images per group.
        generation (GenerationConfig): sampler settings.
        seed (int): seed of the first image. Default: 0.
        groups (Sequence[str] | None): names of the groups to measure. Default: all.

    Returns:
        pd.DataFrame: one row per image: ``probe, prompt, seed, value`` (``None`` when unreadable).
    """
    names = [g.name for g in probe.groups]
    unknown = sorted(set(groups or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown group(s) {unknown} of probe {probe.name!r}; valid: {', '.join(names)}")
    frames = []
    for group in probe.groups:
        if groups is not None and group.name not in groups:
            continue
        prompts, seeds = group_prompts(group, n_images, seed)
        images = generate(pipe, prompts, seeds, generation)
        frames.append(pd.DataFrame({"probe": group.name, "prompt": prompts, "seed": seeds, "value": classify(images)}))
    return pd.concat(frames, ignore_index=True)


def counts_of(values: pd.Series, classes: tuple[str, ...]) -> np.ndarray:
    """Counts (K,) of each class among readable values (None/NaN are left out)."""
    v = values.dropna()
    return np.array([(v == c).sum() for c in classes], dtype=np.int64)


def _group_counts(labels: pd.DataFrame, probe: BiasProbe):
    """For each probe group with labels: the group, its label rows and its class counts (K,)."""
    for group in probe.groups:
        sub = labels[labels["probe"] == group.name]
        if not sub.empty:
            yield group, sub, counts_of(sub["value"], probe.values)


def distribution_rows(labels: pd.DataFrame, probe: BiasProbe, condition: str, n_boot: int = DEFAULT_BOOTSTRAP,
                      confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> pd.DataFrame:
    """``distribution.csv`` rows: condition, probe, attribute, value, share, ci_low, ci_high, expected, n."""
    rows = []
    for group, sub, counts in _group_counts(labels, probe):
        share, lo, hi = share_intervals(counts, n_boot, confidence, seed)
        for k, value in enumerate(probe.values):
            rows.append({"condition": condition, "probe": group.name, "attribute": probe.attribute, "value": value,
                         "share": share[k], "ci_low": lo[k], "ci_high": hi[k],
                         "expected": group.expected[value] if group.expected else np.nan,
                         "n": int(counts.sum()), "unreadable": int(sub["value"].isna().sum())})
    return pd.DataFrame(rows)


def metric_rows(labels: pd.DataFrame, probe: BiasProbe, condition: str, n_boot: int = DEFAULT_BOOTSTRAP,
                confidence: float = DEFAULT_CONFIDENCE, seed: int = 0) -> pd.DataFrame:
    """``metrics.csv`` rows: condition, probe, metric, value, ci_low, ci_high, n (tv, mad and kl against the probe's
    target distribution)."""
    rows = []
    for group, _, counts in _group_counts(labels, probe):
        for metric, r in bias_metrics(counts, n_boot, confidence, seed, target=np.asarray(probe.target_shares())).items():
            rows.append({"condition": condition, "probe": group.name, "metric": metric, **r, "n": int(counts.sum())})
    return pd.DataFrame(rows)


def value_share(labels: pd.DataFrame, group: str, value: str) -> float:
    """Share of ``value`` among the readable images of ``group``."""
    v = labels.loc[labels["probe"] == group, "value"].dropna()
    return float((v == value).mean()) if len(v) else float("nan")
