"""Replicate curves for a threshold's confidence interval, and the interval itself.

Two sources of uncertainty are combined:

* **Sampling.** With per-seed rows, seeds are resampled with replacement (a cluster bootstrap: every level keeps
  the same resampled seeds; Efron 1979, https://doi.org/10.1214/aos/1176344552). With one row per level and a
  standard error (set-level metrics such as FID, whose error comes from a bootstrap over images), each level is
  redrawn from a normal distribution with that error (a parametric bootstrap).
* **The grid.** A threshold lies somewhere between the last evaluated level that holds and the first that fails
  (its bracket); a step sharper than the grid may sit anywhere inside it, so interpolation between the two
  levels is no evidence of where. Each replicate therefore contributes its whole bracket: the interval runs from
  the ``(1 - ci) / 2`` quantile of the replicates' lower ends to the ``(1 + ci) / 2`` quantile of their upper
  ends, and always contains the bracket of the estimate itself.

A curve with one value per level and no standard error has nothing to resample: its interval is the bracket, and
the result says so (``ci_method = "bracket"``).
"""

from __future__ import annotations

import numpy as np

from sdprobe.thresholds.curve import LevelData

BOOT_CHUNK = 256  # bootstrap replicates per matrix product; bounds memory at BOOT_CHUNK x seeds floats
METHODS = ("bootstrap+bracket", "normal+bracket", "bracket")  # per-seed rows, one row per level with se, neither


def method(data: LevelData) -> str:
    """How the interval of ``data`` is computed (one of ``METHODS``)."""
    if data.per_seed and data.n_seeds >= 2:
        return METHODS[0]
    if data.se is not None and np.isfinite(data.se).all():
        return METHODS[1]
    return METHODS[2]


def replicates(data: LevelData, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    """(n_boot, L) replicate level values in the analysed scale, or None when there is nothing to resample."""
    kind = method(data)
    if n_boot <= 0 or kind == METHODS[2]:
        return None
    if kind == METHODS[1]:
        return data.mean[None, :] + data.se[None, :] * rng.standard_normal((n_boot, len(data.levels)))
    n_seeds = data.n_seeds
    out = np.empty((n_boot, len(data.levels)))
    for start in range(0, n_boot, BOOT_CHUNK):
        b = min(BOOT_CHUNK, n_boot - start)
        weights = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b).astype(float)  # (b, S) draw counts
        sums = weights @ data.seed_sum.T  # (b, L)
        counts = weights @ data.seed_count.T  # (b, L)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + b] = np.where(counts > 0, sums / counts, np.nan)
    return out


def bracket_interval(lo: np.ndarray, hi: np.ndarray, s_lo: float, s_hi: float, ci: float) -> tuple[float, float, int]:
    """The interval from replicate brackets ``lo``/``hi`` (B,), widened to contain the estimate's bracket.

    Returns:
        tuple: ``(low, high, n)``, with ``n`` the replicates that found a bracket.
    """
    ok = np.isfinite(lo) | np.isfinite(hi)
    n = int(ok.sum())
    low = float(np.nanquantile(lo, (1 - ci) / 2)) if np.isfinite(lo).any() else np.nan
    high = float(np.nanquantile(hi, (1 + ci) / 2)) if np.isfinite(hi).any() else np.nan
    low = float(np.nanmin([low, s_lo])) if np.isfinite([low, s_lo]).any() else np.nan
    high = float(np.nanmax([high, s_hi])) if np.isfinite([high, s_hi]).any() else np.nan
    return low, high, n
