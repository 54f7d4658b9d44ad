"""Isolate the critical weight set of one meaning, prove it against random controls, and measure selectivity.

Everything here works on one callback, ``evaluate(S) -> {meaning: accuracy}``: the accuracies with ``mask(s_lo) ∪ S``
pruned, for a subset ``S`` of the candidates (item ids of a :class:`CandidateSet`). ``S = ∅`` is the plateau
just before the collapse (``s_lo``) and ``S = U`` is the floor just after it (``s_hi``). So

    breaks(K)   = accuracy(K) < bar                  (removing K at s_lo breaks the meaning)
    restores(K) = accuracy(U \\ K) >= bar             (restoring K at s_hi brings it back)
    effect(S)   = accuracy(∅) - accuracy(S)           (the drop caused by removing S)

The callback is normally a :class:`sdprobe.isolate.log.CachedEvaluator`, so every result is logged and a rerun
resumes. The model-facing callback lives in :mod:`sdprobe.isolate.evaluator`.

Example:
    >>> cs = isolate_meaning(cands, cached, "color", n_controls=50)
    >>> cs.summary()["p_value"], cs.summary()["size"]
    (0.0196, 12)
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sdprobe.isolate.candidates import CandidateSet, as_ids
from sdprobe.isolate.controls import (
    MIN_CONTROLS,
    beats_all,
    draw_controls,
    empirical_p_value,
)
from sdprobe.isolate.search import (
    DEFAULT_LEVELS,
    NothingToIsolate,
    SearchResult,
    find_critical_set,
)

log = logging.getLogger(__name__)
Evaluate = Callable[[np.ndarray], dict[str, float]]


def midpoint_bar(plateau: float, floor: float) -> float:
    """The default bar: halfway between the accuracy before (plateau) and after (floor) the collapse."""
    return (plateau + floor) / 2.0


@dataclass
class CriticalSet:
    """A critical weight set with its evidence.

    Attributes:
        meaning (str): the accuracy column it breaks, e.g. ``"color"``.
        candidates (CandidateSet): the universe it was drawn from.
        ids (np.ndarray): item ids of the set ``K``.
        bar (float): accuracy below which the meaning counts as broken.
        accuracy (dict[str, dict[str, float]]): per state (``lo`` = nothing removed, ``hi`` = all candidates
            removed, ``removed`` = K removed at s_lo, ``restored`` = K restored at s_hi) the accuracy per meaning.
        search (SearchResult): the search's counts and steps.
        control_accuracy (list[dict[str, float]]): per control, the accuracy per meaning with it removed.
        s_lo (float | None), s_hi (float | None): the sweep levels around the collapse, when known.
        seed (int): seed of the controls.
    """

    meaning: str
    candidates: CandidateSet
    ids: np.ndarray
    bar: float
    accuracy: dict[str, dict[str, float]]
    search: SearchResult
    control_accuracy: list[dict[str, float]] = field(default_factory=list)
    s_lo: float | None = None
    s_hi: float | None = None
    seed: int = 0

    @property
    def effect(self) -> float:
        return self.accuracy["lo"][self.meaning] - self.accuracy["removed"][self.meaning]

    @property
    def control_effects(self) -> list[float]:
        lo = self.accuracy["lo"][self.meaning]
        return [lo - acc[self.meaning] for acc in self.control_accuracy]

    @property
    def p_value(self) -> float:
        return empirical_p_value(self.effect, self.control_effects)

    @property
    def selectivity(self) -> dict[str, float]:
        """Accuracy drop of every other meaning when ``K`` is removed (small = selective)."""
        lo, removed = self.accuracy["lo"], self.accuracy["removed"]
        return {m: lo[m] - removed[m] for m in lo if m != self.meaning and m in removed}

    def indices(self) -> dict[str, torch.Tensor]:
        """``{qualified name: LongTensor of flat indices}``, ready for ``mask.override(prune=...)``."""
        return self.candidates.to_dict(self.ids)

    def where(self) -> dict[str, int]:
        """How many of the set's weights live in each ``component/role``."""
        names = [self.candidates.names[t] for t in self.candidates.tensor_of[self.ids]]
        info = self.candidates.info
        return dict(sorted(Counter(f"{info[n]['component']}/{info[n].get('role', 'other')}" for n in names).items()))

    def summary(self) -> dict:
        """The ``summary.json`` of the set (see the run-directory layout)."""
        effects = self.control_effects
        finite = [e for e in effects if not math.isnan(e)]
        return {
            "meaning": self.meaning,
            "s_lo": self.s_lo,
            "s_hi": self.s_hi,
            "n_candidates": self.candidates.n,
            "size": len(self.ids),
            "fraction_of_candidates": len(self.ids) / self.candidates.n,
            "effect": self.effect,
            "bar": self.bar,
            "breaks": bool(self.accuracy["removed"][self.meaning] < self.bar),
            "restores": bool(self.accuracy["restored"][self.meaning] >= self.bar),
            "control_effects": effects,
            "control_mean": float(np.mean(finite)) if finite else float("nan"),
            "n_controls": len(effects),
            "p_value": self.p_value,
            "beats_all_controls": beats_all(self.effect, effects),
            "evaluations": self.search.evaluations,
            "candidate_groups": self.search.candidate_groups,
            "groups_per_level": self.search.groups_per_level,
            "search_steps": self.search.steps,
            "selectivity": self.selectivity,
            "where": self.where(),
            "accuracy": self.accuracy,
            "seed": self.seed,
        }


