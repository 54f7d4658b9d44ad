"""``sdprobe isolate`` as a library call: critical sets of a sweep run, written to ``RUN_DIR/critical/``.

The run directory supplies everything: the collapse bracket ``(s_lo, s_hi)`` of each meaning (``thresholds.csv``),
the method, components and selectors (``config.json``, rebuilt with the same masks as the sweep), the fixed
prompts and seeds (the results rows) and the generation settings. Each set keeps an evaluation log in its folder,
so an interrupted command started again resumes without repeating an evaluation.

Example:
    >>> sets = isolate_all("runs/te-magnitude")
    >>> sets.sets["color"].summary()["p_value"]
    0.0196
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
from sdprobe.io import atomic_write_bytes, write_json
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.isolate.critical import CriticalSet, isolate_meaning, jaccard
from sdprobe.isolate.evaluator import MaskEvaluator
from sdprobe.isolate.log import CachedEvaluator, EvaluationLog
from sdprobe.isolate.search import SearchBudgetExceeded, DEFAULT_LEVELS, NothingToIsolate
from sdprobe.isolate.store import (
    EVALUATIONS,
    OVERLAPS,
    WHERE,
    set_folder,
    write_critical_set,
)
from sdprobe.runs import CRITICAL_DIR, RunDir
from sdprobe.world import MEANINGS

log = logging.getLogger(__name__)
PRIORS = ("score", "magnitude")  # search priors: the run's pruning score, or |W|
SKIPPED = "skipped.json"  # in critical/: meanings isolate_all could not isolate, and why


def _meaning_error(meaning: str) -> None:
    if meaning not in MEANINGS:
        raise ValueError(f"unknown meaning {meaning!r}; valid: {', '.join(MEANINGS)}, all")


def _thresholds(run: RunDir) -> pd.DataFrame:
    table = run.thresholds()
    if table is None:
        raise RunError(f"{run.path} has no thresholds.csv yet; run `sdprobe thresholds {run.path}` first")
    return table


def sudden_meanings(run: RunDir) -> list[str]:
    """The meanings that collapse suddenly in the run (``thresholds.csv`` kind ``sudden``)."""
    table = _thresholds(run)
    rows = table[table["metric"].isin(MEANINGS) & (table["kind"] == "sudden")]
    return [m for m in MEANINGS if m in set(rows["metric"])]


def collapse_bracket(run: RunDir, meaning: str) -> tuple[float, float]:
    """``(s_lo, s_hi)`` of a meaning that collapses suddenly in the run.

    Raises:
        ValueError: an unknown meaning. RunError: no thresholds.csv yet, or the meaning has no sudden collapse
            (the message lists the meanings that have one).
    """
    _meaning_error(meaning)
    table = _thresholds(run)
    row = table[table["metric"] == meaning]
    if row.empty:
        raise RunError(f"{run.path}/thresholds.csv has no row for {meaning!r}; rerun `sdprobe thresholds {run.path}`")
    kind, s_lo, s_hi = row.iloc[0]["kind"], float(row.iloc[0]["s_lo"]), float(row.iloc[0]["s_hi"])
    if kind != "sudden" or math.isnan(s_lo) or math.isnan(s_hi):
        have = sudden_meanings(run)
        raise RunError(f"{meaning} does not collapse suddenly in {run.path} (kind: {kind}); nothing to isolate. "
                       f"Meanings with a sudden collapse: {', '.join(have) or 'none'}")
    return s_lo, s_hi


def run_prompts(run: RunDir, max_prompts: int | None = None) -> tuple[list[str], list[int]]:
    """The run's fixed prompts and seeds in image order (optionally only the first ``max_prompts``)."""
    table = run.results()
    rows = table.drop_duplicates("index").sort_values("index")
    if max_prompts is not None:
        if max_prompts <= 0:
            raise ValueError(f"max_prompts must be positive, got {max_prompts}")
        rows = rows.head(max_prompts)
    return rows["prompt"].tolist(), [int(s) for s in rows["seed"]]


