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

import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd
import torch

from sdprobe.architecture import describe
from sdprobe.errors import RunError
from sdprobe.evidence import Split, WeightSet, confirmation_split, min_controls, required_n
from sdprobe.io import atomic_write_bytes, write_json
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.config import PRIORS, IsolationConfig
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
from sdprobe.runs import CRITICAL_DIR, RunDir

log = logging.getLogger(__name__)
SKIPPED = "skipped.json"  # in critical/: meanings with no set found on the search split, and why
COLLAPSES = ("sudden", "gradual")  # kinds with a window to search


class DesignError(RunError):
    """The requested sizes cannot give the evidence asked for (too few confirmation prompts or controls)."""


def default_metric():
    """The organism's oracle, the default meaning metric of isolation."""
    from sdprobe.metrics import OracleMetric

    return OracleMetric()


def metric_meanings(metric) -> list[str]:
    """The meaning columns a metric reads (its ``meanings`` attribute)."""
    meanings = list(getattr(metric, "meanings", ()))
    if not meanings:
        raise ValueError(f"metric {getattr(metric, 'name', metric)!r} declares no meanings; it cannot judge isolation")
    return meanings


def _thresholds(run: RunDir) -> pd.DataFrame:
    table = run.thresholds()
    if table is None:
        raise RunError(f"{run.path} has no thresholds.csv yet; run `sdprobe thresholds {run.path}` first")
    return table


def sudden_meanings(run: RunDir, meanings: Sequence[str] | None = None) -> list[str]:
    """The meanings that collapse suddenly in the run (``thresholds.csv`` kind ``sudden``)."""
    meanings = list(meanings or metric_meanings(default_metric()))
    table = _thresholds(run)
    rows = table[table["metric"].isin(meanings) & (table["kind"] == "sudden")]
    return [m for m in meanings if m in set(rows["metric"])]


def resolve_window(run: RunDir, meaning: str, window: str | tuple[float, float] = "transition") -> dict:
    """The sweep levels whose difference holds a meaning's candidates.

    Args:
        run (RunDir): a sweep run with thresholds.
        meaning (str): a metric column of ``thresholds.csv``.
        window (str | tuple[float, float]): ``"transition"`` (``s_hold``..``s_fail`` of the detected collapse),
            ``"bracket"`` (``s_lo``..``s_hi``) or two levels. Default: ``"transition"``.

    Returns:
        dict: ``kind``, ``start``, ``stop`` (and the threshold row's ``collapse`` kind and ``threshold``).

    Raises:
        RunError: no thresholds, no row for the meaning, or (for the first two kinds) no collapse of it.
    """
    table = _thresholds(run)
    row = table[table["metric"] == meaning]
    if row.empty:
        raise RunError(f"{run.path}/thresholds.csv has no row for {meaning!r}; rerun `sdprobe thresholds {run.path}`")
    r = row.iloc[0]
    info = {"collapse": str(r["kind"]), "threshold": float(r["threshold"])}
    if not isinstance(window, str):
        return {"kind": "given", "start": float(window[0]), "stop": float(window[1]), **info}
    keys = {"transition": ("s_hold", "s_fail"), "bracket": ("s_lo", "s_hi")}[window]
    start, stop = (float(r[k]) if k in r else float("nan") for k in keys)
    if r["kind"] not in COLLAPSES or math.isnan(start) or math.isnan(stop):
        have = [m for m in table.loc[table["kind"].isin(COLLAPSES), "metric"]]
        raise RunError(f"{meaning} does not collapse in {run.path} (kind: {r['kind']}); no {window} window to search. "
                       f"Meanings with a collapse: {', '.join(have) or 'none'}; or give a window of two levels")
    return {"kind": window, "start": start, "stop": stop, **info}


def run_split(run: RunDir, n: int | None = None) -> Split:
    """The run's prompts and seeds in image order (optionally only the first ``n``): the search split."""
    rows = run.results().drop_duplicates("index").sort_values("index")
    if n is not None:
        if n <= 0:
            raise ValueError(f"the search split needs at least one prompt, got {n}")
        rows = rows.head(n)
    return Split("search", tuple(rows["prompt"]), tuple(int(s) for s in rows["seed"]))


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


