"""Re-test a saved critical set on new prompts and seeds: ``sdprobe isolate --replicate FILE --model M``.

The set file (:mod:`sdprobe.evidence.setfile`) holds everything needed: the sweep configuration that rebuilds the
masks, the window, the weights, and the splits it was searched and confirmed on. A replication draws a fresh
split that shares no prompt and no seed with either, and repeats the confirmation (necessity and sufficiency, each
against fresh controls, Holm over the two).

Example:
    >>> result = replicate("reports/sets/te-magnitude-color.json", n_confirm=96, seed=7)
    >>> result.directions["necessity"].effect, result.directions["necessity"].p_adjusted
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sdprobe.evidence import (
    ConfirmConfig, DirectionResult, Split, SetFileError, check_fits, confirm_set, confirmation_split, read_set_file,
)
from sdprobe.isolate.critical import verdict_of
from sdprobe.isolate.evaluator import MaskEvaluator
from sdprobe.isolate.log import CachedEvaluator, EvaluationLog
from sdprobe.isolate.session import masks_for, suite_pool, window_candidates
from sdprobe.metrics.registry import meaning_metric

log = logging.getLogger(__name__)
DEFAULT_SEED = 1  # replication split seed; differs from the isolation default so the split is new


@dataclass
class Replication:
    """A set's confirmation on a new split: ``directions`` (necessity, sufficiency), ``split``, ``verdict``."""

    meaning: str
    model: str
    size: int
    split: Split
    directions: dict[str, DirectionResult]
    verdict: str
    alpha: float
    metric: str = "oracle"  # the metric that judged this replication

    def _repr_html_(self) -> str:
        """How it shows itself in Jupyter (:mod:`sdprobe.report.cards`)."""
        from sdprobe.report.cards import replication_card

        return replication_card(self)

    def summary(self) -> dict:
        return {"meaning": self.meaning, "model": self.model, "metric": self.metric, "size": self.size,
                "n_prompts": len(self.split),
                "verdict": self.verdict, "alpha": self.alpha, "split": "replication",
                **{d: r.to_dict() for d, r in self.directions.items()}}


def replicate(set_file: Path, model: str | None = None, pipe=None, *, n_confirm: int = 96, seed: int = DEFAULT_SEED,
              confirm: ConfirmConfig | None = None, alpha: float = 0.05, pool: Sequence[str] | None = None,
              device: str = "cpu", metric=None, progress: bool = True) -> Replication:
    """Confirm a saved set again, on prompts and seeds it has never been judged on.

    Args:
        set_file (Path): a set file (``critical/<meaning>/set.json`` or one committed under ``reports/``).
        model (str | None): the model to test (a builtin or a folder). Default: None, the set file's model.
        pipe: an already loaded pipeline instead of ``model``. Default: None.
        n_confirm (int): prompts of the new split. Default: 96.
        seed (int): seeds the split and (via ``confirm``) the controls. Default: 1.
        confirm (ConfirmConfig | None): controls and bootstrap. Default: ``ConfirmConfig(seed=seed)``.
        alpha (float): family-wise level over the two directions. Default: 0.05.
        pool (Sequence[str] | None): prompts to draw from. Default: None, the judging metric's suite (the
            prompts stating the set's meaning), or the organism's grammar.
        device (str): where to load the model. Default: ``"cpu"``.
        metric: the meaning metric that judges the set again; it may differ from the one that found it (a set
            found through CLIP judged by the oracle). Default: None, the set file's metric with its options.
        progress (bool): progress bars. Default: True.

    Raises:
        SetFileError: an unreadable set file, or a set whose tensors the model lacks (exit 2 from the CLI).
    """
    from sdprobe.evidence import holm
    from sdprobe.models import load_pipeline
    from sdprobe.sweep.config import SweepConfig

    ws = read_set_file(set_file)
    if ws.kind != "critical":
        raise SetFileError(f"{set_file} holds a {ws.kind} set; --replicate re-tests critical sets")
    model = model or ws.model
    sweep = {k: v for k, v in ws.sweep.items() if k in SweepConfig.__dataclass_fields__}
    config = replace(SweepConfig.from_dict(sweep), model=model, device=device)
    if metric is None:
        metric = meaning_metric(ws.metric, (ws.sweep.get("metric_options") or {}).get(ws.metric), device)
    if ws.meaning not in metric.meanings:
        raise SetFileError(f"{set_file} is about {ws.meaning!r}, which the {metric.name} metric does not read")
    if pipe is None:
        pipe = load_pipeline(model, device=device, dtype=getattr(torch, config.dtype))
    pool = suite_pool(metric, ws.meaning) if pool is None else pool
    split = confirmation_split(list(ws.splits.values()), n_confirm, seed, pool, name="replication")
    with masks_for(pipe, config) as (masks, _):
        refs = {r.qualified_name: r for m in masks.values() for r in m.refs}
        check_fits(ws, {n: tuple(r.weight.shape) for n, r in refs.items()}, model)
        cands, base = window_candidates(masks, config.components, refs, ws.window["start"], ws.window["stop"])
        try:
            ids = cands.from_dict(ws.qualified())
        except ValueError as exc:
            raise SetFileError(f"the set's weights are not all pruned inside its window on {model} ({exc}); "
                               f"the set was made on {ws.model}") from None
        evaluate = CachedEvaluator(MaskEvaluator(pipe, masks, base, cands, split, config.generation, metric,
                                                 [ws.meaning]), EvaluationLog(None, "replication"))
        results = confirm_set(cands, ids, lambda s: np.asarray(evaluate(s)[ws.meaning], dtype=float),
                              confirm or ConfirmConfig(seed=seed), label=ws.meaning, progress=progress,
                              level=alpha)
    for r, p in zip(results.values(), holm([r.p_value for r in results.values()])):
        r.p_adjusted = p
    verdict = verdict_of({d: r.to_dict() for d, r in results.items()}, alpha)
    return Replication(ws.meaning, model, ws.size, split, results, verdict, alpha, getattr(metric, "name", "metric"))
