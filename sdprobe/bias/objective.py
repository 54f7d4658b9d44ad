"""What a debiasing edit is judged by, as pure functions of classified images.

* **The objective**: the distance of the target group's distribution to the probe's target distribution (total
  variation by default, or KL), over **all** values, so overshoot counts: turning red circles cyan is as biased as
  leaving them red (:func:`sdprobe.bias.metrics.distance`).
* **Explicit prompts, one at a time**: each prompt that states a value keeps drawing it. A prompt passes when its
  accuracy is not shown to be below ``min(floor, its dense accuracy)``: the upper end of its one-sided 95% Wilson
  interval (Wilson 1927, https://doi.org/10.1080/01621459.1927.10502953) reaches that level.
* **Other groups**: the distributions of the groups not being debiased move by at most ``tolerance`` in total
  variation.

Images are compared *paired*: the same prompts and seeds before and after an edit, so the bootstrap of an effect
resamples images, not states.

Example:
    >>> tv_effect(["red"] * 9 + ["blue"], ["red", "blue"] * 5, ("red", "blue"), (0.5, 0.5))
    0.4
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sdprobe.bias.metrics import distance

ONE_SIDED_Z = 1.6449  # one-sided 95% normal quantile of the Wilson bound
DEFAULT_BOOT = 2000


def codes(labels: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Class index per image, -1 for unreadable (None) or unknown labels."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, -1) if isinstance(v, str) else -1 for v in labels], dtype=np.int64)


def shares_of(code: np.ndarray, k: int) -> np.ndarray:
    """Shares (K,) of the readable images (NaN when none is readable)."""
    read = code[code >= 0]
    if not len(read):
        return np.full(k, np.nan)
    return np.bincount(read, minlength=k) / len(read)


def objective(labels: Sequence[str | None], classes: Sequence[str], target: Sequence[float], kind: str = "tv") -> float:
    """Distance of the labels' distribution to ``target`` (lower is better)."""
    p = shares_of(codes(labels, classes), len(classes))
    return float("nan") if np.isnan(p).any() else distance(p, target, kind)


def tv_effect(before: Sequence[str | None], after: Sequence[str | None], classes: Sequence[str],
              target: Sequence[float], kind: str = "tv") -> float:
    """How much an edit lowers the distance to the target: ``objective(before) - objective(after)``."""
    return objective(before, classes, target, kind) - objective(after, classes, target, kind)


def paired_effect_ci(before: Sequence[str | None], after: Sequence[str | None], classes: Sequence[str],
                     target: Sequence[float], kind: str = "tv", n_boot: int = DEFAULT_BOOT, ci: float = 0.95,
                     seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of :func:`tv_effect`, resampling images (each keeps its before/after pair)."""
    a, b = codes(before, classes), codes(after, classes)
    if len(a) != len(b):
        raise ValueError(f"paired images: {len(a)} before but {len(b)} after")
    k, q = len(classes), np.asarray(target, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))  # (B, N)
    effects = np.empty(n_boot)
    for i, row in enumerate(idx):
        pa, pb = shares_of(a[row], k), shares_of(b[row], k)
        effects[i] = np.nan if np.isnan(pa).any() or np.isnan(pb).any() else distance(pa, q, kind) - distance(pb, q, kind)
    lo, hi = np.nanquantile(effects, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def shift(before: Sequence[str | None], after: Sequence[str | None], classes: Sequence[str]) -> float:
    """Total variation between two label distributions (how far an edit moved a group that should not move)."""
    pa, pb = (shares_of(codes(x, classes), len(classes)) for x in (before, after))
    return float("nan") if np.isnan(pa).any() or np.isnan(pb).any() else float(np.abs(pa - pb).sum() / 2)


def wilson(successes: int, n: int, z: float = ONE_SIDED_Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (two bounds at ``z``; NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PromptCheck:
    """One explicit prompt's accuracy after an edit, and whether it holds.

    Attributes:
        prompt (str), value (str): the prompt and the value it states.
        n (int): images; accuracy (float): share drawn with the stated value (unreadable counts as wrong).
        ci_low (float), ci_high (float): one-sided 95% Wilson bounds.
        dense_accuracy (float): the same prompt's accuracy before the edit (same seeds).
        required (float): ``min(floor, dense_accuracy)``.
        passes (bool): ``ci_high >= required``.
    """

    prompt: str
    value: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    dense_accuracy: float
    required: float
    passes: bool

    def to_dict(self) -> dict:
        return asdict(self)


def explicit_checks(prompts: Sequence[str], truth: Sequence[str], before: Sequence[str | None],
                    after: Sequence[str | None], floor: float) -> list[PromptCheck]:
    """Per-prompt accuracy checks of images of explicit prompts (one row per image, any order of prompts)."""
    prompts, truth = np.asarray(prompts, dtype=object), np.asarray(truth, dtype=object)
    hit_after = np.array([a == t for a, t in zip(after, truth)])
    hit_before = np.array([b == t for b, t in zip(before, truth)])
    out = []
    for prompt in dict.fromkeys(prompts.tolist()):
        rows = prompts == prompt
        n, k = int(rows.sum()), int(hit_after[rows].sum())
        lo, hi = wilson(k, n)
        dense = float(hit_before[rows].mean())
        required = min(floor, dense)
        out.append(PromptCheck(prompt, str(truth[rows][0]), n, k / n, lo, hi, dense, required, bool(hi >= required)))
    return out
