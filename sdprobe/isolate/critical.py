"""Isolate the critical weight set of one meaning on a search split, then confirm it on fresh data.

Everything here works on two callbacks over subsets ``S`` of the candidates ``U`` (item ids of a
:class:`CandidateSet`), both pruning ``base ∪ S`` where ``base`` is the start of the window (the meaning holds):

* ``search(S) -> {meaning: accuracy}`` on the **search split** (the run's prompts, which chose the window);
* ``confirm(S) -> {meaning: (N,) per-image correctness}`` on the **confirmation split** (prompts and seeds that
  neither the sweep nor the search saw).

The search (:mod:`~sdprobe.isolate.search`) finds a small ``K`` with ``search(K)`` below the bar and
``search(U \\ K)`` above it. The claim is then judged on the confirmation split only
(:func:`sdprobe.evidence.confirm_set`): necessity (removing ``K`` at the window's start) and sufficiency (restoring
``K`` at its end), each against 200 random tensor-stratified controls and 50 magnitude-matched ones. A set is
called **critical** when both directions pass after Holm–Bonferroni correction over every test of the run
(:func:`adjust`); otherwise the verdict is **no replicable critical set**, with the numbers.

Example:
    >>> cs = isolate_meaning(cands, search, confirm, "color", IsolationConfig())
    >>> cs.summary()["confirmation"]["necessity"]["effect"]
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from sdprobe.evidence import DIRECTIONS, DirectionResult, Split, confirm_set, holm, minimal_detectable_effect
from sdprobe.evidence.stats import power as power_of
from sdprobe.isolate.candidates import CandidateSet, as_ids
from sdprobe.isolate.config import IsolationConfig
from sdprobe.isolate.search import NothingToIsolate, SearchResult, find_critical_set

log = logging.getLogger(__name__)
Search = Callable[[np.ndarray], dict[str, float]]
Confirm = Callable[[np.ndarray], dict[str, np.ndarray]]
CRITICAL, NOT_REPLICATED = "critical", "no replicable critical set"


def verdict_of(confirmation: dict[str, dict], alpha: float) -> str:
    """``critical`` when both directions have a positive confirmation effect and a Holm-adjusted p <= ``alpha``;
    otherwise ``no replicable critical set``."""
    def passes(c: dict | None) -> bool:
        p = None if c is None else c.get("p_adjusted")
        return c is not None and (c.get("effect") or 0) > 0 and p is not None and not math.isnan(p) and p <= alpha
    return CRITICAL if all(passes(confirmation.get(d)) for d in DIRECTIONS) else NOT_REPLICATED


def midpoint_bar(plateau: float, floor: float) -> float:
    """The default bar: halfway between the accuracy before (plateau) and after (floor) the collapse."""
    return (plateau + floor) / 2.0


def design(n_confirm: int, tests: int, config: IsolationConfig) -> dict:
    """The power calculation of a confirmation split of ``n_confirm`` prompts in a family of ``tests`` tests.

    Returns:
        dict: ``alpha_first`` (Holm's first-step level), ``power`` for ``config.effect``, ``mde`` (the effect found
        with ``config.power``), ``mde_images``, ``p_floor`` (``1 / (n_controls + 1)``), ``tests``.
    """
    alpha = config.alpha / max(tests, 1)
    mde = minimal_detectable_effect(n_confirm, alpha, config.power, config.discordance)
    return {"tests": tests, "alpha": config.alpha, "alpha_first": alpha, "effect": config.effect,
            "discordance": config.discordance, "n_confirm": n_confirm,
            "power": power_of(config.effect, n_confirm, alpha, config.discordance), "target_power": config.power,
            "mde": mde, "mde_images": mde * n_confirm, "p_floor": 1 / (config.confirm.n_controls + 1)}


@dataclass
class CriticalSet:
    """A weight set found on the search split, with the confirmation evidence for (or against) it.

    Attributes:
        meaning (str): the accuracy column it is claimed to carry, e.g. ``"color"``.
        candidates (CandidateSet): the window's weights, the pool of the search and of the controls.
        ids (np.ndarray): item ids of the set ``K``.
        window (dict): ``kind`` and the sweep levels ``start``/``stop`` (``s_hold``/``s_fail`` for a transition).
        bar (float): the search split's broken/intact bar.
        search_accuracy (dict[str, dict[str, float]]): per state (``hold``, ``fail``, ``removed``, ``restored``),
            the search split's accuracy per meaning. Diagnostics only.
        search (SearchResult): the search's counts and steps.
        confirm_accuracy (dict[str, dict[str, float]]): the same states on the confirmation split.
        confirmation (dict[str, DirectionResult]): necessity and sufficiency on the confirmation split.
        splits (dict[str, Split]): the search and confirmation prompts and seeds.
        design (dict): the power calculation (see :func:`design`).
    """

    meaning: str
    candidates: CandidateSet
    ids: np.ndarray
    window: dict
    bar: float
    search_accuracy: dict[str, dict[str, float]]
    search: SearchResult
    confirm_accuracy: dict[str, dict[str, float]]
    confirmation: dict[str, DirectionResult]
    splits: dict[str, Split]
    design: dict = field(default_factory=dict)

    @property
    def alpha(self) -> float:
        return float(self.design.get("alpha", 0.05))

    def _repr_html_(self) -> str:
        """How it shows itself in Jupyter (:mod:`sdprobe.report.cards`)."""
        from sdprobe.report.cards import critical_card

        return critical_card(self)

    @property
    def verdict(self) -> str:
        """``critical`` when both directions have a positive effect and pass at ``alpha`` after Holm."""
        return verdict_of({d: r.to_dict() for d, r in self.confirmation.items()}, self.alpha)

    @property
    def selectivity(self) -> dict[str, float]:
        """Confirmation-split accuracy drop of every other meaning when ``K`` is removed (small = selective)."""
        hold, removed = self.confirm_accuracy["hold"], self.confirm_accuracy["removed"]
        return {m: hold[m] - removed[m] for m in hold if m != self.meaning and m in removed}

    def indices(self) -> dict[str, torch.Tensor]:
        """``{qualified name: LongTensor of flat indices}``, ready for ``mask.override(prune=...)``."""
        return self.candidates.to_dict(self.ids)

    def where(self) -> dict[str, int]:
        """How many of the set's weights live in each ``component/role``."""
        names = [self.candidates.names[t] for t in self.candidates.tensor_of[self.ids]]
        info = self.candidates.info
        return dict(sorted(Counter(f"{info[n]['component']}/{info[n].get('role', 'other')}" for n in names).items()))

    def summary(self) -> dict:
        """The ``summary.json`` of the set: every number under the split it comes from."""
        conf = {d: r.to_dict() for d, r in self.confirmation.items()}
        return {
            "meaning": self.meaning,
            "verdict": self.verdict,
            "window": self.window,
            "n_candidates": self.candidates.n,
            "size": len(self.ids),
            "fraction_of_candidates": len(self.ids) / self.candidates.n if self.candidates.n else float("nan"),
            "where": self.where(),
            "design": self.design,
            "confirmation": {"split": "confirmation", "n_prompts": len(self.splits["confirmation"]),
                             "accuracy": self.confirm_accuracy, "selectivity": self.selectivity, **conf},
            "search": {"split": "search", "n_prompts": len(self.splits["search"]), "bar": self.bar,
                       "accuracy": self.search_accuracy, "evaluations": self.search.evaluations,
                       "candidate_groups": self.search.candidate_groups,
                       "groups_per_level": self.search.groups_per_level, "steps": self.search.steps},
        }


