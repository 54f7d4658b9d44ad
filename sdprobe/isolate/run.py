"""``sdprobe isolate`` as a library call: critical sets of a sweep run, searched on the run's prompts and
confirmed on fresh ones, written to ``RUN_DIR/critical/``.

The run directory supplies the collapse window of each meaning (``thresholds.csv``: ``s_hold``/``s_fail`` of the
detected collapse, or ``s_lo``/``s_hi``), the method, components and selectors (``config.json``, rebuilt with the
same masks as the sweep), the search split (the prompts and seeds the sweep, and so the window, was chosen on) and
the generation settings. The confirmation split is drawn fresh: prompts and seeds the sweep never used. Every
evaluation is logged, so an interrupted command started again resumes without repeating one.

Example:
    >>> report = isolate_all("runs/te-magnitude")
    >>> report.sets["color"].verdict
    'no replicable critical set'
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from sdprobe.errors import RunError
from sdprobe.evidence import Split, WeightSet, confirmation_split, min_controls, required_n
from sdprobe.io import atomic_write_bytes, write_json
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.config import IsolationConfig
from sdprobe.isolate.critical import CriticalSet, design, isolate_meaning, jaccard
from sdprobe.isolate.evaluator import MaskEvaluator, mean_scores
from sdprobe.isolate.log import CachedEvaluator, EvaluationLog
from sdprobe.isolate.search import NothingToIsolate, SearchBudgetExceeded
from sdprobe.isolate.store import (
    CONFIRM_LOG,
    OVERLAPS,
    SEARCH_LOG,
    WHERE,
    adjust_family,
    load_summary,
    set_folder,
    write_critical_set,
)
from sdprobe.isolate.session import (
    Session,
    candidates_between,
    suite_pool,
    default_metric,
    metric_meanings,
    open_session,
    resolve_window,
    run_processes,
    run_split,
    sudden_meanings,
)
from sdprobe.runs import CRITICAL_DIR, RunDir, unlock_run

log = logging.getLogger(__name__)
SKIPPED = "skipped.json"  # in critical/: meanings with no set found on the search split, and why


class DesignError(RunError):
    """The requested sizes cannot give the evidence asked for (too few confirmation prompts or controls)."""



def check_design(config: IsolationConfig, tests: int) -> dict:
    """The power calculation; raise DesignError when the split or the controls cannot give the evidence asked."""
    d = design(config.n_confirm, tests, config)
    if d["power"] < config.power:
        need = required_n(config.effect, d["alpha_first"], config.power, config.discordance)
        raise DesignError(
            f"a confirmation split of {config.n_confirm} prompts has power {d['power']:.2f} for a "
            f"{config.effect:.2f} effect over {tests} tests at alpha {config.alpha}; use --confirm {need} or more "
            f"(or a larger --effect, a lower --power)")
    need = min_controls(config.alpha, tests)
    if config.confirm.n_controls < need:
        raise DesignError(f"{config.confirm.n_controls} controls cannot give p below alpha/{tests} = "
                          f"{config.alpha / tests:.4g}; use --controls {need} or more")
    return d



def _fingerprint(session: Session, cands: CandidateSet, window: dict, split: Split) -> str:
    what = {"candidates": cands.fingerprint(), "window": [window["start"], window["stop"]], "split": split.to_dict(),
            "config": session.run.config(), "device": session.device}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _set_file(session: Session, cs: CriticalSet, metric) -> WeightSet:
    from sdprobe.isolate.store import evidence_of

    shapes = {n: tuple(session.refs[n].weight.shape) for n in cs.indices()}
    swept = run_split(session.run)
    splits = {**cs.splits, "sweep": Split("sweep", swept.prompts, swept.seeds)}  # what chose the window, too
    return WeightSet(kind="critical", model=session.config.model, meaning=cs.meaning, method=session.config.method,
                     sweep=session.run.config(), window=cs.window, weights=cs.indices(), shapes=shapes,
                     splits=splits, metric=getattr(metric, "name", "metric"), evidence=evidence_of(cs.summary()),
                     verdict=cs.verdict)


def isolate_in_session(session: Session, meaning: str, config: IsolationConfig, tests: int, metric=None,
                       confirm_pool: Sequence[str] | None = None, progress: bool = True) -> CriticalSet:
    """Search, confirm and save one meaning's critical set in an open session (see :func:`isolate`)."""
    metric = metric or default_metric(session.run, session.device)
    meanings = metric_meanings(metric)
    window = resolve_window(session.run, meaning, config.window)
    cands, base = candidates_between(session, window["start"], window["stop"])
    if cands.n == 0:
        raise DesignError(f"the {window['kind']} window {window['start']}..{window['stop']} of {meaning} holds no "
                          f"candidate weights; choose a wider window (e.g. --window transition)")
    if confirm_pool is None:
        confirm_pool = suite_pool(metric, meaning)
    if session.config.prompts and confirm_pool is None:
        raise DesignError(f"{session.run.path} was swept on its own prompts; give prompts the sweep did not use for "
                          "the confirmation split (--confirm-prompts FILE)")
    everything_seen = run_split(session.run)
    confirm = confirmation_split([session.search, everything_seen], config.n_confirm, config.seed, confirm_pool)
    splits = {"search": session.search, "confirmation": confirm}
    folder = set_folder(session.run.path, meaning)
    gen = session.config.generation
    search_eval = CachedEvaluator(mean_scores(MaskEvaluator(session.pipe, session.masks, base, cands, session.search,
                                                            gen, metric, meanings, session.ask)),
                                  EvaluationLog(folder / SEARCH_LOG, _fingerprint(session, cands, window, session.search)))
    confirm_eval = CachedEvaluator(MaskEvaluator(session.pipe, session.masks, base, cands, confirm, gen, metric,
                                                 meanings, session.ask),
                                   EvaluationLog(folder / CONFIRM_LOG, _fingerprint(session, cands, window, confirm)))
    cs = isolate_meaning(cands, search_eval, confirm_eval, meaning, config, splits, window, tests, meanings, progress)
    extra = {"options": {**config.to_dict(), "prior": session.prior, "device": session.device},
             "model_evaluations": len(search_eval.store) + len(confirm_eval.store),
             "images_generated": len(search_eval.store) * len(session.search) + len(confirm_eval.store) * len(confirm),
             "fresh_evaluations": search_eval.fresh + confirm_eval.fresh}
    write_critical_set(folder, cs, _set_file(session, cs, metric), extra=extra)
    log.info("%s: wrote %s", meaning, folder)
    return cs


