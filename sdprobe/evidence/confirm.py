"""Confirm a weight set on data it was not found on: necessity and sufficiency, each against its own controls.

Both directions are judged on a confirmation split, as paired per-prompt differences (the same prompts and seeds
in every state), through one callback ``score(removed) -> (N,)`` that prunes ``base ∪ removed`` (``base`` is the
model where the meaning still holds, ``base ∪ U`` the one where it has failed, ``U`` the candidate pool):

* **necessity**: removing ``K`` where the model holds breaks the meaning: ``d = score(∅) - score(K)``;
* **sufficiency**: restoring ``K`` where the model has failed brings it back: ``d = score(U \\ K) - score(U)``.

The *effect* is ``mean(d)``, a share of the split's images, with a bootstrap CI over prompts and its share of the
whole collapse ``mean(score(∅) - score(U))``. Each direction is compared with equal-size controls drawn like ``K``
(:mod:`~sdprobe.evidence.controls`) under a sequential Monte Carlo test (:class:`~sdprobe.evidence.stats.
SequentialTest`), which stops early once the set clearly does no better than its controls, or, given the claim's
level, once its p can no longer pass it.

Example:
    >>> result = confirm_set(cands, k_ids, score, ConfirmConfig(n_controls=200))
    >>> result["necessity"].effect, result["necessity"].p_value
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from sdprobe.evidence.controls import MATCH_BINS, draw_controls
from sdprobe.evidence.stats import DEFAULT_BOOT, SequentialTest, bootstrap_mean_ci

log = logging.getLogger(__name__)
DIRECTIONS = ("necessity", "sufficiency")
Score = Callable[[np.ndarray], np.ndarray]  # removed item ids -> (N,) per-image score on the confirmation split


@dataclass(frozen=True)
class ConfirmConfig:
    """How a set is confirmed.

    Attributes:
        n_controls (int): the most random (tensor-stratified) controls per direction; their p-value is the one that
            enters the multiplicity correction. Default: 200, so that ``p = 1/201 < 0.005`` is reachable.
        n_matched (int): the most magnitude-matched controls per direction (0: none). Default: 50.
        match_bins (int): magnitude quantile bins per tensor of the matched family. Default: 4.
        sequential_h (int): control effects at least as large as the set's that end a test early. Default: 10.
        n_boot (int): bootstrap replicates of each effect's CI. Default: 2000.
        ci (float): interval coverage. Default: 0.95.
        seed (int): seeds the controls and the bootstrap. Default: 0.
    """

    n_controls: int = 200
    n_matched: int = 50
    match_bins: int = MATCH_BINS
    sequential_h: int = 10
    n_boot: int = DEFAULT_BOOT
    ci: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_controls < 1 or self.n_matched < 0 or self.sequential_h < 1 or self.match_bins < 1:
            raise ValueError("n_controls, sequential_h and match_bins must be positive and n_matched >= 0; got "
                             f"{self.n_controls}, {self.sequential_h}, {self.match_bins}, {self.n_matched}")
        if not 0 < self.ci < 1:
            raise ValueError(f"ci must be in (0, 1), got {self.ci}")


@dataclass
class DirectionResult:
    """One direction's evidence on the confirmation split (all numbers are confirmation numbers).

    Attributes:
        direction (str): ``necessity`` or ``sufficiency``.
        n_images (int): paired images with a value.
        effect (float): mean paired difference, a share of images; ``effect_images`` the same in images.
        ci_low, ci_high (float): bootstrap CI of ``effect`` over prompts.
        fraction (float): ``effect`` as a share of the whole collapse, with ``fraction_low``/``fraction_high``.
        p_value (float): the random family's sequential p-value; ``p_adjusted`` after Holm (set by the caller).
        n_controls (int): random controls drawn; ``control_mean`` their mean effect; ``stopped_early`` whether the
            sequential test ended before ``ConfirmConfig.n_controls``.
        matched_p (float), n_matched (int), matched_mean (float): the same for the magnitude-matched family.
        control_effects, matched_effects (list[float]): every control's effect.
    """

    direction: str
    n_images: int
    effect: float
    effect_images: float
    ci_low: float
    ci_high: float
    fraction: float
    fraction_low: float
    fraction_high: float
    p_value: float
    n_controls: int
    control_mean: float
    stopped_early: bool
    matched_p: float = float("nan")
    n_matched: int = 0
    matched_mean: float = float("nan")
    p_adjusted: float = float("nan")
    control_effects: list[float] = field(default_factory=list)
    matched_effects: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _paired(direction: str, score: Score, ids: np.ndarray, everything: np.ndarray) -> np.ndarray:
    if direction == "necessity":
        return score(np.zeros(0, dtype=np.int64)) - score(ids)
    return score(np.setdiff1d(everything, ids)) - score(everything)


def _sequential(direction: str, effect: float, score: Score, subsets: list[np.ndarray], everything: np.ndarray,
                h: int, level: float | None, desc: str, progress: bool) -> SequentialTest:
    test = SequentialTest(effect, n=len(subsets), h=h, level=level)
    with tqdm(total=len(subsets), desc=desc, unit="control", disable=not progress, leave=False) as bar:
        for subset in subsets:
            if test.done:
                break
            test.add(float(np.nanmean(_paired(direction, score, subset, everything))))
            bar.update()
    return test


def confirm_set(candidates, ids: np.ndarray, score: Score, config: ConfirmConfig, directions=DIRECTIONS,
                label: str = "", progress: bool = True, level: float | None = None) -> dict[str, DirectionResult]:
    """Necessity and sufficiency of a set on the confirmation split, each against its own sequential controls.

    Args:
        candidates (CandidateSet): the pool ``U`` the set and its controls are drawn from.
        ids (np.ndarray): item ids of the set ``K``.
        score (Callable[[np.ndarray], np.ndarray]): removed item ids -> (N,) per-image score on the confirmation
            split (1/0 correctness, or any score where higher means the meaning holds); should cache its results.
        config (ConfirmConfig): sizes and seeds.
        directions (Sequence[str]): which directions. Default: both.
        label (str): shown in progress bars. Default: "".
        progress (bool): progress bars. Default: True.
        level (float | None): the family-wise level the claim is judged at; each sequential test also stops once
            its p can no longer reach it (the decision stays the one all the controls would give, see
            :class:`~sdprobe.evidence.stats.SequentialTest`). Default: None (stop after ``sequential_h`` only).

    Returns:
        dict[str, DirectionResult]: per direction; ``p_adjusted`` is NaN until the caller corrects the family.
    """
    everything = candidates.all_ids()
    collapse = score(np.zeros(0, dtype=np.int64)) - score(everything)  # (N,) per-prompt loss across the window
    out = {}
    for k, direction in enumerate(directions):
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
        d = _paired(direction, score, ids, everything)  # (N,)
        finite = ~np.isnan(d)
        effect = float(np.nanmean(d)) if finite.any() else float("nan")
        lo, hi = bootstrap_mean_ci(d, config.n_boot, config.ci, config.seed)
        f_lo, f_hi = bootstrap_mean_ci(d, config.n_boot, config.ci, config.seed, denominator=collapse)
        total = float(np.nanmean(collapse[finite])) if finite.any() else float("nan")
        fraction = effect / total if total > 0 else float("nan")
        rand = _sequential(direction, effect, score,
                           draw_controls(candidates, ids, config.n_controls, seed=config.seed * 1000 + 2 * k),
                           everything, config.sequential_h, level, f"{label} {direction} controls".strip(), progress)
        result = DirectionResult(
            direction, int(finite.sum()), effect, effect * int(finite.sum()), lo, hi, fraction, f_lo, f_hi,
            rand.p_value, len(rand.effects), float(np.mean(rand.effects)) if rand.effects else float("nan"),
            rand.stopped_early, control_effects=rand.effects)
        if config.n_matched:
            matched = _sequential(direction, effect, score,
                                  draw_controls(candidates, ids, config.n_matched, seed=config.seed * 1000 + 2 * k + 1,
                                                match_bins=config.match_bins),
                                  everything, config.sequential_h, level, f"{label} {direction} matched".strip(),
                                  progress)
            result.matched_p, result.n_matched = matched.p_value, len(matched.effects)
            result.matched_mean = float(np.mean(matched.effects)) if matched.effects else float("nan")
            result.matched_effects = matched.effects
        log.info("%s %s: effect %.3f [%.3f, %.3f] (%.1f images), %.0f%% of the collapse; p = %.3g over %d controls",
                 label, direction, effect, lo, hi, result.effect_images, 100 * fraction if math.isfinite(fraction)
                 else float("nan"), result.p_value, result.n_controls)
        out[direction] = result
    return out
