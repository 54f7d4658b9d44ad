"""Saliency against the critical sets of a sweep run (``critical/<meaning>/`` written by ``sdprobe isolate``).

For each meaning the pipeline is put in the state the set was found in (pruned to the set's ``s_lo``, the
candidates of ``[s_lo, s_hi)`` intact), the saliency of every candidate weight is computed for that meaning's
score, and :func:`~sdprobe.attribution.weights.compare_with_critical` measures the agreement.

Example:
    >>> weights, overlap = overlap_with_run(Path("runs/te-magnitude"), pipe, head, ["color"], prompts, seeds)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from sdprobe.attribution.score import MeaningScore
from sdprobe.attribution.trajectory import Trajectory, TrajectoryConfig
from sdprobe.attribution.weights import compare_with_critical, saliency_table, weight_saliency

TOP_PER_TENSOR = 50  # most salient weights per tensor kept in weights.csv, besides the critical ones


def overlap_with_run(run_dir: Path, pipe, head, meanings: Sequence[str], prompts: Sequence[str], seeds: Sequence[int],
                     values: Sequence[Sequence[str]] | None = None, trajectory: TrajectoryConfig = TrajectoryConfig(),
                     progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Saliency tables and overlap metrics for critical sets of a sweep run.

    Args:
        run_dir (Path): a sweep run with ``critical/<meaning>/`` folders.
        pipe: the run's pipeline (restored exactly on return).
        head: the latent head of the meaning scores.
        meanings (Sequence[str]): meanings whose sets to compare (each must be a head attribute).
        prompts (Sequence[str]), seeds (Sequence[int]): the images the saliency is summed over.
        values (Sequence[Sequence[str]] | None): per meaning, the target value of each prompt. Default: the value
            the head reads from each output.
        trajectory (TrajectoryConfig): sampler of the score. Default: :class:`TrajectoryConfig`.
        progress (bool): show progress bars. Default: ``True``.

    Returns:
        tuple[pd.DataFrame, pd.DataFrame]: ``weights.csv`` rows and ``overlap.csv`` rows.
    """
    from sdprobe.isolate.session import candidates_between, open_session
    from sdprobe.isolate.store import load_critical_set, load_summary

    tables, overlaps = [], []
    with open_session(Path(run_dir), pipe=pipe) as session:
        for j, meaning in enumerate(meanings):
            summary = load_summary(Path(run_dir), meaning)
            critical = load_critical_set(Path(run_dir), meaning)
            cands, _ = candidates_between(session, float(summary["window"]["start"]), float(summary["window"]["stop"]))
            candidates = cands.to_dict(cands.all_ids())
            refs = [session.refs[n] for n in candidates]
            score = MeaningScore(Trajectory(session.pipe, trajectory), head, meaning)
            sal = weight_saliency(score, refs, prompts, seeds, values[j] if values else None, progress=progress)
            overlaps.append({"meaning": meaning, **compare_with_critical(sal, critical, candidates)})
            tables.append(saliency_table(sal, critical, meaning, TOP_PER_TENSOR))
    return pd.concat(tables, ignore_index=True), pd.DataFrame(overlaps)
