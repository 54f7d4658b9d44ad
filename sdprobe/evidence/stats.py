"""The statistics every finding-producing verb shares: empirical and sequential p-values, Holm–Bonferroni,
bootstrap intervals over prompts, and the power calculation that sizes a confirmation split.

Example:
    >>> empirical_p_value(0.8, [0.0, 0.1, 0.9])
    0.5
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    >>> round(minimal_detectable_effect(96, alpha=0.05 / 8, target_power=0.8, discordance=0.05), 3)
    0.088
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import norm

DEFAULT_BOOT = 2000  # bootstrap replicates of a confirmation effect's interval
# Effects are sums and differences of image shares (multiples of 1/n), computed in floating point: a control whose
# effect equals the set's can come out 1e-16 below it. Differences smaller than this are ties, and ties count
# against the set.
TIE_TOLERANCE = 1e-9
MAX_DESIGN_N = 100_000  # largest split size the power search considers


def empirical_p_value(effect: float, control_effects: Sequence[float]) -> float:
    """``(1 + #{c >= effect}) / (1 + n)`` over the finite control effects (NaN when there are none); round-off
    ties count as ``>=`` (:data:`TIE_TOLERANCE`).

    The permutation-test estimate with the +1 correction (Phipson & Smyth 2010,
    https://doi.org/10.2202/1544-6115.1585): never zero, and never below ``1 / (n + 1)``.

    Args:
        effect (float): the effect of the tested set.
        control_effects (Sequence[float]): the effects of the controls (NaN entries are ignored).

    Returns:
        float: the one-sided p-value in ``(0, 1]``.
    """
    c = np.asarray([e for e in control_effects if not math.isnan(e)], dtype=float)
    if len(c) == 0 or math.isnan(effect):
        return float("nan")
    return float((1 + np.sum(reaches(c, effect))) / (1 + len(c)))


def beats_all(effect: float, control_effects: Sequence[float]) -> bool:
    """True when ``effect`` is strictly larger than every finite control effect."""
    c = [e for e in control_effects if not math.isnan(e)]
    return bool(c) and not math.isnan(effect) and not reaches(max(c), effect)


def reaches(control_effect, effect: float):
    """Whether a control's effect reaches the set's: ``>=``, with round-off ties (:data:`TIE_TOLERANCE`) counted
    as reaching. Works elementwise on arrays."""
    return np.asarray(control_effect, dtype=float) >= effect - TIE_TOLERANCE


@dataclass
class SequentialTest:
    """A Monte Carlo p-value that stops drawing controls once the answer is clear.

    Besag & Clifford 1991 (https://doi.org/10.1093/biomet/78.2.301): draw controls one at a time; stop at the
    ``h``-th control whose effect reaches the set's, with ``p = h / L`` after ``L`` draws; otherwise draw all ``n``
    and report ``(1 + G) / (1 + n)`` with ``G`` exceedances. The p-value is valid (super-uniform under the null),
    a set that behaves like its controls costs about ``h / p`` draws instead of ``n``, and a set that beats
    them all costs the full ``n``, which is what ``p <= 1 / (n + 1)`` requires.

    With ``level`` (the level the claim is judged at, e.g. the family-wise alpha: Holm never lets a raw p above it
    through), the test also stops as soon as it can no longer pass: at the first ``h'`` exceedances, ``h'`` the
    smallest count with ``h' / n`` failing the claim (``> level``, or ``>= level`` when ``strict``), so that the
    reported ``h' / L >= h' / n`` fails, and the full test would have reported ``(1 + G) / (1 + n) >= h' / n``,
    failing too. The claim's decision, and every other test's Holm decision, is the one drawing all ``n`` would
    give; a set that fails costs fewer controls.

    Args:
        effect (float): the tested set's effect.
        n (int): the most controls to draw.
        h (int): exceedances that end the test early. Default: 10.
        level (float | None): stop once the claim is out of reach (see above). Default: None (only ``h``).
        strict (bool): the claim needs ``p < level`` (True) or ``p <= level`` (False). Default: False.

    Example:
        >>> t = SequentialTest(0.1, n=200, h=2)
        >>> t.add(0.2); t.add(0.0); t.add(0.3); t.done, t.p_value
        (True, 0.6666666666666666)
    """

    effect: float
    n: int
    h: int = 10
    level: float | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.n < 1 or self.h < 1:
            raise ValueError(f"n and h must be positive, got n={self.n}, h={self.h}")
        if self.level is not None and not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        self.effects: list[float] = []

    @property
    def stop_at(self) -> int:
        """Exceedances that end the test: ``h``, or fewer once they put the claim out of reach."""
        if self.level is None:
            return self.h
        k = 1
        while k < self.h and not self._fails(k / self.n):
            k += 1
        return k

    def _fails(self, p: float) -> bool:
        return p >= self.level if self.strict else p > self.level

    @property
    def exceedances(self) -> int:
        return sum(reaches(e, self.effect) for e in self.effects)

    @property
    def done(self) -> bool:
        return math.isnan(self.effect) or self.exceedances >= self.stop_at or len(self.effects) >= self.n

    @property
    def stopped_early(self) -> bool:
        return self.exceedances >= self.stop_at and len(self.effects) < self.n

    def add(self, control_effect: float) -> None:
        if self.done:
            raise RuntimeError("the sequential test is finished; no more controls are needed")
        self.effects.append(float(control_effect))

    @property
    def p_value(self) -> float:
        if math.isnan(self.effect):
            return float("nan")
        if self.exceedances >= self.stop_at:
            return self.stop_at / len(self.effects)
        return (1 + self.exceedances) / (1 + len(self.effects))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979, https://www.jstor.org/stable/4615733), in input order.

    NaN entries are left out of the family and stay NaN. Adjusted values are monotone in the raw ones and capped
    at 1.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def bootstrap_mean_ci(values: np.ndarray, n_boot: int = DEFAULT_BOOT, ci: float = 0.95, seed: int = 0,
                      denominator: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(values)`` (or of ``mean(values) / mean(denominator)``), resampling
    prompts with replacement (Efron 1979, https://doi.org/10.1214/aos/1176344552).

    Args:
        values (np.ndarray): (N,) one paired difference per prompt, e.g. correct before minus correct after.
        n_boot (int): replicates. Default: 2000.
        ci (float): coverage. Default: 0.95.
        seed (int): resampling seed. Default: 0.
        denominator (np.ndarray | None): (N,) per-prompt values whose mean divides, resampled with the same
            prompts (for "fraction of the collapse"). Default: None.

    Returns:
        tuple[float, float]: the interval; NaN when there are fewer than two values.
    """
    v = np.asarray(values, dtype=float)
    keep = ~np.isnan(v) if denominator is None else ~(np.isnan(v) | np.isnan(np.asarray(denominator, dtype=float)))
    v = v[keep]
    if len(v) < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))  # (B, N)
    stat = v[idx].mean(axis=1)
    if denominator is not None:
        d = np.asarray(denominator, dtype=float)[keep][idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = np.where(d > 0, stat / d, np.nan)
        stat = stat[~np.isnan(stat)]
        if len(stat) == 0:
            return float("nan"), float("nan")
    tail = (1 - ci) / 2
    return float(np.quantile(stat, tail)), float(np.quantile(stat, 1 - tail))


def power(effect: float, n: int, alpha: float, discordance: float) -> float:
    """Probability that a true ``effect`` (a share of images) beats its controls at level ``alpha``.

    The model: a random control flips each of ``n`` paired images with probability ``discordance`` in either
    direction, so control effects spread with ``sd0 = sqrt(discordance / n)`` around zero; the set flips an extra
    ``effect`` share the wrong way, so its own estimate spreads with ``sd1 = sqrt((discordance + effect -
    effect**2) / n)``. The set is found when it lands above the controls' ``1 - alpha`` quantile:
    ``power = Phi((effect - z_{1-alpha} sd0) / sd1)``.

    Args:
        effect (float): the true effect, a share of images in (0, 1].
        n (int): paired images (prompts) in the confirmation split.
        alpha (float): the one-sided level of the test (after multiplicity, e.g. 0.05 / tests).
        discordance (float): share of images a random equal-size control changes (either way).
    """
    if not (0 < effect <= 1 and n > 0 and 0 < alpha < 1 and 0 < discordance <= 1):
        raise ValueError(f"need 0 < effect <= 1, n > 0, 0 < alpha < 1 and 0 < discordance <= 1; got effect={effect}, "
                         f"n={n}, alpha={alpha}, discordance={discordance}")
    sd0 = math.sqrt(discordance / n)
    sd1 = math.sqrt(max(discordance + effect - effect**2, 1e-12) / n)
    return float(norm.cdf((effect - norm.ppf(1 - alpha) * sd0) / sd1))


def required_n(effect: float, alpha: float, target_power: float, discordance: float) -> int:
    """The smallest confirmation split that finds ``effect`` with ``target_power`` (see :func:`power`)."""
    lo, hi = 1, MAX_DESIGN_N
    if power(effect, hi, alpha, discordance) < target_power:
        raise ValueError(f"no split of up to {MAX_DESIGN_N} prompts reaches power {target_power} for effect {effect}")
    while lo < hi:
        mid = (lo + hi) // 2
        if power(effect, mid, alpha, discordance) >= target_power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def minimal_detectable_effect(n: int, alpha: float, target_power: float, discordance: float) -> float:
    """The smallest effect found with ``target_power`` on ``n`` paired images at level ``alpha`` (see
    :func:`power`); NaN when even a total effect is not."""
    lo, hi = 1e-6, 1.0
    if power(hi, n, alpha, discordance) < target_power:
        return float("nan")
    for _ in range(60):
        mid = (lo + hi) / 2
        if power(mid, n, alpha, discordance) >= target_power:
            hi = mid
        else:
            lo = mid
    return hi


def min_controls(alpha: float, tests: int) -> int:
    """Controls needed before an empirical p can pass Holm's first step: ``1 / (n + 1) <= alpha / tests``."""
    return math.ceil(tests / alpha) - 1