@dataclass
class Session:
    """A loaded sweep run with its masks entered (see :func:`open_session`).

    Attributes:
        run (RunDir), config (SweepConfig), pipe: the run, its configuration and the loaded pipeline.
        masks (dict[str, ProgressiveMask]): one entered mask per pruned component, as in the sweep.
        prior (str): ``"score"`` (the run's pruning score) or ``"magnitude"`` (|W|).
        prompts (list[str]), seeds (list[int]): the run's fixed prompts and seeds.
        device (str): where the pipeline runs.
        refs (dict[str, WeightRef]): qualified name -> weight, for every weight in scope.
    """

    run: RunDir
    config: object  # SweepConfig
    pipe: object
    masks: dict
    prior: str
    prompts: list[str]
    seeds: list[int]
    device: str
    refs: dict = field(default_factory=dict)
    calibration: list[str] = field(default_factory=list)
    _scores: dict[str, torch.Tensor] | None = None  # the run's pruning scores (CPU), computed on first use

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
def open_session(run_dir: Path, pipe=None, prior: str | None = None, max_prompts: int | None = None,
                 device: str | None = None) -> Iterator[Session]:
    """Load a sweep run's pipeline and masks; all weights are restored exactly on exit.

    Args:
        run_dir (Path): a finished (or resumable) sweep run with thresholds.
        pipe: an already loaded pipeline. Default: None, load ``config["model"]`` on ``device``.
        prior (str | None): ``"score"`` (the run's pruning score) or ``"magnitude"`` (|W|). Default: None,
            ``"magnitude"`` for the ``random`` method (its scores carry no information) else ``"score"``.
        max_prompts (int | None): use only the first prompts of the run. Default: None (all).
        device (str | None): device for loading. Default: the run's.

    Yields:
        Session: with the masks at level 0.

    Example:
        >>> with open_session("runs/te-magnitude") as session:
        ...     cands, base = candidates_between(session, 0.40, 0.45)
    """
    from sdprobe.models import load_pipeline
    from sdprobe.sweep.run import calibration_prompts, load_config, progressive_masks, sweep_prompts

    run = RunDir.open(Path(run_dir), kind="sweep")
    config = load_config(run)
    prior = prior or ("magnitude" if config.method == "random" else "score")
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; valid: {', '.join(PRIORS)}")
    prompts, seeds = run_prompts(run, max_prompts)
    if pipe is None:
        device = device or config.device
        pipe = load_pipeline(config.model, device=device, dtype=getattr(torch, config.dtype))
    calibration = calibration_prompts(config, sweep_prompts(config)[0])
    with progressive_masks(pipe, config, calibration) as masks:
        refs = {r.qualified_name: r for m in masks.values() for r in m.refs}
        yield Session(run, config, pipe, masks, prior, prompts, seeds, str(pipe.device), refs, calibration)


def candidates_between(session: Session, s_lo: float, s_hi: float) -> tuple[CandidateSet, dict[str, float]]:
    """The candidate weights of a collapse bracket, with the session's prior; leaves the masks at ``s_lo``.

    Args:
        session (Session): an open session.
        s_lo (float), s_hi (float): sweep levels (each component's sparsity follows its plan's offset).

    Returns:
        tuple[CandidateSet, dict[str, float]]: the candidates (pruned at ``s_hi``, not at ``s_lo``) with their
        original values, and each component's sparsity at ``s_lo``.
    """
    plans, masks = session.config.components, session.masks
    scores = session.scores() if session.prior == "score" else None
    base = {c: plans[c].sparsity(s_lo) for c in masks}
    cand: dict[str, torch.Tensor] = {}
    for c, mask in masks.items():
        mask.set_sparsity(base[c])  # candidates are unpruned here, so the weights hold their original values
        cand.update({n: i.cpu() for n, i in mask.candidates(base[c], plans[c].sparsity(s_hi)).items()})
    refs = session.refs
    weights = {n: refs[n].weight.detach().cpu() for n in cand}
    prior = scores if scores is not None else {n: w.abs() for n, w in weights.items()}
    info = {n: {**describe(refs[n]), "module": refs[n].module_name} for n in cand}
    cands = CandidateSet.from_tensors(cand, {n: tuple(refs[n].weight.shape) for n in cand}, prior=prior,
                                      weights=weights, info=info)
    return cands, base


