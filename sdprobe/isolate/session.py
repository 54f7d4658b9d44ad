"""A sweep run opened for isolation: its collapse windows, its search split, its masks and candidate weights.

Example:
    >>> with open_session("runs/te-magnitude") as session:
    ...     window = resolve_window(session.run, "color")
    ...     cands, base = candidates_between(session, window["start"], window["stop"])
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import pandas as pd
import torch

from sdprobe.architecture import describe
from sdprobe.distributed import Processes, current, process_device
from sdprobe.errors import RunError
from sdprobe.evidence import Split
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.config import PRIORS
from sdprobe.runs import RunDir
from sdprobe.thresholds.table import largest

COLLAPSES = ("sudden", "gradual")  # kinds with a window to search
T = TypeVar("T")


def default_metric(run: RunDir | None = None, device: str | None = None):
    """The meaning metric a sweep run measured (e.g. ``clip-attributes`` with the run's CLIP and prompt suite), or
    the organism's oracle when the run measured none or no run is given."""
    from sdprobe.metrics.registry import meaning_metric, run_meaning_metric

    return meaning_metric("oracle") if run is None else run_meaning_metric(run.config(), device)


def suite_pool(metric, meaning: str) -> list[str] | None:
    """The prompts a confirmation split of ``meaning`` is drawn from: those of the metric's prompt suite that state
    the meaning, or None (the organism's grammar) for a metric without a listed suite."""
    suite = getattr(metric, "suite", None)
    if suite is None or not suite.prompts:
        return None
    return [p for p in suite.prompts if meaning in suite.stated(p)]


def metric_meanings(metric) -> list[str]:
    """The meaning columns a metric reads (its ``meanings`` attribute)."""
    meanings = list(getattr(metric, "meanings", ()))
    if not meanings:
        raise ValueError(f"metric {getattr(metric, 'name', metric)!r} declares no meanings; it cannot judge isolation")
    return meanings


def _all_events(run: RunDir) -> pd.DataFrame:
    """Every collapse event of ``thresholds.csv`` (a meaning may have several)."""
    table = run.thresholds()
    if table is None:
        raise RunError(f"{run.path} has no thresholds.csv yet; run `sdprobe thresholds {run.path}` first")
    return table


def _thresholds(run: RunDir) -> pd.DataFrame:
    """Each meaning's headline collapse (its largest event) from ``thresholds.csv``."""
    return largest(_all_events(run))


def sudden_meanings(run: RunDir, meanings: Sequence[str] | None = None, any_event: bool = False) -> list[str]:
    """The meanings that collapse suddenly in the run: whose largest event in ``thresholds.csv`` is ``sudden``, or
    with ``any_event`` whose events include a sudden one."""
    meanings = list(meanings or metric_meanings(default_metric(run)))
    table = _all_events(run) if any_event else _thresholds(run)
    rows = table[table["metric"].isin(meanings) & (table["kind"] == "sudden")]
    return [m for m in meanings if m in set(rows["metric"])]


def resolve_window(run: RunDir, meaning: str, window: str | tuple[float, float] = "transition") -> dict:
    """The sweep levels whose difference holds a meaning's candidates.

    Args:
        run (RunDir): a sweep run with thresholds.
        meaning (str): a metric column of ``thresholds.csv``.
        window (str | tuple[float, float]): ``"transition"`` (``s_hold``..``s_fail`` of the detected collapse,
            the meaning's largest event), ``"bracket"`` (its ``s_lo``..``s_hi``), ``"sudden"`` (``s_hold``..``s_fail``
            of the meaning's largest sudden event) or two levels. Default: ``"transition"``.

    Returns:
        dict: ``kind``, ``start``, ``stop`` (and the threshold row's ``collapse`` kind and ``threshold``).

    Raises:
        RunError: no thresholds, no row for the meaning, or (for the named kinds) no collapse of that kind.
    """
    events = _all_events(run)  # read once: the headline rows and, for "sudden", every event
    table = largest(events)
    row = table[table["metric"] == meaning]
    if row.empty:
        raise RunError(f"{run.path}/thresholds.csv has no row for {meaning!r}; rerun `sdprobe thresholds {run.path}`")
    r = row.iloc[0]
    if not isinstance(window, str):
        return {"kind": "given", "start": float(window[0]), "stop": float(window[1]),
                "collapse": str(r["kind"]), "threshold": float(r["threshold"])}
    if window == "sudden":
        sudden = events[events["kind"] == "sudden"]
        mine = sudden[sudden["metric"] == meaning]
        if mine.empty:
            have = list(dict.fromkeys(sudden["metric"]))
            raise RunError(f"{meaning} has no sudden collapse in {run.path} (its largest event: {r['kind']}); no "
                           f"sudden window to search. Meanings with one: {', '.join(have) or 'none'}; or use "
                           "--window transition for the largest event")
        r = mine.loc[mine["drop"].astype(float).idxmax()]
    info = {"collapse": str(r["kind"]), "threshold": float(r["threshold"])}
    keys = {"transition": ("s_hold", "s_fail"), "bracket": ("s_lo", "s_hi"), "sudden": ("s_hold", "s_fail")}[window]
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
    processes: Processes = field(default_factory=Processes)
    ask: Callable | None = None  # runs a MaskJob on every process (set by lead); None: here
    _scores: dict[str, torch.Tensor] | None = None

    def lead(self, main: Callable[["Session"], T]) -> T:
        """Run ``main(session)`` on the main process while the others generate their share of every evaluation.

        Inside ``main``, evaluators built with ``ask=session.ask`` hand their jobs to every process (see
        :meth:`sdprobe.distributed.Processes.lead`). With one process ``main`` simply runs here.

        Returns:
            T: what ``main`` returned, on every process.
        """
        from sdprobe.isolate.evaluator import generate_share

        def run(ask):
            self.ask = ask
            try:
                return main(self)
            finally:
                self.ask = None

        work = functools.partial(generate_share, self.pipe, self.masks, self.config.generation, self.processes)
        return self.processes.lead(run, work)

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


def run_processes(run: RunDir, pipe=None, device: str | None = None) -> Processes:
    """The processes that share a session on ``run``: those the launcher started, joined over the backend of the
    pipeline's device (``pipe``'s, else ``device``, else the sweep's)."""
    from sdprobe.sweep.run import load_config

    return current(pipe.device if pipe is not None else device or load_config(run).device)


@contextlib.contextmanager
def masks_for(pipe, sweep_config) -> Iterator[dict]:
    """The sweep's masks on ``pipe`` (calibration prompts as the sweep drew them); restored exactly on exit."""
    from sdprobe.sweep.run import calibration_prompts, progressive_masks, sweep_prompts

    calibration = calibration_prompts(sweep_config, sweep_prompts(sweep_config)[0])
    with progressive_masks(pipe, sweep_config, calibration) as masks:
        yield masks, calibration


@contextlib.contextmanager
def open_session(run_dir: Path, pipe=None, prior: str | None = None, n_search: int | None = None,
                 device: str | None = None, processes: Processes | None = None) -> Iterator[Session]:
    """Load a sweep run's pipeline and masks; all weights are restored exactly on exit.

    Args:
        run_dir (Path): a finished (or resumable) sweep run with thresholds.
        pipe: an already loaded pipeline. Default: None, load ``config["model"]`` on ``device`` (under a
            launcher, ``"cuda"`` is each process's own GPU).
        prior (str | None): ``"score"`` or ``"magnitude"``. Default: None (|W| for ``random``, else the score).
        n_search (int | None): search-split prompts, the run's first ones. Default: None (all).
        device (str | None): device for loading. Default: the run's.
        processes (Processes | None): the processes sharing the evaluations. Default: None, those the launcher
            started (one without a launcher). Every process must open the session.

    Yields:
        Session: with the masks at level 0.
    """
    from sdprobe.models import load_pipeline
    from sdprobe.provenance import verify
    from sdprobe.sweep.run import load_config

    run = RunDir.open(Path(run_dir), kind="sweep")
    config = load_config(run)
    prior = prior or ("magnitude" if config.method == "random" else "score")
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; valid: {', '.join(PRIORS)}")
    search = run_split(run, n_search)
    if pipe is None:
        pipe = load_pipeline(config.model, device=process_device(device or config.device),
                             dtype=getattr(torch, config.dtype))
    procs = processes or current(pipe.device)
    verify(run.path, pipe)  # the weights the sweep pruned, not another model's
    with masks_for(pipe, config) as (masks, calibration):
        refs = {r.qualified_name: r for m in masks.values() for r in m.refs}
        yield Session(run, config, pipe, masks, prior, search, str(pipe.device), refs, calibration, procs)


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