def _means(values: dict, meanings: Sequence[str]) -> dict[str, float]:
    return {m: float(np.nanmean(values[m])) if np.isfinite(values[m]).any() else float("nan")
            for m in meanings if m in values}


def search_set(candidates: CandidateSet, search: Search, meaning: str, config: IsolationConfig,
               meanings: Sequence[str], progress: bool = True) -> tuple[np.ndarray, float, dict, SearchResult]:
    """Find ``K`` on the search split.

    Returns:
        tuple: ``(ids, bar, accuracy per state, SearchResult)``.

    Raises:
        NothingToIsolate: the meaning does not go from intact to broken across the window on the search split.
    """
    everything, nothing = candidates.all_ids(), np.zeros(0, dtype=np.int64)
    hold_all = search(nothing)
    if meaning not in hold_all:
        raise ValueError(f"unknown meaning {meaning!r}; the evaluation measures: {', '.join(hold_all)}")
    hold, fail = _means(hold_all, meanings), _means(search(everything), meanings)
    bar = midpoint_bar(hold[meaning], fail[meaning]) if config.bar is None else config.bar
    if not hold[meaning] >= bar > fail[meaning]:
        raise NothingToIsolate(
            f"on the search split, {meaning} accuracy goes from {hold[meaning]:.3f} (window start) to "
            f"{fail[meaning]:.3f} (all {candidates.n} candidates removed); a bar of {bar:.3f} must lie in between")
    log.info("searching %s among %d candidates: accuracy %.3f -> %.3f, bar %.3f (search split)", meaning,
             candidates.n, hold[meaning], fail[meaning], bar)
    result = find_critical_set(
        candidates,
        breaks=lambda s: search(s)[meaning] < bar,
        restores=lambda s: search(np.setdiff1d(everything, s))[meaning] >= bar,
        levels=config.levels, max_evaluations=config.max_evaluations, progress=progress,
    )
    ids = as_ids(result.ids)
    accuracy = {"hold": hold, "fail": fail, "removed": _means(search(ids), meanings),
                "restored": _means(search(np.setdiff1d(everything, ids)), meanings)}
    return ids, bar, accuracy, result