@dataclass
class Session:
    """A loaded sweep run with its masks entered (see :func:`open_session`)."""

    run: RunDir
    config: object  # SweepConfig
    pipe: object
    masks: dict
    prior: str
    search: Split
    device: str
    refs: dict = field(default_factory=dict)
    calibration: list[str] = field(default_factory=list)
    _scores: dict[str, torch.Tensor] | None = None

    @property
    def prompts(self) -> list[str]:
        return list(self.search.prompts)

    @property
    def seeds(self) -> list[int]:
        return list(self.search.seeds)

    def scores(self) -> dict[str, torch.Tensor]:
        """The run's pruning scores of every weight in scope, computed once from the dense weights."""
        from sdprobe.prune import make_scorer

        if self._scores is None:
            for mask in self.masks.values():
                mask.set_sparsity(0.0)  # dense, bit for bit, so the scorers see what the sweep's scorers saw
            self._scores = {}
            for mask in self.masks.values():
                scorer = make_scorer(self.config.method, self.pipe, calibration_prompts=self.calibration,
                                     seed=self.config.seed, generation=self.config.generation)
                self._scores.update({n: s.detach().cpu() for n, s in scorer.scores(mask.refs).items()})
        return self._scores


@contextlib.contextmanager
def masks_for(pipe, sweep_config) -> Iterator[dict]:
    """The sweep's masks on ``pipe`` (calibration prompts as the sweep drew them); restored exactly on exit."""
    from sdprobe.sweep.run import calibration_prompts, progressive_masks, sweep_prompts

    calibration = calibration_prompts(sweep_config, sweep_prompts(sweep_config)[0])
    with progressive_masks(pipe, sweep_config, calibration) as masks:
        yield masks, calibration


@contextlib.contextmanager
def open_session(run_dir: Path, pipe=None, prior: str | None = None, n_search: int | None = None,
                 device: str | None = None) -> Iterator[Session]:
    """Load a sweep run's pipeline and masks; all weights are restored exactly on exit.

    Args:
        run_dir (Path): a finished (or resumable) sweep run with thresholds.
        pipe: an already loaded pipeline. Default: None, load ``config["model"]`` on ``device``.
        prior (str | None): ``"score"`` or ``"magnitude"``. Default: None (|W| for ``random``, else the score).
        n_search (int | None): search-split prompts, the run's first ones. Default: None (all).
        device (str | None): device for loading. Default: the run's.

    Yields:
        Session: with the masks at level 0.
    """
    from sdprobe.models import load_pipeline
    from sdprobe.sweep.run import load_config

    run = RunDir.open(Path(run_dir), kind="sweep")
    config = load_config(run)
    prior = prior or ("magnitude" if config.method == "random" else "score")
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; valid: {', '.join(PRIORS)}")
    search = run_split(run, n_search)
    if pipe is None:
        pipe = load_pipeline(config.model, device=device or config.device, dtype=getattr(torch, config.dtype))
    with masks_for(pipe, config) as (masks, calibration):
        refs = {r.qualified_name: r for m in masks.values() for r in m.refs}
        yield Session(run, config, pipe, masks, prior, search, str(pipe.device), refs, calibration)


def window_candidates(masks: dict, plans: dict, refs: dict, start: float, stop: float,
                      scores: dict | None = None) -> tuple[CandidateSet, dict[str, float]]:
    """The weights pruned at sweep level ``stop`` but not at ``start``; leaves the masks at ``start``.

    Returns:
        tuple[CandidateSet, dict[str, float]]: the candidates with their prior (``scores``, or |W|) and original
        values, and each component's sparsity at ``start``.
    """
    base = {c: plans[c].sparsity(start) for c in masks}
    cand: dict[str, torch.Tensor] = {}
    for c, mask in masks.items():
        mask.set_sparsity(base[c])  # candidates are unpruned here, so the weights hold their original values
        cand.update({n: i.cpu() for n, i in mask.candidates(base[c], plans[c].sparsity(stop)).items()})
    weights = {n: refs[n].weight.detach().cpu() for n in cand}
    prior = scores if scores is not None else {n: w.abs() for n, w in weights.items()}
    info = {n: {**describe(refs[n]), "module": refs[n].module_name} for n in cand}
    cands = CandidateSet.from_tensors(cand, {n: tuple(refs[n].weight.shape) for n in cand}, prior=prior,
                                      weights=weights, info=info)
    return cands, base


