"""Critical weight sets: the few weights whose removal breaks a meaning at its collapse threshold.

For a meaning that collapses suddenly between sweep levels ``s_lo`` and ``s_hi``, the candidates are the weights
pruned at ``s_hi`` but not at ``s_lo``. An adaptive group-testing search (:mod:`~sdprobe.isolate.search`) finds a
small set ``K`` of them such that pruning ``mask(s_lo) ∪ K`` breaks the meaning and ``mask(s_hi) \\ K`` keeps it;
random equal-size controls (:mod:`~sdprobe.isolate.controls`) give its empirical p-value, and the accuracy of the
other meanings its selectivity.

Modules: ``candidates`` (the universe and its tensor -> row -> weight hierarchy), ``search`` (the pure search),
``log`` (resumable evaluation cache), ``controls``, ``critical`` (one meaning end to end on an evaluation callback),
``evaluator`` (masks + generation + oracle), ``store`` (files and :func:`load_critical_set`), ``run`` (run
directories, :func:`isolate`, :func:`isolate_all`).

Example:
    >>> from sdprobe.isolate import isolate, load_critical_set
    >>> cs = isolate("runs/te-magnitude", "color")
    >>> with mask.override(prune=load_critical_set("runs/te-magnitude", "color")):
    ...     images = generate(pipe, prompts, seeds)
"""

from sdprobe.isolate.candidates import LEVELS, CandidateSet
from sdprobe.isolate.controls import MIN_CONTROLS, draw_controls, empirical_p_value
from sdprobe.isolate.critical import CriticalSet, isolate_meaning, jaccard, midpoint_bar
from sdprobe.isolate.log import CachedEvaluator, EvaluationLog, subset_key
from sdprobe.isolate.run import (
    IsolationReport,
    Session,
    candidates_between,
    open_session,
    collapse_bracket,
    isolate,
    isolate_all,
    sudden_meanings,
)
from sdprobe.isolate.search import (
    DEFAULT_LEVELS,
    NothingToIsolate,
    SearchBudgetExceeded,
    SearchResult,
    find_critical_set,
    minimal_prefix_chain,
)
from sdprobe.isolate.store import (
    split_by_component,
    load_critical_set,
    load_summary,
    saved_meanings,
    write_critical_set,
)

__all__ = [
    "LEVELS", "DEFAULT_LEVELS", "CandidateSet", "MIN_CONTROLS", "draw_controls", "empirical_p_value",
    "CriticalSet", "isolate_meaning", "jaccard", "midpoint_bar", "CachedEvaluator", "EvaluationLog", "subset_key",
    "IsolationReport", "Session", "candidates_between", "collapse_bracket", "isolate", "isolate_all", "open_session",
    "sudden_meanings", "NothingToIsolate",
    "SearchBudgetExceeded", "SearchResult", "find_critical_set", "minimal_prefix_chain", "load_critical_set",
    "load_summary", "saved_meanings", "split_by_component", "write_critical_set",
]