_candidates = candidates_between  # alias; sdprobe.attribution.critical_overlap imports this name


def _fingerprint(session: Session, cands: CandidateSet, s_lo: float, s_hi: float) -> str:
    what = {"candidates": cands.fingerprint(), "s_lo": s_lo, "s_hi": s_hi, "prompts": session.prompts,
            "seeds": session.seeds, "config": session.run.config(), "device": session.device}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def isolate_in_session(session: Session, meaning: str, bar: float | None = None, n_controls: int = 50,
                       seed: int = 0, levels: Sequence[str] = DEFAULT_LEVELS, max_evaluations: int | None = None,
                       progress: bool = True) -> CriticalSet:
    """Isolate, check and save one meaning's critical set in an open session (see :func:`isolate`)."""
    s_lo, s_hi = collapse_bracket(session.run, meaning)
    cands, base = candidates_between(session, s_lo, s_hi)
    folder = set_folder(session.run.path, meaning)
    store = EvaluationLog(folder / EVALUATIONS, _fingerprint(session, cands, s_lo, s_hi))
    evaluate = CachedEvaluator(
        MaskEvaluator(session.pipe, session.masks, base, cands, session.prompts, session.seeds,
                      session.config.generation), store)
    cs = isolate_meaning(cands, evaluate, meaning, bar=bar, n_controls=n_controls, seed=seed, levels=levels,
                         meanings=MEANINGS, max_evaluations=max_evaluations, s_lo=s_lo, s_hi=s_hi, progress=progress)
    options = {"bar": bar, "n_controls": n_controls, "seed": seed, "levels": list(levels),
               "prior": session.prior, "n_prompts": len(session.prompts),
               "device": session.device}
    extra = {"options": options, "model_evaluations": len(store), "fresh_evaluations": evaluate.fresh,
             "replayed_evaluations": evaluate.replayed}
    write_critical_set(folder, cs, extra=extra)
    log.info("%s: wrote %s", meaning, folder)
    return cs


def isolate(run_dir: Path, meaning: str, pipe=None, *, bar: float | None = None, n_controls: int = 50,
            seed: int = 0, levels: Sequence[str] = DEFAULT_LEVELS, prior: str | None = None,
            max_prompts: int | None = None, max_evaluations: int | None = None, device: str | None = None,
            progress: bool = True) -> CriticalSet:
    """Find, test against controls, and save the critical weight set of one meaning of a sweep run.

    Args:
        run_dir (Path): the sweep run directory (with ``thresholds.csv``).
        meaning (str): ``color``, ``shape``, ``position`` or ``size``; it must collapse suddenly in the run.
        pipe: an already loaded pipeline of the run's model. Default: None (loaded from the run's config).
        bar (float | None): accuracy below which the meaning is broken. Default: None, halfway between the
            accuracy at ``s_lo`` and at ``s_hi`` as measured at the start of the search.
        n_controls (int): random equal-size, equal-per-tensor controls (>= 20). Default: 50.
        seed (int): seed of the controls. Default: 0.
        levels (Sequence[str]): the search hierarchy. Default: ``("tensor", "row", "weight")``.
        prior (str | None): ``"score"`` or ``"magnitude"`` (see :func:`open_session`). Default: None.
        max_prompts (int | None): evaluate only the first prompts of the run. Default: None (all).
        max_evaluations (int | None): test budget of the search. Default: None.
        device (str | None): where to load the model. Default: the run's device.
        progress (bool): progress bars with rates and ETAs. Default: True.

    Returns:
        CriticalSet: also written to ``run_dir/critical/<meaning>/``.

    Raises:
        ValueError: unknown meaning / prior / level. RunError: no thresholds.csv, or no sudden collapse of the
        meaning. NothingToIsolate: the measured accuracies do not cross the bar between ``s_lo`` and ``s_hi``.
    """
    _meaning_error(meaning)
    collapse_bracket(RunDir.open(Path(run_dir), kind="sweep"), meaning)  # fail before loading the model
    with open_session(run_dir, pipe, prior, max_prompts, device) as session:
        return isolate_in_session(session, meaning, bar, n_controls, seed, levels, max_evaluations, progress)


