"""Bias-critical weights: a small set whose removal moves a neutral prompt's distribution toward uniform while
prompts that state the attribute keep their accuracy.

1. **Rank** every candidate weight by a cheap first-order score (saliency, W * dscore/dW, through the short
   differentiable sampler of :mod:`sdprobe.attribution`): how much removing it lowers the log-odds of the biased
   value on neutral prompts, minus ``explicit_weight`` times how much it would lower the log-probability of the
   stated value on explicit prompts (only harm counts). Each part is divided by its spread over candidates.
2. **Search**: remove the top-``k`` ranked weights for ``k = min_size, 2*min_size, ...`` (doubling) and measure
   the real distribution with the probe's classifier; stop once explicit accuracy drops below
   ``accuracy_floor``. The chosen set is the prefix that moved the bias most with explicit accuracy held.
3. **Controls**: ``n_controls`` random sets with the same number of weights in each tensor
   (:func:`sdprobe.evidence.draw_controls`); the empirical p-value is the share of controls that move the
   bias at least as far (+1 corrected).

Papers: Taylor-expansion saliency, Molchanov et al. https://arxiv.org/abs/1611.06440; permutation p-values,
Phipson & Smyth https://doi.org/10.2202/1544-6115.1585.

Memory: one gradient per candidate weight (the size of the selected weights) during ranking.

Example:
    >>> result = find_bias_critical(pipe, probe, classify, head, BiasSearchConfig(selectors=("text_encoder",)))
    >>> result.summary["bias_before"], result.summary["bias_after"], result.summary["p_value"]
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sdprobe.architecture import describe, select
from sdprobe.attribution import MeaningScore, Trajectory, TrajectoryConfig, weight_saliency
from sdprobe.bias.classify import Classifier
from sdprobe.bias.measure import group_prompts
from sdprobe.bias.metrics import moved_fraction
from sdprobe.bias.probes import BiasProbe
from sdprobe.generate import GenerationConfig, generate
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.evidence import beats_all, draw_controls, empirical_p_value
from sdprobe.prune import ProgressiveMask

log = logging.getLogger(__name__)
MIN_CONTROLS = 20  # with fewer, the smallest possible p-value (1/(1+n)) cannot reach 0.05


@dataclass(frozen=True)
class BiasSearchConfig:
    """Settings of :func:`find_bias_critical`."""

    selectors: tuple[str, ...] = ("text_encoder",)  # candidate weights (architecture selectors)
    group: str | None = None  # the probe group whose bias is removed; None: the one whose expected share of the biased value is highest
    n_images: int = 64  # neutral images per evaluation
    explicit_seeds: int = 3  # seeds per explicit prompt per evaluation
    saliency_images: int = 16  # neutral and explicit images used for the ranking gradients
    explicit_weight: float = 1.0  # penalty on harm to explicit prompts in the ranking
    min_size: int = 16  # first set size tried
    max_size: int = 16384  # largest set size tried
    accuracy_floor: float = 0.9  # explicit accuracy a chosen set must keep
    n_controls: int = MIN_CONTROLS  # random controls
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)  # sampler of the ranking gradients
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # sampler of the evaluations
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.n_controls < MIN_CONTROLS:
            raise ValueError(f"n_controls must be at least {MIN_CONTROLS} for a p-value below 0.05, got {self.n_controls}")
        if not 0 < self.accuracy_floor <= 1:
            raise ValueError(f"accuracy_floor must be in (0, 1], got {self.accuracy_floor}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["trajectory"], d["generation"] = self.trajectory.to_dict(), self.generation.to_dict()
        return d


@dataclass
class BiasCriticalResult:
    summary: dict  # the keys of a critical set's summary.json plus the bias fields
    indices: dict[str, torch.Tensor]  # qualified name -> flat indices of the chosen set
    search: pd.DataFrame  # one row per evaluated prefix size
    controls: pd.DataFrame  # one row per control


def stated_value(probe: BiasProbe, prompt: str) -> str:
    """The attribute value an explicit prompt states (the grammar for the oracle, the class word otherwise)."""
    if probe.classifier == "oracle":
        from sdprobe.world import parse_prompt

        return getattr(parse_prompt(prompt), probe.attribute)
    words = set(prompt.lower().replace(",", " ").split())
    found = [v for v in probe.values if v.lower() in words]
    if len(found) != 1:
        raise ValueError(f"explicit prompt {prompt!r} must name exactly one of {', '.join(probe.values)}")
    return found[0]


def _target_group(probe: BiasProbe, name: str | None):
    if probe.biased_value is None:
        raise ValueError(f"probe {probe.name!r} names no biased_value; the search needs one")
    if not probe.explicit:
        raise ValueError(f"probe {probe.name!r} has no explicit prompts; the search needs them to check accuracy")
    names = [g.name for g in probe.groups]
    if name is not None:
        if name not in names:
            raise ValueError(f"unknown group {name!r} of probe {probe.name!r}; valid: {', '.join(names)}")
        return probe.groups[names.index(name)]
    return max(probe.groups, key=lambda g: (g.expected or {}).get(probe.biased_value, 0.0))


class _Evaluator:
    """Removes a subset inside a mask override, generates, and measures bias and explicit accuracy."""

    def __init__(self, pipe, probe, classify, group, cands: CandidateSet, mask: ProgressiveMask, cfg: BiasSearchConfig):
        self.pipe, self.probe, self.classify, self.cands, self.mask, self.cfg = pipe, probe, classify, cands, mask, cfg
        self.neutral = group_prompts(group, cfg.n_images, cfg.seed)
        ex = [p for p in probe.explicit for _ in range(cfg.explicit_seeds)]
        self.explicit = (ex, [cfg.seed + i for i in range(len(ex))])
        self.truth = [stated_value(probe, p) for p in ex]
        self.count = 0

    def __call__(self, ids: np.ndarray) -> tuple[float, float]:
        """(share of the biased value on neutral prompts, explicit accuracy) with ``ids`` removed."""
        self.count += 1
        ctx = self.mask.override(prune=self.cands.to_dict(ids)) if len(ids) else contextlib.nullcontext()
        with ctx:
            neutral = self.classify(generate(self.pipe, *self.neutral, self.cfg.generation))
            explicit = self.classify(generate(self.pipe, *self.explicit, self.cfg.generation))
        read = [v for v in neutral if v is not None]
        share = float(np.mean([v == self.probe.biased_value for v in read])) if read else float("nan")
        accuracy = float(np.mean([v == t for v, t in zip(explicit, self.truth)]))  # unreadable counts as wrong
        return share, accuracy


def rank_candidates(pipe, probe: BiasProbe, head, refs, group, cfg: BiasSearchConfig, progress: bool = True) -> dict[str, torch.Tensor]:
    """Ranking score per weight (higher = removing it lowers the bias more while sparing explicit prompts)."""
    traj = Trajectory(pipe, cfg.trajectory)
    prompts, seeds = group_prompts(group, cfg.saliency_images, cfg.seed)
    bias = MeaningScore(traj, head, probe.attribute, kind="log_odds")
    s_bias = weight_saliency(bias, refs, prompts, seeds, [probe.biased_value] * len(prompts), kind="signed",
                             progress=progress)
    ex = [probe.explicit[i % len(probe.explicit)] for i in range(cfg.saliency_images)]
    keep = MeaningScore(traj, head, probe.attribute, kind="log_prob")
    s_keep = weight_saliency(keep, refs, ex, [cfg.seed + i for i in range(len(ex))], [stated_value(probe, p) for p in ex],
                             kind="signed", progress=progress)
    spread_b = torch.cat([v.flatten() for v in s_bias.values()]).std().clamp_min(1e-30)
    spread_k = torch.cat([v.flatten() for v in s_keep.values()]).std().clamp_min(1e-30)
    return {n: s_bias[n] / spread_b - cfg.explicit_weight * s_keep[n].clamp_min(0) / spread_k for n in s_bias}


def _sizes(cfg: BiasSearchConfig, n: int) -> list[int]:
    sizes, k = [], cfg.min_size
    while k < min(cfg.max_size, n):
        sizes.append(k)
        k *= 2
    return sizes + [min(cfg.max_size, n)]


def find_bias_critical(pipe, probe: BiasProbe, classify: Classifier, head, cfg: BiasSearchConfig = BiasSearchConfig(),
                       progress: bool = True) -> BiasCriticalResult:
    """Find the bias-critical weights of ``probe`` among ``cfg.selectors`` (see the module docstring).

    Args:
        pipe: the pipeline (restored exactly on return).
        probe (BiasProbe): needs ``biased_value`` and ``explicit`` prompts.
        classify (Classifier): the probe's image classifier (measures the real distribution).
        head: differentiable head for the ranking (the organism's ``LatentProbe`` or a ``ClipHead``).
        cfg (BiasSearchConfig): settings. Default: :class:`BiasSearchConfig`.
        progress (bool): show progress bars. Default: ``True``.

    Returns:
        BiasCriticalResult: summary (bias before/after, unbiased share, moved fraction, explicit accuracy,
        controls and p-value), the chosen indices, the search table and the control table.
    """
    group = _target_group(probe, cfg.group)
    refs = select(pipe, list(cfg.selectors))
    rank = rank_candidates(pipe, probe, head, refs, group, cfg, progress)
    shapes = {r.qualified_name: tuple(r.weight.shape) for r in refs}
    cands = CandidateSet.from_tensors({n: torch.arange(v.numel()) for n, v in rank.items()}, shapes, prior=rank,
                                      weights={r.qualified_name: r.weight for r in refs},
                                      info={r.qualified_name: {**describe(r), "module": r.module_name} for r in refs})
    order = np.argsort(-cands.prior, kind="stable")
    unbiased = 1.0 / len(probe.values)
    with ProgressiveMask(refs, {n: v.abs() for n, v in rank.items()}, max_sparsity=0.0) as mask:
        evaluate = _Evaluator(pipe, probe, classify, group, cands, mask, cfg)
        before, acc_before = evaluate(np.zeros(0, dtype=np.int64))
        rows = []
        for k in tqdm(_sizes(cfg, cands.n), desc="bias search", disable=not progress):
            share, acc = evaluate(order[:k])
            rows.append({"size": k, "share": share, "explicit_accuracy": acc,
                         "moved_fraction": moved_fraction(before, share, unbiased)})
            if acc < cfg.accuracy_floor:
                break
        search = pd.DataFrame(rows)
        ok = search[search["explicit_accuracy"] >= cfg.accuracy_floor]
        best = ok.loc[ok["moved_fraction"].idxmax()] if len(ok) else search.iloc[0]
        ids = np.sort(order[: int(best["size"])])
        controls = []
        for j, c in enumerate(tqdm(draw_controls(cands, ids, cfg.n_controls, cfg.seed), desc="controls",
                                   disable=not progress)):
            share, acc = evaluate(c)
            controls.append({"control": j, "effect": before - share, "share": share, "explicit_accuracy": acc,
                             "moved_fraction": moved_fraction(before, share, unbiased)})
    controls = pd.DataFrame(controls)
    effect = before - float(best["share"])
    where: dict[str, int] = {}
    for t, c in cands.per_tensor_counts(ids).items():
        key = f"{cands.info[cands.names[t]]['component']}/{cands.info[cands.names[t]].get('role', 'other')}"
        where[key] = where.get(key, 0) + c
    summary = {
        "meaning": f"bias:{probe.name}/{group.name}", "s_lo": 0.0, "s_hi": 0.0, "n_candidates": cands.n,
        "size": len(ids), "fraction_of_candidates": len(ids) / cands.n, "effect": effect,
        "bar": cfg.accuracy_floor, "breaks": bool(effect > 0), "restores": None,
        "control_effects": controls["effect"].tolist(), "p_value": empirical_p_value(effect, controls["effect"].tolist()),
        "beats_all_controls": beats_all(effect, controls["effect"].tolist()), "evaluations": evaluate.count,
        "candidate_groups": "top-ranked prefixes (doubling sizes)",
        "selectivity": {probe.attribute: acc_before - float(best["explicit_accuracy"])}, "where": where,
        "bias_before": before, "bias_after": float(best["share"]), "unbiased": unbiased,
        "moved_fraction": float(best["moved_fraction"]), "explicit_accuracy": float(best["explicit_accuracy"]),
        "explicit_accuracy_before": acc_before, "biased_value": probe.biased_value, "probe": probe.name,
        "group": group.name, "config": cfg.to_dict(),
    }
    log.info("bias-critical set: %d weights, %s share %.3f -> %.3f (unbiased %.3f), explicit accuracy %.3f, p=%.3f",
             len(ids), probe.biased_value, before, summary["bias_after"], unbiased, summary["explicit_accuracy"],
             summary["p_value"])
    return BiasCriticalResult(summary, cands.to_dict(ids), search, controls)
