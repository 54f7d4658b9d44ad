"""Vectorised pieces of collapse detection: level weights and level crossings of many curves at once.

Every function takes a stack of curves ``(B, L)`` (B curves over the same L levels) so that the point estimate
(B = 1) and all bootstrap replicates (B = n_boot) go through the same code.

A sweep's levels are rarely evenly spaced: refinement adds levels inside the brackets it narrows. A plain mean
counts every level once, so densely sampled stretches pull a segment's mean towards themselves.
:func:`level_weights` weighs each level by the stretch of sparsity it stands for, which makes segment means
means of the curve as a function of sparsity, whatever the sampling.
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