def candidates_between(session: Session, s_lo: float, s_hi: float) -> tuple[CandidateSet, dict[str, float]]:
    """The candidate weights between two sweep levels with the session's prior; leaves the masks at ``s_lo``."""
    scores = session.scores() if session.prior == "score" else None
    return window_candidates(session.masks, session.config.components, session.refs, s_lo, s_hi, scores)


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
    metric = metric or default_metric()
    meanings = metric_meanings(metric)
    window = resolve_window(session.run, meaning, config.window)
    cands, base = candidates_between(session, window["start"], window["stop"])
    if cands.n == 0:
        raise DesignError(f"the {window['kind']} window {window['start']}..{window['stop']} of {meaning} holds no "
                          f"candidate weights; choose a wider window (e.g. --window transition)")
    if session.config.prompts and confirm_pool is None:
        raise DesignError(f"{session.run.path} was swept on its own prompts; give prompts the sweep did not use for "
                          "the confirmation split (--confirm-prompts FILE)")
    everything_seen = run_split(session.run)
    confirm = confirmation_split([session.search, everything_seen], config.n_confirm, config.seed, confirm_pool)
    splits = {"search": session.search, "confirmation": confirm}
    folder = set_folder(session.run.path, meaning)
    gen = session.config.generation
    search_eval = CachedEvaluator(mean_scores(MaskEvaluator(session.pipe, session.masks, base, cands, session.search,
                                                            gen, metric, meanings)),
                                  EvaluationLog(folder / SEARCH_LOG, _fingerprint(session, cands, window, session.search)))
    confirm_eval = CachedEvaluator(MaskEvaluator(session.pipe, session.masks, base, cands, confirm, gen, metric, meanings),
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
        metric: the meaning metric. Default: None, the organism's oracle.
        confirm_pool (Sequence[str] | None): prompts for the confirmation split. Default: None, the organism's
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
    metric = metric or default_metric()
    meanings = metric_meanings(metric)
    if meaning not in meanings:
        raise ValueError(f"unknown meaning {meaning!r}; valid: {', '.join(meanings)}, all")
    run = RunDir.open(Path(run_dir), kind="sweep")
    resolve_window(run, meaning, config.window)  # fail before loading the model
    tests = _family_size(run, [meaning], meanings)
    check_design(config, tests)
    with open_session(run_dir, pipe, config.prior, config.n_search, device) as session:
        cs = isolate_in_session(session, meaning, config, tests, metric, confirm_pool, progress)
    _adjust_in_memory(run.path, {meaning: cs})
    return cs


@dataclass
class IsolationReport:
    """Result of :func:`isolate_all`: the sets, the meanings without one (and why), the run's test family, their
    overlaps and where they live."""

    sets: dict[str, CriticalSet]
    skipped: dict[str, str]
    tests: pd.DataFrame
    overlaps: pd.DataFrame
    where: pd.DataFrame


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
    metric = metric or default_metric()
    known = metric_meanings(metric)
    run = RunDir.open(Path(run_dir), kind="sweep")
    wanted = list(meanings) if meanings else sudden_meanings(run, known)
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
    sets = {}
    with open_session(run_dir, pipe, config.prior, config.n_search, device) as session:
        for m in wanted:
            try:
                sets[m] = isolate_in_session(session, m, config, tests, metric, confirm_pool, progress)
            except (NothingToIsolate, SearchBudgetExceeded, RunError) as exc:
                if isinstance(exc, DesignError):
                    raise
                log.warning("%s: no set found on the search split: %s", m, exc)
                skipped[m] = str(exc)
    root = run.path / CRITICAL_DIR
    write_json(root / SKIPPED, skipped)
    table = _adjust_in_memory(run.path, sets)
    overlaps, where = overlap_table(sets), where_table(sets)
    atomic_write_bytes(root / OVERLAPS, overlaps.to_csv(index=False).encode())
    atomic_write_bytes(root / WHERE, where.to_csv(index=False).encode())
    return IsolationReport(sets, skipped, table, overlaps, where)
