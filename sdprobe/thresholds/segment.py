"""Cut a normalised curve into constant segments, then group the segments into declines ("events").

A curve may fall in more than one step. Multi-change-point segmentation finds them all: PELT (Killick, Fearnhead &
Eckley 2012, https://arxiv.org/abs/1101.1438) on the piecewise-constant ("l2") model, as implemented by
``ruptures`` (Truong, Oudre & Vayatis 2020, https://arxiv.org/abs/1801.00718). Its penalty is the BIC-type
penalty for a shift in the mean of Gaussian noise (Yao 1988, https://doi.org/10.1016/0167-7152(88)90118-6):

    pen = PENALTY x sigma^2 x ln(L)     (PENALTY = 2 by default; sigma^2 the noise variance of a level's value)

so a change point is kept only when it explains more than noise would. ``sigma^2`` comes from the seeds (the
squared standard error of each level's mean) or, for a curve with one value per level, from the spread of its
first differences; ``MIN_PENALTY`` keeps a noise-free curve from being cut at every level for rounding errors.

A gradual decline comes out of the segmentation as a staircase of segments that each keep declining inside; a
step comes out as one change between two flat plateaus. So consecutive downward changes are merged into one event
unless the segment between them is a *plateau*: it holds at least ``MIN_PLATEAU_LEVELS`` levels and stands for at
least ``min_span`` of sparsity (half the widest sudden transition by default, so a segment inside one transition
never splits it; two noisy levels cannot show that a stretch is flat; the stretch runs halfway to the neighbouring
levels, so it does not depend on how densely the plateau was sampled) and, across its levels, loses
at most ``PLATEAU_RATIO`` of the smaller of the two changes around it (a least-squares line through its levels).
On a ramp a segment loses about as much inside as at its edges; between two steps it loses nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sdprobe.thresholds.crossing import level_weights

PENALTY = 2.0  # BIC-type change-point penalty: PENALTY * sigma^2 * ln(L) (Yao 1988)
MIN_PENALTY = 1e-4  # in squared shares of the range: a noise-free curve is not cut for changes below 1% of it
PLATEAU_RATIO = 0.25  # a segment between two declines is a plateau if it loses at most this share of them
MIN_SPAN = 0.05  # a plateau spans at least this much sparsity: half the widest sudden transition
MIN_PLATEAU_LEVELS = 3  # a plateau holds at least this many levels
SPAN_SLACK = 1e-9  # absorbs binary rounding of level differences
MAD_TO_SD = 1.4826  # median absolute deviation -> standard deviation of Gaussian noise


@dataclass(frozen=True)
class Segments:
    """Constant segments of a curve.

    Attributes:
        starts (np.ndarray): (K+1,) index of each segment's first level; ``starts[-1]`` is the number of levels.
        means (np.ndarray): (K,) weighted mean of each segment (:func:`level_weights`).
        losses (np.ndarray): (K,) how much each segment loses across its stretch (a line fitted by least squares,
            each level weighted by its stretch; 0 for a segment of one level).
        spans (np.ndarray): (K,) the stretch of sparsity each segment stands for: from halfway to the level before
            its first to halfway to the level after its last (the sum of its :func:`level_weights`), so a
            plateau's width does not depend on how densely its inside was sampled.
    """

    starts: np.ndarray
    means: np.ndarray
    losses: np.ndarray
    spans: np.ndarray

    def __len__(self) -> int:
        return len(self.means)

    def span(self, first: int, last: int) -> slice:
        """The levels of segments ``first..last`` (inclusive)."""
        return slice(int(self.starts[first]), int(self.starts[last + 1]))


def noise_variance(u: np.ndarray, se: np.ndarray | None) -> float:
    """Noise variance of one level's value: the mean squared standard error, else from first differences (MAD)."""
    if se is not None and np.isfinite(se).all():
        return float(np.mean(se ** 2))
    diffs = np.diff(u)
    if len(diffs) < 2:
        return 0.0
    return float((MAD_TO_SD * np.median(np.abs(diffs - np.median(diffs)))) ** 2 / 2)