def isolate_meaning(candidates: CandidateSet, search: Search, confirm: Confirm, meaning: str,
                    config: IsolationConfig, splits: dict[str, Split], window: dict, tests: int = 2,
                    meanings: Sequence[str] | None = None, progress: bool = True) -> CriticalSet:
    """Search a meaning's critical set on the search split and confirm it on the confirmation split.

    Args:
        candidates (CandidateSet): the window's weights with their prior.
        search (Callable): ``S -> {meaning: accuracy}`` on the search split (cached and logged).
        confirm (Callable): ``S -> {meaning: (N,) correctness}`` on the confirmation split (cached and logged).
        meaning (str): the accuracy key to break, e.g. ``"color"``.
        config (IsolationConfig): sizes, controls, levels.
        splits (dict[str, Split]): ``search`` and ``confirmation``; checked to be disjoint.
        window (dict): recorded with the set.
        tests (int): tests in the run's family (2 x meanings), for the design. Default: 2.
        meanings (Sequence[str] | None): meanings to report (selectivity). Default: every key of the callbacks.
        progress (bool): progress bars. Default: True.

    Returns:
        CriticalSet: with raw p-values; ``p_adjusted`` holds Holm over this set's two tests until :func:`adjust`
        corrects the run's whole family.

    Raises:
        NothingToIsolate: the window holds no collapse of the meaning on the search split.
    """
    splits["search"].check_disjoint(splits["confirmation"])
    meanings = list(meanings or search(np.zeros(0, dtype=np.int64)))
    ids, bar, search_acc, result = search_set(candidates, search, meaning, config, meanings, progress)
    everything = candidates.all_ids()

    def score(s: np.ndarray) -> np.ndarray:
        return np.asarray(confirm(s)[meaning], dtype=float)

    confirmation = confirm_set(candidates, ids, score, config.confirm, label=meaning, progress=progress,
                               level=config.alpha)
    states = {"hold": np.zeros(0, dtype=np.int64), "fail": everything, "removed": ids,
              "restored": np.setdiff1d(everything, ids)}
    confirm_acc = {k: _means(confirm(s), meanings) for k, s in states.items()}
    cs = CriticalSet(meaning, candidates, ids, window, bar, search_acc, result, confirm_acc, confirmation, splits,
                     design(len(splits["confirmation"]), tests, config))
    adjust([cs])
    return cs


def adjust(sets: Sequence[CriticalSet]) -> None:
    """Holm–Bonferroni over every (meaning x direction) test of ``sets``: fills each ``p_adjusted``."""
    tests = [r for cs in sets for r in cs.confirmation.values()]
    for r, p in zip(tests, holm([r.p_value for r in tests])):
        r.p_adjusted = p


def jaccard(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Jaccard index of two weight sets given as ``{qualified name: flat indices}`` (NaN when both are empty)."""
    sa = {(n, int(i)) for n, idx in a.items() for i in idx}
    sb = {(n, int(i)) for n, idx in b.items() for i in idx}
    union = sa | sb
    return len(sa & sb) / len(union) if union else float("nan")
