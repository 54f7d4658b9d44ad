"""Random controls for a critical set: is removing ``K`` worse than removing random weights like it?

A control is a random subset of the candidates with the same size as ``K`` and the same number of weights in
each tensor, so it matches ``K``'s size and where it lives at tensor level. Its *effect* is scored exactly like
``K``'s. The empirical p-value is the permutation-test estimate with the +1 correction
(Phipson & Smyth 2010, https://doi.org/10.2202/1544-6115.1585): ``(1 + #{controls with effect >= K's}) /
(1 + n_controls)``, never zero.

Example:
    >>> subsets = draw_controls(cands, k_ids, n=50, seed=0)
    >>> empirical_p_value(0.8, [0.0, 0.1, 0.9])
    0.5
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from sdprobe.isolate.candidates import CandidateSet, as_ids

MIN_CONTROLS = 20  # with fewer, the smallest possible p-value (1/(1+n)) cannot reach 0.05


def draw_controls(candidates: CandidateSet, ids: np.ndarray, n: int, seed: int = 0) -> list[np.ndarray]:
    """Random subsets of the candidates with the per-tensor counts of ``ids``.

    Args:
        candidates (CandidateSet): the universe.
        ids (np.ndarray): the critical set whose per-tensor counts the controls copy.
        n (int): number of controls.
        seed (int): seeds the generator, so the same call draws the same controls. Default: 0.

    Returns:
        list[np.ndarray]: ``n`` sorted id arrays, each uniform over the candidates of each tensor.
    """
    if n <= 0:
        raise ValueError(f"the number of controls must be positive, got {n}")
    rng = np.random.default_rng(seed)
    counts = candidates.per_tensor_counts(ids)
    out = []
    for _ in range(n):
        parts = [rng.choice(candidates.tensor_ids(t), size=c, replace=False) for t, c in sorted(counts.items())]
        out.append(as_ids(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64))
    return out


def empirical_p_value(effect: float, control_effects: Sequence[float]) -> float:
    """``(1 + #{c >= effect}) / (1 + n)`` over the finite control effects (NaN when there are none).

    Args:
        effect (float): the effect of the tested set.
        control_effects (Sequence[float]): the effects of the controls (NaN entries are ignored).

    Returns:
        float: the one-sided empirical p-value in ``(0, 1]``.
    """
    c = np.asarray([e for e in control_effects if not math.isnan(e)], dtype=float)
    if len(c) == 0 or math.isnan(effect):
        return float("nan")
    return float((1 + np.sum(c >= effect)) / (1 + len(c)))


def beats_all(effect: float, control_effects: Sequence[float]) -> bool:
    """True when ``effect`` is strictly larger than every finite control effect."""
    c = [e for e in control_effects if not math.isnan(e)]
    return bool(c) and not math.isnan(effect) and effect > max(c)