def penalty(u: np.ndarray, se: np.ndarray | None, factor: float = PENALTY) -> float:
    """The PELT penalty for a curve of ``len(u)`` levels (see the module docstring)."""
    return max(factor * noise_variance(u, se) * math.log(max(len(u), 2)), MIN_PENALTY)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    return float((values * weights).sum() / weights.sum())


def _loss(x: np.ndarray, u: np.ndarray, w: np.ndarray) -> float:
    """Decline of ``u`` across the stretch its levels stand for (``w.sum()``), from a line fitted by least squares
    with each level weighted by its stretch ``w`` (so densely sampled corners do not tilt it)."""
    xm = float((w * x).sum() / w.sum())
    sxx = float((w * (x - xm) ** 2).sum())
    if sxx <= 0:
        return 0.0
    slope = float((w * (x - xm) * (u - (w * u).sum() / w.sum())).sum() / sxx)
    return -slope * float(w.sum())


def segment(u: np.ndarray, levels: np.ndarray, se: np.ndarray | None = None, factor: float = PENALTY) -> Segments:
    """Segment a normalised curve (1 = dense, 0 = floor) into constant pieces.

    Args:
        u (np.ndarray): (L,) the curve, higher = better, as shares of the range.
        levels (np.ndarray): (L,) increasing sparsities.
        se (np.ndarray | None): (L,) standard error of each value, in the same units; None: estimated.
        factor (float): the penalty factor (see :func:`penalty`). Default: ``PENALTY``.

    Returns:
        Segments: the segments, their means, losses and spans.

    Example:
        >>> segment(np.r_[1, 1, 1, .5, .5, .5, 0, 0], np.arange(8) / 10).starts
        array([0, 3, 6, 8])
    """
    import ruptures as rpt

    u = np.asarray(u, dtype=float)
    ends = rpt.Pelt(model="l2", min_size=1, jump=1).fit(u).predict(pen=penalty(u, se, factor))
    starts = np.array([0, *ends])
    w = level_weights(levels)
    spans = [(a, b) for a, b in zip(starts[:-1], starts[1:])]
    return Segments(starts=starts, means=np.array([_weighted_mean(u[a:b], w[a:b]) for a, b in spans]),
                    losses=np.array([_loss(levels[a:b], u[a:b], w[a:b]) for a, b in spans]),
                    spans=np.array([w[a:b].sum() for a, b in spans]))


def is_plateau(seg: Segments, j: int, min_span: float = MIN_SPAN, ratio: float = PLATEAU_RATIO,
               min_levels: int = MIN_PLATEAU_LEVELS) -> bool:
    """Whether interior segment ``j`` separates the changes on either side of it (see the module docstring)."""
    around = min(abs(seg.means[j - 1] - seg.means[j]), abs(seg.means[j] - seg.means[j + 1]))
    levels = seg.starts[j + 1] - seg.starts[j]
    return bool(levels >= min_levels and seg.spans[j] >= min_span - SPAN_SLACK and seg.losses[j] <= ratio * around)


def declines(seg: Segments, min_span: float = MIN_SPAN, ratio: float = PLATEAU_RATIO,
             min_levels: int = MIN_PLATEAU_LEVELS) -> list[tuple[int, int]]:
    """Group downward changes into events: ``(first, last)`` segment pairs, ``first`` the upper plateau.

    Consecutive downward changes join one event unless the segment between them is a plateau; a rise ends an
    event.

    Example:
        >>> declines(Segments(np.array([0, 3, 6, 8]), np.array([1., .5, 0.]), np.zeros(3), np.full(3, .2)))
        [(0, 1), (1, 2)]
    """
    events: list[tuple[int, int]] = []
    j = 0
    while j < len(seg) - 1:
        if seg.means[j + 1] >= seg.means[j]:
            j += 1
            continue
        last = j + 1
        while (last < len(seg) - 1 and seg.means[last + 1] < seg.means[last]
               and not is_plateau(seg, last, min_span, ratio, min_levels)):
            last += 1
        events.append((j, last))
        j = last
    return events
