"""Control sets for a weight set: is removing ``K`` worse than removing weights like it?

Two families, both drawn from the same candidate pool as ``K`` and with ``K``'s size:

* ``random``: uniform within each tensor, with ``K``'s count per tensor (stratified by tensor).
* ``matched``: also stratified by the magnitude quantile of each weight inside its tensor's candidates (the
  candidates are not exchangeable: a set picked by its effect may lean to large or small weights, and a uniform
  control would then differ from it in kind as well as in identity).

The null hypothesis each family tests: *``K``'s effect on the confirmation split is no larger than that of a set
drawn like the controls*. Both ``K`` and the controls are scored on data neither was chosen on.

Example:
    >>> subsets = draw_controls(cands, k_ids, n=200, seed=0)
    >>> matched = draw_controls(cands, k_ids, n=50, seed=1, match_bins=4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sdprobe.isolate.candidates import CandidateSet

FAMILIES = ("random", "matched")
MATCH_BINS = 4  # magnitude quantile bins per tensor of the matched family


def magnitude_strata(candidates: "CandidateSet", bins: int) -> np.ndarray:
    """(n,) stratum of every item: its tensor times ``bins`` plus its |value| quantile bin within the tensor.

    Candidates without stored values fall back to their prior as the magnitude.
    """
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    mag = np.abs(candidates.values if candidates.values is not None else candidates.prior)
    strata = np.zeros(candidates.n, dtype=np.int64)
    for t in range(len(candidates.names)):
        ids = candidates.tensor_ids(t)
        rank = np.empty(len(ids), dtype=np.int64)
        rank[np.argsort(mag[ids], kind="stable")] = np.arange(len(ids))
        strata[ids] = t * bins + (rank * bins) // max(len(ids), 1)
    return strata


def draw_controls(candidates: "CandidateSet", ids: np.ndarray, n: int, seed: int = 0,
                  match_bins: int | None = None) -> list[np.ndarray]:
    """Random subsets of the candidates with the per-stratum counts of ``ids``.

    Args:
        candidates (CandidateSet): the universe.
        ids (np.ndarray): the set whose counts the controls copy.
        n (int): number of controls.
        seed (int): seeds the generator, so the same call draws the same controls. Default: 0.
        match_bins (int | None): None: strata are tensors (the ``random`` family); an integer: tensors times
            that many magnitude quantile bins (the ``matched`` family). Default: None.

    Returns:
        list[np.ndarray]: ``n`` sorted id arrays.
    """
    from sdprobe.isolate.candidates import as_ids

    if n <= 0:
        raise ValueError(f"the number of controls must be positive, got {n}")
    strata = candidates.tensor_of if match_bins is None else magnitude_strata(candidates, match_bins)
    ids = as_ids(ids)
    keys, counts = np.unique(strata[ids], return_counts=True)
    pools = [np.flatnonzero(strata == k) for k in keys]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts = [rng.choice(pool, size=c, replace=False) for pool, c in zip(pools, counts)]
        out.append(as_ids(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64))
    return out
