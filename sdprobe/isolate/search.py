"""Adaptive group testing for a small critical weight set.

Given candidate weights ``U`` (pruned at ``s_hi`` but not at ``s_lo``) and a test ``breaks(S)`` (does pruning
``mask(s_lo) ∪ S`` break the meaning?), find a small ``K ⊆ U`` with ``breaks(K)``; then, if a test
``restores(S)`` (does restoring ``S`` at ``s_hi`` bring the meaning back?) is given and ``K`` does not restore,
grow ``K`` the same way until it does.

Each level is searched with QuickXplain's divide and conquer (Junker 2004, AAAI; https://swmath.org/software/28625),
the minimal-set counterpart of delta debugging (Zeller & Hildebrandt 2002, https://doi.org/10.1109/32.988498) and of
adaptive group testing (Hwang 1972, https://doi.org/10.1080/01621459.1972.10481257): groups are ordered by a cheap
prior, the ordered list is split in halves, the second half is searched with the whole first half present, then the
first half with only what the second half needed. Finding ``k`` groups among ``n`` costs about
``2 k log2(n / k) + 2 k`` tests, and far fewer when the prior puts them first. The search runs down a hierarchy
(tensors -> rows -> weights), each level inside the groups chosen by the one above.

For a monotone test the result is *irreducible*: removing any one weight from ``K`` makes ``breaks`` fail (or,
for weights added in the restore phase, makes ``restores`` fail). A noisy, non-monotone test can make a level's
QuickXplain answer fail its own test; that level is then redone with :func:`minimal_prefix_chain`, whose answer
passes by construction (each subset is tested once and its answer is remembered).

Example:
    >>> result = find_critical_set(cands, breaks=lambda ids: evaluator(ids)["color"] < 0.5)
    >>> result.ids, result.evaluations, result.candidate_groups
    (array([17, 40]), 31, 12000)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from sdprobe.errors import SdprobeError
from sdprobe.isolate.candidates import LEVELS, CandidateSet, as_ids
from sdprobe.isolate.log import subset_key

log = logging.getLogger(__name__)
DEFAULT_LEVELS = ("tensor", "row", "weight")  # coarse to fine; "column" may replace "row"
Test = Callable[[np.ndarray], bool]


class NothingToIsolate(SdprobeError):
    """The tests rule out a critical set among the candidates (e.g. pruning all of them does not break)."""


class SearchBudgetExceeded(SdprobeError):
    """The search needed more tests than allowed; logged results make a rerun with a larger budget resume."""


@dataclass
class SearchResult:
    """Outcome of :func:`find_critical_set`.

    Attributes:
        ids (np.ndarray): sorted item ids of the critical set ``K``.
        breaks (bool): ``breaks(K)``.
        restores (bool | None): ``restores(K)``; None when no restore test was given.
        evaluations (int): distinct tests made (each subset is tested once).
        candidate_groups (int): groups at the finest level, i.e. the tests one-at-a-time screening would need.
        groups_per_level (dict[str, int]): number of groups of the whole candidate set at each level.
        steps (list[dict]): per phase and level: groups searched, groups chosen, tests made.
    """

    ids: np.ndarray
    breaks: bool
    restores: bool | None
    evaluations: int
    candidate_groups: int
    groups_per_level: dict[str, int] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)


class _Tests:
    """Remembers each (test, subset) answer and counts distinct tests, within a budget."""

    def __init__(self, tests: dict[str, Test], max_evaluations: int | None, bar: tqdm):
        self.tests, self.max, self.bar = tests, max_evaluations, bar
        self.memo: dict[tuple[str, str], bool] = {}

    @property
    def count(self) -> int:
        return len(self.memo)

    def __call__(self, name: str, ids: np.ndarray) -> bool:
        key = (name, subset_key(ids))
        if key not in self.memo:
            if self.max is not None and self.count >= self.max:
                raise SearchBudgetExceeded(
                    f"the search used its budget of {self.max} tests without finishing; every result is logged, so "
                    "running it again with a larger budget resumes where it stopped"
                )
            self.memo[key] = bool(self.tests[name](as_ids(ids)))
            self.bar.update(1)
        return self.memo[key]


def _union(parts: Sequence[np.ndarray]) -> np.ndarray:
    return as_ids(np.concatenate(parts)) if len(parts) else np.zeros(0, dtype=np.int64)


def _laid_out(groups: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Groups laid end to end, and where each starts, so that the union of ``groups[a:b]`` is one slice."""
    ordered = np.concatenate(list(groups)) if len(groups) else np.zeros(0, dtype=np.int64)
    return ordered, np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)