def _accuracies(values: dict[str, float], meanings: Sequence[str]) -> dict[str, float]:
    return {m: float(values[m]) for m in meanings if m in values}


def isolate_meaning(candidates: CandidateSet, evaluate: Evaluate, meaning: str, bar: float | None = None,
                    n_controls: int = 50, seed: int = 0, levels: Sequence[str] = DEFAULT_LEVELS,
                    meanings: Sequence[str] | None = None, max_evaluations: int | None = None,
                    s_lo: float | None = None, s_hi: float | None = None, progress: bool = True) -> CriticalSet:
    """Find the critical set of ``meaning`` among ``candidates`` and score it against random controls.

    Args:
        candidates (CandidateSet): the candidate weights with their prior.
        evaluate (Callable[[np.ndarray], dict[str, float]]): accuracies with ``mask(s_lo) ∪ S`` pruned (see the
            module docstring); should be cached and logged (:class:`~sdprobe.isolate.log.CachedEvaluator`).
        meaning (str): the accuracy key to break, e.g. ``"color"``.
        bar (float | None): broken means accuracy below ``bar``. Default: None, the midpoint of the accuracy
            with nothing and with all candidates removed (:func:`midpoint_bar`).
        n_controls (int): random equal-size, equal-per-tensor controls (at least 20). Default: 50.
        seed (int): seed of the controls. Default: 0.
        levels (Sequence[str]): the search hierarchy. Default: ``("tensor", "row", "weight")``.
        meanings (Sequence[str] | None): keys of ``evaluate``'s result to report (selectivity). Default: all.
        max_evaluations (int | None): test budget of the search. Default: None (unbounded).
        s_lo (float | None), s_hi (float | None): the sweep levels, recorded in the summary. Default: None.
        progress (bool): progress bars. Default: True.

    Returns:
        CriticalSet: the set, its accuracies, controls and counts. A set that does not beat its controls is
        returned like any other; its p-value says so.

    Raises:
        ValueError: fewer than 20 controls, or ``meaning`` not among ``evaluate``'s keys.
        NothingToIsolate: the meaning does not go from intact (∅) to broken (U) at this bar.
    """
    if n_controls < MIN_CONTROLS:
        raise ValueError(f"at least {MIN_CONTROLS} controls are needed for a p-value below 0.05, got {n_controls}")
    everything, nothing = candidates.all_ids(), np.zeros(0, dtype=np.int64)
    lo_all = evaluate(nothing)
    if meaning not in lo_all:
        raise ValueError(f"unknown meaning {meaning!r}; the evaluation measures: {', '.join(lo_all)}")
    meanings = list(meanings or lo_all)
    lo, hi = _accuracies(lo_all, meanings), _accuracies(evaluate(everything), meanings)
    if bar is None:
        bar = midpoint_bar(lo[meaning], hi[meaning])
    if not lo[meaning] >= bar > hi[meaning]:
        raise NothingToIsolate(
            f"{meaning} accuracy goes from {lo[meaning]:.3f} (nothing removed) to {hi[meaning]:.3f} (all "
            f"{candidates.n} candidates removed); a bar of {bar:.3f} must lie in between (floor < bar <= plateau)"
        )
    log.info("isolating %s among %d candidates: accuracy %.3f -> %.3f, bar %.3f", meaning, candidates.n,
             lo[meaning], hi[meaning], bar)
    result = find_critical_set(
        candidates,
        breaks=lambda s: evaluate(s)[meaning] < bar,
        restores=lambda s: evaluate(np.setdiff1d(everything, s))[meaning] >= bar,
        levels=levels, max_evaluations=max_evaluations, progress=progress,
    )
    ids = as_ids(result.ids)
    accuracy = {"lo": lo, "hi": hi, "removed": _accuracies(evaluate(ids), meanings),
                "restored": _accuracies(evaluate(np.setdiff1d(everything, ids)), meanings)}
    controls = []
    for subset in tqdm(draw_controls(candidates, ids, n_controls, seed), desc=f"controls ({meaning})", unit="control",
                       disable=not progress):
        controls.append(_accuracies(evaluate(subset), meanings))
    cs = CriticalSet(meaning, candidates, ids, bar, accuracy, result, controls, s_lo, s_hi, seed)
    log.info("%s: %d weights, effect %.3f vs controls mean %.3f, p = %.3g (%d tests for %d candidate groups)", meaning,
             len(ids), cs.effect, float(np.nanmean(cs.control_effects)), cs.p_value, result.evaluations,
             result.candidate_groups)
    return cs


def jaccard(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Jaccard index of two weight sets given as ``{qualified name: flat indices}`` (NaN when both are empty)."""
    sa = {(n, int(i)) for n, idx in a.items() for i in idx}
    sb = {(n, int(i)) for n, idx in b.items() for i in idx}
    union = sa | sb
    return len(sa & sb) / len(union) if union else float("nan")
