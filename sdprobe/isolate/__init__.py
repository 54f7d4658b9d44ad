"""Critical weight sets: the few weights whose removal breaks a meaning across its collapse, and the evidence.

For a meaning that collapses between sweep levels ``s_hold`` (it still holds) and ``s_fail`` (it has failed), the
candidates are the weights pruned at ``s_fail`` but not at ``s_hold``. An adaptive group-testing search
(:mod:`~sdprobe.isolate.search`) finds, on the **search split** (the run's prompts), a small set ``K`` of them
such that pruning ``mask(s_hold) ∪ K`` breaks the meaning and ``mask(s_fail) \\ K`` keeps it. The claim is then
judged on a **confirmation split** of fresh prompts and seeds (:mod:`sdprobe.evidence`): necessity and sufficiency,
each against 200 random tensor-stratified and 50 magnitude-matched controls, Holm-corrected over every test of the
run. A set is ``critical`` only when both directions pass; otherwise the verdict is ``no replicable critical set``.

Modules: ``config`` (:class:`IsolationConfig`), ``candidates`` (the universe and its tensor -> row -> weight
hierarchy), ``search`` (the pure search), ``log`` (resumable evaluation cache), ``critical`` (one meaning end to
end on two callbacks), ``evaluator`` (masks + generation + a meaning metric), ``store`` (files, the run's test
family, :func:`load_critical_set`), ``session`` (a sweep run opened for isolation: windows, search split, masks,
candidates), ``run`` (:func:`isolate`, :func:`isolate_all`), ``replicate`` (re-test a saved set file on new prompts and seeds).

Example:
    >>> from sdprobe.isolate import IsolationConfig, isolate, load_critical_set
    >>> cs = isolate("runs/te-magnitude", "color", config=IsolationConfig(n_confirm=128))
    >>> cs.verdict, cs.summary()["confirmation"]["necessity"]["effect"]
"""

from sdprobe.isolate.candidates import LEVELS, CandidateSet
from sdprobe.isolate.config import WINDOWS, IsolationConfig
from sdprobe.isolate.critical import CRITICAL, NOT_REPLICATED, CriticalSet, adjust, isolate_meaning, jaccard, midpoint_bar
from sdprobe.isolate.log import CachedEvaluator, EvaluationLog, subset_key
from sdprobe.isolate.replicate import Replication, replicate
from sdprobe.isolate.run import DesignError, IsolationReport, check_design, isolate, isolate_all
from sdprobe.isolate.session import (
    Session,
    candidates_between,
    open_session,
    resolve_window,
    run_split,
    sudden_meanings,
    window_candidates,
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
    adjust_family,
    load_critical_set,
    load_summary,
    saved_meanings,
    split_by_component,
    write_critical_set,
)

__all__ = [
    "LEVELS", "DEFAULT_LEVELS", "WINDOWS", "CandidateSet", "IsolationConfig", "CRITICAL", "NOT_REPLICATED",
    "CriticalSet", "adjust", "isolate_meaning", "jaccard", "midpoint_bar", "CachedEvaluator", "EvaluationLog",
    "subset_key", "Replication", "replicate", "DesignError", "IsolationReport", "Session", "candidates_between",
    "check_design", "isolate", "isolate_all", "open_session", "resolve_window", "run_split", "sudden_meanings",
    "window_candidates", "NothingToIsolate", "SearchBudgetExceeded", "SearchResult", "find_critical_set",
    "minimal_prefix_chain", "adjust_family", "load_critical_set", "load_summary", "saved_meanings",
    "split_by_component", "write_critical_set",
]