def minimal_prefix_chain(groups: Sequence[np.ndarray], test: Callable[[np.ndarray], bool], required: np.ndarray) -> list[int]:
    """Choose groups whose union with ``required`` passes ``test``; each chosen group is necessary.

    Repeatedly finds the shortest passing prefix of the ordered groups (galloping 1, 2, 4, ... then bisecting) and
    keeps its last group, which the prefix cannot do without. Costs about ``2 log2(n)`` tests per chosen group; its
    answer passes ``test`` by construction even when the test is not monotone.

    Precondition: ``test(required ∪ all groups)`` is true (the caller checks it).

    Args:
        groups (Sequence[np.ndarray]): item-id groups, most promising first.
        test (Callable[[np.ndarray], bool]): monotone increasing in the subset (more items -> more likely true).
        required (np.ndarray): items always included.

    Returns:
        list[int]: positions of the chosen groups in ``groups``, in the order they were found (descending).

    Example:
        >>> minimal_prefix_chain([np.array([0]), np.array([1]), np.array([2])], lambda s: 2 in s, np.array([]))
        [2]
    """
    ordered, starts = _laid_out(groups)
    chosen: list[int] = []
    hi = len(groups)  # invariant: test(required ∪ chosen ∪ groups[:hi]) is true
    while True:
        base = [required] + [groups[i] for i in chosen]
        if test(_union(base)):
            return chosen
        lo, j = 0, 1  # test(base ∪ groups[:lo]) is false; gallop j = 1, 2, 4, ... below hi
        while j < hi:
            if test(_union(base + [ordered[:starts[j]]])):
                hi = j
                break
            lo, j = j, 2 * j
        while hi - lo > 1:  # bisection: the shortest passing prefix lies in (lo, hi]
            mid = (lo + hi) // 2
            if test(_union(base + [ordered[:starts[mid]]])):
                hi = mid
            else:
                lo = mid
        chosen.append(hi - 1)  # without group hi-1 the prefix fails, with it it passes
        hi -= 1


def quickxplain(groups: Sequence[np.ndarray], test: Callable[[np.ndarray], bool], required: np.ndarray) -> list[int]:
    """QuickXplain: groups whose union with ``required`` passes ``test``, each necessary for a monotone test.

    Precondition: ``test(required ∪ all groups)`` is true (the caller checks it).

    Args:
        groups (Sequence[np.ndarray]): item-id groups, most promising first.
        test (Callable[[np.ndarray], bool]): monotone increasing in the subset.
        required (np.ndarray): items always included.

    Returns:
        list[int]: positions of the chosen groups in ``groups``, ascending.

    Example:
        >>> quickxplain([np.array([0]), np.array([1]), np.array([2])], lambda s: {0, 2} <= set(s), np.array([]))
        [0, 2]
    """
    ordered, starts = _laid_out(groups)

    def search(base: np.ndarray, lo: int, hi: int, check: bool) -> list[int]:
        # invariant: test(base ∪ groups[lo:hi]) is true (for a monotone test)
        if check and test(base):
            return []
        if hi - lo == 1:
            return [lo]
        mid = (lo + hi) // 2
        need2 = search(_union([base, ordered[starts[lo]:starts[mid]]]), mid, hi, True)
        need1 = search(_union([base] + [groups[i] for i in need2]), lo, mid, bool(need2))
        return need1 + need2

    if not groups or test(_union([required])):
        return []
    return search(_union([required]), 0, len(groups), False)


