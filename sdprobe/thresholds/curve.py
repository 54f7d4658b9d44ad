"""Turn a sweep table (one row per image) or a ready curve (one row per level) into per-level arrays.

The detector needs, for every evaluated level, the mean of the metric and its standard error; the bootstrap also
needs per-seed sums so that resampling seeds is one matrix product. This module builds those arrays and is the
only place that validates the input table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_LEVELS = 3  # a plateau, a step and a post-collapse level need at least three evaluated levels
SCALES = ("linear", "log")  # log: the metric is analysed as log(value) (unbounded metrics such as FID)
SE_SUFFIX = "_se"  # a one-row-per-level table may give each value's standard error in column "<metric>_se"


@dataclass(frozen=True)
class LevelData:
    """A metric's values gathered per level (and per seed, when the table has per-seed rows).

    Attributes:
        levels (np.ndarray): (L,) sorted, distinct x values that have at least one value of the metric.
        mean (np.ndarray): (L,) NaN-mean of the metric at each level.
        se (np.ndarray | None): (L,) standard error of each level mean from its rows; None for a ready curve.
        seed_sum (np.ndarray | None): (L, S) sum of the metric per level and seed; None for a ready curve.
        seed_count (np.ndarray | None): (L, S) number of non-NaN values per level and seed.
    """

    levels: np.ndarray
    mean: np.ndarray
    se: np.ndarray | None = None
    seed_sum: np.ndarray | None = None
    seed_count: np.ndarray | None = None

    @property
    def per_seed(self) -> bool:
        """True when the data has several rows at some level, so seed noise can be measured and resampled."""
        return self.seed_sum is not None

    @property
    def n_seeds(self) -> int:
        return 0 if self.seed_sum is None else self.seed_sum.shape[1]


def _numeric(frame: pd.DataFrame, column: str, role: str) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"{role} column {column!r} is not in the table; its columns are: "
                         f"{', '.join(map(str, frame.columns))}")
    values = frame[column]
    if not (pd.api.types.is_numeric_dtype(values) or values.isna().all()):
        raise ValueError(f"{role} column {column!r} is not numeric (dtype {values.dtype}); give a column of numbers")
    return values.to_numpy(dtype=float)


def level_data(data: pd.DataFrame | tuple[Sequence[float], Sequence[float]], x: str, y: str,
               seed_col: str | None = "seed", scale: str = "linear") -> LevelData:
    """Gather ``y`` per level of ``x`` from a table or an (x, y) pair of sequences.

    Args:
        data (pandas.DataFrame | tuple): a table with one row per image (columns ``x``, ``y`` and ``seed_col``) or
            one row per level, or a pair ``(xs, ys)`` of equal-length sequences (a ready curve).
        x (str): the sparsity column, e.g. ``"level"``.
        y (str): the metric column.
        seed_col (str | None): the column whose values are resampled by the bootstrap. A table without it, or
            with one row per level, is treated as a ready curve. Default: ``"seed"``.
        scale (str): ``"linear"`` or ``"log"`` (values, and a ``<y>_se`` column by the delta method, are
            analysed as logarithms; they must be positive). Default: ``"linear"``.

    Returns:
        LevelData: per-level arrays in the analysed scale; levels where ``y`` is all NaN are left out. A table
        with one row per level and a ``<y>_se`` column (a set-level metric's standard error) gives ``se``.

    Raises:
        ValueError: a missing or non-numeric column, NaN/inf levels, fewer than 3 levels with values, an unknown
            scale, or values that are not positive on a log scale.
        TypeError: ``data`` is neither a DataFrame nor a pair.

    Example:
        >>> level_data(pd.DataFrame({"level": [0, .1, .2], "acc": [1, 1, 0]}), "level", "acc").mean
        array([1., 1., 0.])
    """
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"a ready curve is a pair (xs, ys); got a tuple of {len(data)}")
        xs, ys = (np.asarray(v, dtype=float) for v in data)
        if xs.shape != ys.shape or xs.ndim != 1:
            raise ValueError(f"xs and ys must be 1-D and of equal length; got shapes {xs.shape} and {ys.shape}")
        frame = pd.DataFrame({"x": xs, "y": ys})
        x, y, seed_col = "x", "y", None
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        raise TypeError(f"expected a pandas.DataFrame or an (xs, ys) pair, got {type(data).__name__}")

    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    xs = _numeric(frame, x, "sparsity")
    ys = _numeric(frame, y, "metric")
    se_col = f"{y}{SE_SUFFIX}"
    given_se = _numeric(frame, se_col, "standard error") if se_col in frame.columns else None
    if not np.isfinite(xs).all():
        raise ValueError(f"sparsity column {x!r} has NaN or infinite values")
    if np.isinf(ys).any():
        raise ValueError(f"metric column {y!r} has infinite values")
    if scale == "log":
        if (ys[~np.isnan(ys)] <= 0).any():
            raise ValueError(f"metric {y!r} has values <= 0, which have no logarithm; analyse it on a linear scale")
        if given_se is not None:
            given_se = given_se / ys
        ys = np.log(ys)
    keep = ~np.isnan(ys)
    levels, inverse = np.unique(xs[keep], return_inverse=True)
    if len(levels) < MIN_LEVELS:
        raise ValueError(f"metric {y!r} has values at {len(levels)} level(s) of {x!r}; at least {MIN_LEVELS} are "
                         "needed to tell a plateau from a collapse")
    counts = np.bincount(inverse, minlength=len(levels)).astype(float)  # (L,)
    sums = np.bincount(inverse, weights=ys[keep], minlength=len(levels))  # (L,)
    mean = sums / counts
    if counts.max() <= 1 and given_se is not None:
        se = np.full(len(levels), np.nan)
        se[inverse] = given_se[keep]
        if not (np.isfinite(se).all() and (se >= 0).all()):
            raise ValueError(f"standard error column {se_col!r} must be finite and >= 0 at every level")
        return LevelData(levels=levels, mean=mean, se=se)
    if seed_col is None or seed_col not in frame.columns or counts.max() <= 1:
        return LevelData(levels=levels, mean=mean)

    squares = np.bincount(inverse, weights=(ys[keep] - mean[inverse]) ** 2, minlength=len(levels))
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(counts > 1, squares / np.maximum(counts - 1, 1), np.nan)  # unbiased variance of the rows
        se = np.sqrt(var / counts)
    seeds, seed_index = np.unique(frame[seed_col].to_numpy()[keep].astype(str), return_inverse=True)
    flat = inverse * len(seeds) + seed_index
    shape = (len(levels), len(seeds))
    seed_sum = np.bincount(flat, weights=ys[keep], minlength=shape[0] * shape[1]).reshape(shape)  # (L, S)
    seed_count = np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape).astype(float)  # (L, S)
    return LevelData(levels=levels, mean=mean, se=se, seed_sum=seed_sum, seed_count=seed_count)