def _family_size(run: RunDir, wanted: Sequence[str], meanings: Sequence[str]) -> int:
    """Tests in the run's family: two per meaning isolated now or saved before."""
    from sdprobe.isolate.store import saved_meanings

    return 2 * len(set(wanted) | (set(saved_meanings(run.path)) & set(meanings)))


def isolate(run_dir: Path, meaning: str, pipe=None, config: IsolationConfig | None = None, *, metric=None,
            confirm_pool: Sequence[str] | None = None, device: str | None = None, progress: bool = True) -> CriticalSet:
    """Find a meaning's critical set on the search split, confirm it on fresh prompts and seeds, and save it.

    Args:
        run_dir (Path): the sweep run directory (with ``thresholds.csv``).
        meaning (str): a meaning of the metric (the oracle's: color, shape, position, size).
        pipe: an already loaded pipeline of the run's model. Default: None (loaded from the run's config).
        config (IsolationConfig | None): window, sizes, controls. Default: ``IsolationConfig()``.
        metric: the meaning metric (any of ``sdprobe.metrics.registry.MEANING_METRICS``). Default: None, the one
            the sweep measured (``clip-attributes`` with its CLIP and suite, or the oracle).
        confirm_pool (Sequence[str] | None): prompts for the confirmation split. Default: None, the prompts of the
            metric's suite that state the meaning, or for the grammar suite and the oracle the organism's
            grammar (required for runs swept on their own prompts).
        device (str | None): where to load the model. Default: the run's device.
        progress (bool): progress bars. Default: True.

    Returns:
        CriticalSet: also written to ``run_dir/critical/<meaning>/``; its verdict is corrected over every test
        saved in the run (``critical/tests.csv``).

    Raises:
        ValueError: an unknown meaning. RunError: no thresholds or no collapse of the meaning. DesignError: too
        few confirmation prompts or controls for the requested power. NothingToIsolate: the search split shows no
        collapse in the window.
    """
    config = config or IsolationConfig()
    run = RunDir.open(Path(run_dir), kind="sweep")
    metric = metric or default_metric(run, device)
    meanings = metric_meanings(metric)
    if meaning not in meanings:
        raise ValueError(f"unknown meaning {meaning!r}; valid: {', '.join(meanings)}, all")
    resolve_window(run, meaning, config.window)  # fail before loading the model
    tests = _family_size(run, [meaning], meanings)
    check_design(config, tests)
    with open_session(run_dir, pipe, config.prior, config.n_search, device, run_processes(run, pipe, device)) as session:
        def main(session: Session) -> CriticalSet:
            cs = isolate_in_session(session, meaning, config, tests, metric, confirm_pool, progress)
            _adjust_in_memory(run.path, {meaning: cs})
            return cs

        return session.lead(main)


@dataclass
class IsolationReport:
    """Result of :func:`isolate_all`: the sets, the meanings without one (and why), the run's test family, their
    overlaps and where they live."""

    sets: dict[str, CriticalSet]
    skipped: dict[str, str]
    tests: pd.DataFrame
    overlaps: pd.DataFrame
    where: pd.DataFrame

    def _repr_html_(self) -> str:
        """How it shows itself in Jupyter (:mod:`sdprobe.report.cards`)."""
        from sdprobe.report.cards import isolation_card

        return isolation_card(self)


def where_table(sets: dict[str, CriticalSet]) -> pd.DataFrame:
    """meaning, component, role, count: how many weights of each set live in each component and role."""
    rows = [{"meaning": m, "component": key.split("/", 1)[0], "role": key.split("/", 1)[1], "count": n}
            for m, cs in sets.items() for key, n in cs.where().items()]
    return pd.DataFrame(rows, columns=["meaning", "component", "role", "count"])


