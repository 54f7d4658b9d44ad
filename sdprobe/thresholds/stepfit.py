"""Vectorised pieces of collapse detection: the best single step of many curves at once, and level crossings.

Every function takes a stack of curves ``(B, L)`` (B curves over the same L levels) so that the point estimate
(B = 1) and all bootstrap replicates (B = n_boot) go through the same code.

The step fit is the exact least-squares single change point of the piecewise-constant ("l2") model reviewed in
Truong, Oudre & Vayatis 2020, "Selective review of offline change point detection methods"
(https://arxiv.org/abs/1801.00718), which ``ruptures.Dynp(model="l2")`` also solves. We evaluate it with cumulative
sums instead of calling ruptures because ruptures fits one signal per call, and the bootstrap needs thousands of
fits; the tests check that both give the same change point.

A sweep's levels are rarely evenly spaced: refinement adds levels inside the brackets it narrows. An unweighted fit
counts every level once, so densely sampled stretches pull the step towards themselves, and a curve that falls in
two steps can have its step fitted to the first on a uniform grid and to the second once the second is refined.
:func:`level_weights` weighs each level by the stretch of sparsity it stands for, which makes the fit the
least-squares step of the curve as a function of sparsity, whatever the sampling.
"""

from __future__ import annotations

import numpy as np


def level_weights(levels: np.ndarray) -> np.ndarray:
    """The stretch of sparsity each level stands for: half the gap to each neighbour (the ends get one half-gap).

    Example:
        >>> level_weights(np.array([0.0, 0.1, 0.15, 0.2]))
        array([0.05 , 0.075, 0.05 , 0.025])
    """
    x = np.asarray(levels, dtype=float)
    if len(x) < 2:
        return np.ones_like(x)
    edges = np.concatenate([x[:1], (x[1:] + x[:-1]) / 2, x[-1:]])
    return np.diff(edges)


def step_fit(curves: np.ndarray, downward_only: bool = True, weights: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one step (two constant segments) to each curve by (weighted) least squares.

    Args:
        curves (np.ndarray): (B, L) or (L,) values, L >= 2, higher = better. Rows containing NaN get no fit.
        downward_only (bool): only consider steps whose left mean exceeds the right mean (a loss, never a gain).
            Default: True.
        weights (np.ndarray | None): (L,) positive weight of each level (see :func:`level_weights`); a weight of
            ``w`` counts like ``w`` copies of the level. Default: None, every level counts once.

    Returns:
        tuple: ``(brk, left, right)``, each (B,): ``brk`` is the index of the first level after the step
        (1 .. L-1; -1 where no step was fitted), ``left``/``right`` the segment means (NaN without a fit).

    Example:
        >>> step_fit(np.array([1.0, 1.0, 0.0, 0.0]))
        (array([2]), array([1.]), array([0.]))
    """
    y = np.atleast_2d(np.asarray(curves, dtype=float))  # (B, L)
    n_levels = y.shape[1]
    if n_levels < 2:
        raise ValueError(f"a step needs at least 2 levels, got {n_levels}")
    w = np.ones(n_levels) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n_levels,) or not (w > 0).all():
        raise ValueError(f"weights must be {n_levels} positive numbers, got {w}")
    csum = np.cumsum(y * w, axis=1)  # (B, L)
    wsum = np.cumsum(w)  # (L,)
    k = wsum[:-1]  # (L-1,) weight of the left segment
    rest = wsum[-1] - k  # (L-1,) weight of the right segment
    left = csum[:, :-1] / k  # (B, L-1) mean of levels [0, k)
    right = (csum[:, -1:] - csum[:, :-1]) / rest  # (B, L-1) mean of levels [k, L)
    # The sum of squared errors of a split is the total minus the between-segment sum of squares, so the best split
    # maximises W_left W_right / W * (left - right)^2.
    gain = k * rest / wsum[-1] * (left - right) ** 2  # (B, L-1)
    if downward_only:
        gain = np.where(left > right, gain, -np.inf)
    gain = np.where(np.isnan(gain), -np.inf, gain)
    best = np.argmax(gain, axis=1)  # (B,)
    rows = np.arange(y.shape[0])
    ok = np.isfinite(gain[rows, best]) & ~np.isnan(y).any(axis=1)
    brk = np.where(ok, best + 1, -1)
    return brk, np.where(ok, left[rows, best], np.nan), np.where(ok, right[rows, best], np.nan)


def crossing(curves: np.ndarray, levels: np.ndarray, bar: np.ndarray, near: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Where each curve goes below its bar, linearly interpolated from the level before.

    A curve may cross its bar several times when its level means are noisy. The crossing used is the one whose
    first level below the bar is closest to ``near`` (e.g. the fitted step; the earlier one on ties), or the first
    crossing when ``near`` is None. Starting below the bar counts as a crossing at ``levels[0]``.

    Args:
        curves (np.ndarray): (B, L) values, higher = better.
        levels (np.ndarray): (L,) increasing x values.
        bar (np.ndarray): (B,) one bar per curve (NaN: no crossing).
        near (np.ndarray | None): (B,) level index to look near; -1 or None: take the first crossing.

    Returns:
        tuple: ``(x, index)``, each (B,): the interpolated crossing (NaN when the curve never goes below) and the
        index of the first level below the bar at that crossing (-1 if none).

    Example:
        >>> crossing(np.array([[1.0, 1.0, 0.0]]), np.array([0.0, 0.1, 0.2]), np.array([0.5]))
        (array([0.15]), array([2]))
    """
    y = np.atleast_2d(curves)  # (B, L)
    below = y < np.asarray(bar, dtype=float)[:, None]  # (B, L); NaN compares False
    starts = below.copy()
    starts[:, 1:] &= ~below[:, :-1]  # (B, L) first level below the bar of each excursion
    has = starts.any(axis=1)
    positions = np.arange(y.shape[1])[None, :]  # (1, L)
    if near is None:
        near = np.full(len(y), -1)
    target = np.where(np.asarray(near) >= 0, np.asarray(near), 0)[:, None]  # (B, 1); 0 makes argmin pick the first
    idx = np.argmin(np.where(starts, np.abs(positions - target), np.iinfo(np.int64).max), axis=1)  # (B,)
    prev = np.maximum(idx - 1, 0)
    rows = np.arange(y.shape[0])
    y0, y1 = y[rows, prev], y[rows, idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(idx > 0, (y0 - bar) / (y0 - y1), 0.0)
    x = levels[prev] + frac * (levels[idx] - levels[prev])
    return np.where(has, x, np.nan), np.where(has, idx, -1)


def last_index(mask: np.ndarray) -> np.ndarray:
    """(B,) index of the last True in each row of a (B, L) mask, -1 where none."""
    n = mask.shape[1]
    return np.where(mask.any(axis=1), n - 1 - np.argmax(mask[:, ::-1], axis=1), -1)


def first_index(mask: np.ndarray) -> np.ndarray:
    """(B,) index of the first True in each row of a (B, L) mask, -1 where none."""
    return np.where(mask.any(axis=1), np.argmax(mask, axis=1), -1)


def take(levels: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``levels[index]`` with NaN where ``index`` is -1."""
    return np.where(index >= 0, levels[np.maximum(index, 0)], np.nan)