def _hierarchy(cands: CandidateSet, test: Callable[[np.ndarray], bool], required: np.ndarray, universe: np.ndarray,
               levels: Sequence[str], phase: str, tests: _Tests, steps: list[dict]) -> np.ndarray:
    """Search level by level inside ``universe``; return the chosen items (without ``required``)."""
    within = universe
    for level in levels:
        groups = cands.groups(level, within)
        before = tests.count
        tests.bar.set_postfix(phase=phase, level=level, groups=len(groups))
        chosen = quickxplain(groups, test, required)
        if not test(_union([required] + [groups[i] for i in chosen])):
            log.warning("%s search, level %s: the test is not monotone here; redoing the level with the prefix chain",
                        phase, level)
            chosen = minimal_prefix_chain(groups, test, required)
        within = _union([groups[i] for i in chosen])
        steps.append({"phase": phase, "level": level, "groups": len(groups), "chosen": len(chosen),
                      "items": len(within), "evaluations": tests.count - before})
        log.info("%s search, level %s: %d of %d groups (%d weights) in %d tests", phase, level, len(chosen),
                 len(groups), len(within), tests.count - before)
    return within


def find_critical_set(candidates: CandidateSet, breaks: Test, restores: Test | None = None,
                      levels: Sequence[str] = DEFAULT_LEVELS, max_evaluations: int | None = None,
                      progress: bool = True) -> SearchResult:
    """Find a small set ``K`` of candidates whose removal breaks a meaning (and whose restoration restores it).

    Args:
        candidates (CandidateSet): the universe ``U`` with its prior.
        breaks (Callable[[np.ndarray], bool]): ``breaks(S)``: the meaning is broken with ``mask(s_lo) ∪ S``
            pruned. Must hold for ``S = U`` and fail for ``S = ∅``.
        restores (Callable[[np.ndarray], bool] | None): ``restores(S)``: the meaning is back with
            ``mask(s_hi) \\ S`` pruned. Must hold for ``S = U``. Default: None (only ``breaks`` is required).
        levels (Sequence[str]): the hierarchy, coarse to fine, from ``tensor``, ``row``, ``column``, ``weight``.
            Default: ``("tensor", "row", "weight")``.
        max_evaluations (int | None): stop with :class:`SearchBudgetExceeded` after this many tests. Default: None.
        progress (bool): show a progress bar. Default: True.

    Returns:
        SearchResult: the set, the test counts, and the per-level steps.

    Raises:
        NothingToIsolate: ``breaks(U)`` fails, ``breaks(∅)`` holds, or ``restores(U)`` fails.
        SearchBudgetExceeded: more than ``max_evaluations`` tests were needed.
    """
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise ValueError(f"unknown or missing hierarchy level(s) {bad}; valid: {', '.join(LEVELS)}")
    if candidates.n == 0:
        raise NothingToIsolate("there are no candidate weights between the two sparsity levels")
    everything, nothing = candidates.all_ids(), np.zeros(0, dtype=np.int64)
    funcs = {"breaks": breaks} if restores is None else {"breaks": breaks, "restores": restores}
    # The number of tests is known only once the search ends; with a budget, the bar counts toward it, so its ETA
    # is an upper bound.
    with tqdm(total=max_evaluations, desc="isolate (tests, budget)" if max_evaluations else "isolate", unit="test",
              disable=not progress) as bar:
        tests = _Tests(funcs, max_evaluations, bar)
        if not tests("breaks", everything):
            raise NothingToIsolate("pruning all candidate weights does not break the meaning at this bar")
        if tests("breaks", nothing):
            raise NothingToIsolate("the meaning is already broken before any candidate weight is pruned")
        steps: list[dict] = []
        ids = _hierarchy(candidates, lambda s: tests("breaks", s), nothing, everything, levels, "break", tests, steps)
        restored = None
        if restores is not None:
            restored = tests("restores", ids)
            if not restored:
                if not tests("restores", everything):
                    raise NothingToIsolate("restoring all candidate weights does not bring the meaning back")
                rest = np.setdiff1d(everything, ids)
                extra = _hierarchy(candidates, lambda s: tests("restores", s), ids, rest, levels, "restore", tests, steps)
                ids = _union([ids, extra])
                restored = tests("restores", ids)
        broken = tests("breaks", ids)
    finest = levels[-1]
    per_level = {lv: len(candidates.groups(lv)) for lv in levels}
    return SearchResult(ids=ids, breaks=broken, restores=restored, evaluations=tests.count,
                        candidate_groups=per_level[finest], groups_per_level=per_level, steps=steps)