@dataclass
class IsolationReport:
    """Result of :func:`isolate_all`: the sets found, the meanings skipped (with the reason), their overlaps
    and where they live."""

    sets: dict[str, CriticalSet]
    skipped: dict[str, str]
    overlaps: pd.DataFrame
    where: pd.DataFrame


def where_table(sets: dict[str, CriticalSet]) -> pd.DataFrame:
    """meaning, component, role, count: how many weights of each set live in each component and role."""
    rows = [{"meaning": m, "component": key.split("/", 1)[0], "role": key.split("/", 1)[1], "count": n}
            for m, cs in sets.items() for key, n in cs.where().items()]
    return pd.DataFrame(rows, columns=["meaning", "component", "role", "count"])


def overlap_table(sets: dict[str, CriticalSet]) -> pd.DataFrame:
    """Pairwise overlaps: meaning_a, meaning_b, size_a, size_b, intersection, jaccard."""
    names = list(sets)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ia, ib = sets[a].indices(), sets[b].indices()
            inter = sum(len(set(ia[n].tolist()) & set(ib[n].tolist())) for n in set(ia) & set(ib))
            rows.append({"meaning_a": a, "meaning_b": b, "size_a": len(sets[a].ids), "size_b": len(sets[b].ids),
                         "intersection": inter, "jaccard": jaccard(ia, ib)})
    return pd.DataFrame(rows, columns=["meaning_a", "meaning_b", "size_a", "size_b", "intersection", "jaccard"])


def isolate_all(run_dir: Path, meanings: Sequence[str] | None = None, pipe=None, *, bar: float | None = None,
                n_controls: int = 50, seed: int = 0, levels: Sequence[str] = DEFAULT_LEVELS,
                prior: str | None = None, max_prompts: int | None = None, max_evaluations: int | None = None,
                device: str | None = None, progress: bool = True) -> IsolationReport:
    """Critical sets of every meaning that collapses suddenly, their pairwise Jaccard overlaps and where they live.

    Args:
        run_dir (Path): the sweep run directory.
        meanings (Sequence[str] | None): which meanings. Default: None, every meaning with a sudden collapse.
        The other arguments are those of :func:`isolate`, applied to each meaning.

    Returns:
        IsolationReport: also written: each set's folder, ``critical/overlaps.csv``, ``critical/where.csv`` and
        ``critical/skipped.json``.

    Raises:
        RunError: no thresholds.csv, or no meaning collapses suddenly.
    """
    run = RunDir.open(Path(run_dir), kind="sweep")
    wanted = list(meanings) if meanings else sudden_meanings(run)
    for m in wanted:
        _meaning_error(m)
    if not wanted:
        raise RunError(f"no meaning collapses suddenly in {run.path} (see its thresholds.csv); nothing to isolate")
    sets, skipped = {}, {}
    with open_session(run_dir, pipe, prior, max_prompts, device) as session:
        for m in wanted:
            try:
                sets[m] = isolate_in_session(session, m, bar, n_controls, seed, levels, max_evaluations, progress)
            except (NothingToIsolate, SearchBudgetExceeded, RunError) as exc:
                log.warning("%s: not isolated: %s", m, exc)
                skipped[m] = str(exc)
    overlaps, where = overlap_table(sets), where_table(sets)
    root = run.path / CRITICAL_DIR
    atomic_write_bytes(root / OVERLAPS, overlaps.to_csv(index=False).encode())
    atomic_write_bytes(root / WHERE, where.to_csv(index=False).encode())
    write_json(root / SKIPPED, skipped)
    return IsolationReport(sets, skipped, overlaps, where)