def overlap_table(sets: dict[str, CriticalSet]) -> pd.DataFrame:
    """Pairwise overlaps: meaning_a, meaning_b, size_a, size_b, intersection, jaccard, windows_overlap (False:
    the two windows share no weight, so an empty intersection holds by construction)."""
    names = list(sets)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ia, ib = sets[a].indices(), sets[b].indices()
            inter = sum(len(set(ia[n].tolist()) & set(ib[n].tolist())) for n in set(ia) & set(ib))
            wa, wb = sets[a].window, sets[b].window
            rows.append({"meaning_a": a, "meaning_b": b, "size_a": len(sets[a].ids), "size_b": len(sets[b].ids),
                         "intersection": inter, "jaccard": jaccard(ia, ib),
                         "windows_overlap": bool(wa["start"] < wb["stop"] and wb["start"] < wa["stop"])})
    return pd.DataFrame(rows, columns=["meaning_a", "meaning_b", "size_a", "size_b", "intersection", "jaccard",
                                       "windows_overlap"])


def _adjust_in_memory(run_dir: Path, sets: dict[str, CriticalSet]) -> pd.DataFrame:
    """Correct the run's whole family on disk and copy the adjusted p-values into the in-memory sets."""
    tests = adjust_family(run_dir)
    for m, cs in sets.items():
        saved = load_summary(run_dir, m)["confirmation"]
        for d, r in cs.confirmation.items():
            r.p_adjusted = float("nan") if saved[d]["p_adjusted"] is None else float(saved[d]["p_adjusted"])
    return tests


def isolate_all(run_dir: Path, meanings: Sequence[str] | None = None, pipe=None,
                config: IsolationConfig | None = None, *, metric=None, confirm_pool: Sequence[str] | None = None,
                device: str | None = None, progress: bool = True) -> IsolationReport:
    """Critical sets of several meanings (default: every meaning that collapses suddenly), one test family.

    Args:
        run_dir (Path): the sweep run directory.
        meanings (Sequence[str] | None): which meanings. Default: None, every meaning with a sudden collapse.
        The other arguments are those of :func:`isolate`.

    Returns:
        IsolationReport: also written: each set's folder, ``critical/tests.csv`` (Holm over all sets' tests),
        ``critical/overlaps.csv``, ``critical/where.csv`` and ``critical/skipped.json``.

    Raises:
        RunError: no thresholds.csv, or no meaning collapses suddenly. DesignError: sizes too small.
    """
    config = config or IsolationConfig()
    run = RunDir.open(Path(run_dir), kind="sweep")
    metric = metric or default_metric(run, device)
    known = metric_meanings(metric)
    wanted = list(meanings) if meanings else sudden_meanings(run, known, any_event=config.window == "sudden")
    for m in wanted:
        if m not in known:
            raise ValueError(f"unknown meaning {m!r}; valid: {', '.join(known)}, all")
    if not wanted:
        raise RunError(f"no meaning collapses suddenly in {run.path} (see its thresholds.csv); nothing to isolate")
    skipped = {}
    for m in wanted:
        try:
            resolve_window(run, m, config.window)
        except RunError as exc:
            skipped[m] = str(exc)
    wanted = [m for m in wanted if m not in skipped]
    if not wanted:
        raise RunError(f"nothing to isolate in {run.path}: " + "; ".join(skipped.values()))
    tests = _family_size(run, wanted, known)
    check_design(config, tests)
    procs = run_processes(run, pipe, device)
    procs.on_main(run.lock)  # isolation adds critical/ to the run: one writer at a time
    try:
        with open_session(run_dir, pipe, config.prior, config.n_search, device, procs) as session:
            return session.lead(functools.partial(_isolate_many, wanted=wanted, skipped=skipped, config=config,
                                                  tests=tests, metric=metric, confirm_pool=confirm_pool,
                                                  progress=progress))
    finally:
        if procs.is_main:
            unlock_run(run.path)


def _isolate_many(session: Session, wanted: list[str], skipped: dict[str, str], config: IsolationConfig, tests: int,
                  metric, confirm_pool, progress: bool) -> IsolationReport:
    """Isolate each wanted meaning in turn and write the run's family table (the main process of a session)."""
    sets = {}
    for m in wanted:
        try:
            sets[m] = isolate_in_session(session, m, config, tests, metric, confirm_pool, progress)
        except (NothingToIsolate, SearchBudgetExceeded, RunError) as exc:
            if isinstance(exc, DesignError):
                raise
            log.warning("%s: no set found on the search split: %s", m, exc)
            skipped[m] = str(exc)
    root = session.run.path / CRITICAL_DIR
    write_json(root / SKIPPED, skipped)
    table = _adjust_in_memory(session.run.path, sets)
    overlaps, where = overlap_table(sets), where_table(sets)
    atomic_write_bytes(root / OVERLAPS, overlaps.to_csv(index=False).encode())
    atomic_write_bytes(root / WHERE, where.to_csv(index=False).encode())
    return IsolationReport(sets, skipped, table, overlaps, where)
