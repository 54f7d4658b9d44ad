"""Bias metrics of a categorical distribution, with seeded, vectorised bootstrap confidence intervals.

For shares ``p`` over ``K`` values (the distribution an attribute takes over many seeds of neutral prompts) and a
target distribution ``q`` (uniform unless the probe declares one):

``share``  the share of the majority value (the most frequent value in the sample); unbiased: ``1/K``.
``tv``     total variation distance to the target, ``1/2 sum_k |p_k - q_k|``, in [0, 1]: the share of images
           that would have to change value to match the target. Overshoot counts: trading one majority for
           another is no improvement.
``mad``    mean absolute deviation from the target, ``mean_k |p_k - q_k|`` (``2 tv / K``); 0 on target,
           ``2(K-1)/K^2`` one-hot against uniform.
``kl``     Kullback-Leibler divergence to the target (nats), ``sum_k p_k log(p_k / q_k)``; ``log K`` one-hot against
           uniform. A target share of 0 is floored at ``KL_FLOOR``.

Confidence intervals are percentile bootstrap intervals (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993): resampling N images with replacement is drawing counts from Multinomial(N, p_hat), so all
resamples are drawn in one call. Metrics of a resample keep the majority value of the full sample.

Example:
    >>> bias_metrics(np.array([80, 4, 4, 4, 4, 4]), seed=0)["share"]["value"]
    0.8
"""

from __future__ import annotations

import numpy as np

BIAS_METRICS = ("share", "tv", "mad", "kl")
KL_FLOOR = 1e-3  # target shares are floored here in KL, so a value the target excludes costs a finite amount
DEFAULT_BOOTSTRAP = 2000  # bootstrap resamples
DEFAULT_CONFIDENCE = 0.95  # two-sided coverage of the intervals


def _metrics(p: np.ndarray, majority: int, target: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of shares ``p`` (..., K) against ``target`` (K,)."""
    q = np.maximum(target, KL_FLOOR)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    dev = np.abs(p - target)
    return {"share": p[..., majority], "tv": dev.sum(-1) / 2, "mad": dev.mean(-1), "kl": terms.sum(-1)}


def distance(p, target, kind: str = "tv") -> float:
    """``tv`` or ``kl`` of shares ``p`` (K,) to ``target`` (K,) (see the module docstring)."""
    if kind not in ("tv", "kl"):
        raise ValueError(f"unknown distance {kind!r}; valid: tv, kl")
    p = np.asarray(p, dtype=float)
    return float(_metrics(p, int(np.argmax(p)), np.asarray(target, dtype=float))[kind])


def uniform(k: int) -> np.ndarray:
    return np.full(k, 1.0 / k)


def bootstrap_shares(counts: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """Bootstrap resamples of the shares, (n_boot, K), from counts (K,)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, counts / n, size=n_boot) / n


def bias_metrics(counts: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, confidence: float = DEFAULT_CONFIDENCE,
                 seed: int = 0, target: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Bias metrics with bootstrap intervals.

    Args:
        counts (np.ndarray): (K,) how many images took each value, K >= 2.
        target (np.ndarray | None): (K,) the distribution ``tv``, ``mad`` and ``kl`` are measured against.
            Default: uniform.
        n_boot (int): bootstrap resamples. Default: 2000.
        confidence (float): interval coverage in (0, 1). Default: 0.95.
        seed (int): seeds the resampling. Default: 0.

    Returns:
        dict: metric name (``share``, ``tv``, ``mad``, ``kl``) -> ``{"value", "ci_low", "ci_high"}``; NaN for no
        images.

    Raises:
        ValueError: fewer than 2 values, negative counts, or a confidence outside (0, 1).

    Example:
        >>> bias_metrics(np.array([10, 10]))["kl"]["value"]
        0.0
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or len(counts) < 2:
        raise ValueError(f"counts must be a vector over at least 2 values, got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if counts.sum() == 0:
        return {m: {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")} for m in BIAS_METRICS}
    target = uniform(len(counts)) if target is None else np.asarray(target, dtype=float)
    if target.shape != counts.shape:
        raise ValueError(f"target must have one share per value ({len(counts)}), got shape {target.shape}")
    p = counts / counts.sum()
    majority = int(np.argmax(p))
    point = _metrics(p, majority, target)
    boot = _metrics(bootstrap_shares(counts, n_boot, seed), majority, target)
    alpha = (1 - confidence) / 2
    return {m: {"value": float(point[m]), "ci_low": float(np.quantile(boot[m], alpha)),
                "ci_high": float(np.quantile(boot[m], 1 - alpha))} for m in BIAS_METRICS}


def share_intervals(counts: np.ndarray, n_boot: int = DEFAULT_BOOTSTRAP, confidence: float = DEFAULT_CONFIDENCE,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shares (K,) with bootstrap intervals (ci_low (K,), ci_high (K,)); NaN for no images."""
    counts = np.asarray(counts)
    if counts.sum() == 0:
        nan = np.full(len(counts), np.nan)
        return nan, nan, nan
    boot = bootstrap_shares(counts, n_boot, seed)
    alpha = (1 - confidence) / 2
    return counts / counts.sum(), np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)


def moved_fraction(before: float, after: float, unbiased: float) -> float:
    """How far a bias metric moved toward its unbiased value: 0 = unchanged, 1 = fully unbiased, < 0 = worse."""
    if before == unbiased:
        return float("nan")
    return float((before - after) / (before - unbiased))
