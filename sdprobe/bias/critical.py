"""Bias-critical weights: a small set whose removal brings a neutral prompt's distribution to the probe's target
(uniform unless declared) while every explicit prompt keeps drawing what it states and the other groups stay put.

1. **Splits.** The target group's neutral prompts, the explicit prompts and the other groups' prompts are split
   into a search split and a confirmation split that share no seed (and, where a group has several prompts, no
   prompt): :func:`debias_splits`. The search sees only its split.
2. **Rank** every candidate weight by a first-order score (W * dscore/dW through the short differentiable sampler
   of :mod:`sdprobe.attribution`): how much removing it lowers the biased value's log-odds on neutral prompts
   (``ranking="log_odds"``, the default) or brings the head's distribution closer to the target
   (``"target_fit"``: cross-entropy to the target over all values), minus ``explicit_weight`` times how much it would lower the
   log-probability of the stated value on explicit prompts (only harm counts), minus ``other_weight`` times how
   much it would move the other groups' fit to the target (either way: they should stay put).
   The ranking only orders the candidates; what is chosen is decided by measurement. On the organism, log-odds
   ranks better: its top 8 weights halve the red share, while target_fit's first prefixes raise it (a first-order
   estimate of a cross-entropy is a poor guide there).
3. **Search**: remove the top-``k`` ranked weights for ``k = min_size`` growing by ``growth`` and measure, on the
   search split, the distance (total variation, or KL) of the target group to the target distribution, each
   explicit prompt's accuracy, and how far the other groups move. A prefix is *feasible* when every explicit
   prompt holds and no other group moves more than ``tolerance``; the chosen set is the feasible prefix that lowers
   the distance most. A set that swaps the majority for another value raises the distance and is never chosen.
4. **Confirm** on the confirmation split (:mod:`sdprobe.bias.confirm`), with equal-size random controls, and
   measure the dose-response (:mod:`sdprobe.bias.dose`).

Papers: Taylor-expansion saliency, Molchanov et al. https://arxiv.org/abs/1611.06440; the probe design follows the
Stable Bias study, Luccioni et al. https://arxiv.org/abs/2303.11408.

Example:
    >>> result = find_bias_critical(pipe, probe, classify, head, BiasSearchConfig(selectors=("text_encoder",)))
    >>> result.summary["verdict"], result.summary["confirmation"]["effect"]
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sdprobe.architecture import describe, select
from sdprobe.attribution import MeaningScore, Trajectory, TrajectoryConfig, weight_saliency
from sdprobe.bias.classify import Classifier
from sdprobe.bias.evaluate import DebiasEvaluator, DebiasSplit, other_groups
from sdprobe.bias.objective import explicit_checks, objective, shift
from sdprobe.bias.probes import BiasProbe, ProbeGroup, stated_value
from sdprobe.evidence import ConfirmConfig, Split
from sdprobe.evidence.splits import fresh_seeds
from sdprobe.generate import GenerationConfig
from sdprobe.isolate.candidates import CandidateSet
from sdprobe.prune import ProgressiveMask

log = logging.getLogger(__name__)
OBJECTIVES = ("tv", "kl")
RANKINGS = ("log_odds", "target_fit")  # how candidates are ordered before the search measures them
DOSES = (0.0, 0.25, 0.5, 0.75, 1.0)  # weights x alpha: 0 removes the set, 1 is the dense model


@dataclass(frozen=True)
class BiasSearchConfig:
    """Settings of :func:`find_bias_critical` (search, confirmation and dose-response)."""

    selectors: tuple[str, ...] = ("text_encoder",)  # candidate weights (architecture selectors)
    group: str | None = None  # the probe group to debias; None: the one whose expected share of biased_value is highest
    objective: str = "tv"  # distance of the target group to the target distribution: "tv" or "kl"
    ranking: str = "log_odds"  # first-order ranking score: "log_odds" (of biased_value) or "target_fit"
    n_images: int = 64  # search: target-group images per evaluation
    explicit_seeds: int = 4  # search: seeds per explicit prompt
    other_images: int = 32  # search: images per other group
    confirm_images: int = 96  # confirmation: target-group images
    confirm_explicit_seeds: int = 16  # confirmation: seeds per explicit prompt
    confirm_other_images: int = 64  # confirmation: images per other group
    saliency_images: int = 16  # neutral and explicit images for the ranking gradients
    explicit_weight: float = 1.0  # penalty on harm to explicit prompts in the ranking
    other_weight: float = 1.0  # penalty on moving the other groups in the ranking
    min_size: int = 2  # first set size tried
    growth: float = 1.5  # each next size is this many times the last (rounded up)
    max_size: int = 16384  # largest set size tried
    accuracy_floor: float = 0.9  # every explicit prompt keeps at least min(this, its dense accuracy), judged by a CI
    tolerance: float = 0.1  # the most the other groups' distributions may move (total variation)
    alpha: float = 0.01  # the claim "this set debiases" needs an adjusted p below this on the confirmation split
    confirm: ConfirmConfig = field(default_factory=lambda: ConfirmConfig(n_matched=0))  # controls, bootstrap
    doses: tuple[float, ...] = DOSES  # dose-response: the set's weights x alpha
    dose_controls: int = 3  # controls whose dose-response is drawn beside the set's
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)  # sampler of the ranking gradients
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # sampler of the evaluations
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {self.ranking!r}; valid: {', '.join(RANKINGS)}")
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if not self.growth > 1:
            raise ValueError(f"growth must exceed 1, got {self.growth}")
        if not 0 < self.accuracy_floor <= 1:
            raise ValueError(f"accuracy_floor must be in (0, 1], got {self.accuracy_floor}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if 1 / (self.confirm.n_controls + 1) > self.alpha:
            need = int(np.ceil(1 / self.alpha)) - 1
            raise ValueError(f"{self.confirm.n_controls} controls cannot give p < {self.alpha} (the smallest p is "
                             f"1/(n+1)); use at least {need} controls (200 by default)")
        if not 0 <= self.tolerance <= 1:
            raise ValueError(f"tolerance must be in [0, 1], got {self.tolerance}")
        bad = [d for d in self.doses if not 0 <= d <= 1]
        if bad:
            raise ValueError(f"doses must lie in [0, 1], got {bad}")
        for name in ("n_images", "explicit_seeds", "confirm_images", "confirm_explicit_seeds", "saliency_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["trajectory"], d["generation"] = self.trajectory.to_dict(), self.generation.to_dict()
        d["confirm"] = asdict(self.confirm)
        return d


@dataclass
class BiasCriticalResult:
    """A bias-critical search and its confirmation.

    Attributes:
        summary (dict): settings, search choice, confirmation evidence and verdict (``summary.json``).
        indices (dict): qualified name -> flat indices of the chosen set (empty when none was found).
        search (DataFrame): one row per evaluated prefix size (search split).
        controls (DataFrame): one row per confirmation control.
        distribution (DataFrame): confirmation shares of every value, dense and with the set removed, per group.
        explicit (DataFrame): confirmation accuracy of every explicit prompt, dense and with the set removed.
        dose (DataFrame): the distance to the target against alpha, for the set and some controls.
        splits (dict): ``search`` / ``confirmation`` :class:`DebiasSplit`.
        shapes (dict): qualified name -> tensor shape of every candidate tensor.
    """

    summary: dict
    indices: dict[str, torch.Tensor]
    search: pd.DataFrame
    controls: pd.DataFrame
    distribution: pd.DataFrame
    explicit: pd.DataFrame
    dose: pd.DataFrame
    splits: dict
    shapes: dict

    def _repr_html_(self) -> str:
        """How it shows itself in Jupyter (:mod:`sdprobe.report.cards`)."""
        from sdprobe.report.cards import debias_card

        return debias_card(self)


def target_group(probe: BiasProbe, name: str | None) -> ProbeGroup:
    """The group to debias: ``name``, or the one whose expected share of ``biased_value`` is highest."""
    if probe.biased_value is None and name is None:
        raise ValueError(f"probe {probe.name!r} names no biased_value; name the group to debias (--group)")
    if not probe.explicit:
        raise ValueError(f"probe {probe.name!r} has no explicit prompts; the search needs them to check accuracy")
    names = [g.name for g in probe.groups]
    if name is not None:
        if name not in names:
            raise ValueError(f"unknown group {name!r} of probe {probe.name!r}; valid: {', '.join(names)}")
        return probe.groups[names.index(name)]
    return max(probe.groups, key=lambda g: (g.expected or {}).get(probe.biased_value, 0.0))


def _halves(prompts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Search and confirmation prompts: alternate prompts when there are several, else the one prompt in both."""
    if len(prompts) < 2:
        return prompts, prompts
    return prompts[0::2], prompts[1::2]


def debias_splits(probe: BiasProbe, group: ProbeGroup, cfg: BiasSearchConfig,
                  exclude_seeds: set[int] = frozenset()) -> tuple[DebiasSplit, DebiasSplit]:
    """The search and confirmation splits of a debiasing search (see the module docstring).

    Seeds are drawn once, all distinct, and outside ``exclude_seeds`` (e.g. the run's own measurement seeds).
    """
    others = [g for g in probe.groups if g.name != group.name]
    sizes = {"search": (cfg.n_images, cfg.explicit_seeds, cfg.other_images),
             "confirmation": (cfg.confirm_images, cfg.confirm_explicit_seeds, cfg.confirm_other_images)}
    total = sum(t + e * len(probe.explicit) + o * len(others) for t, e, o in sizes.values())
    pool = iter(fresh_seeds(total, np.random.default_rng([cfg.seed, 17]), exclude_seeds))
    out = []
    for half, (name, (n_t, n_e, n_o)) in enumerate(sizes.items()):
        t_prompts = _halves(group.prompts)[half]
        target = Split(f"{name}/target", tuple(t_prompts[i % len(t_prompts)] for i in range(n_t)),
                       tuple(next(pool) for _ in range(n_t)))
        ex = tuple(p for p in probe.explicit for _ in range(n_e))
        explicit = Split(f"{name}/explicit", ex, tuple(next(pool) for _ in ex))
        other_prompts, other_group = [], []
        for g in others:
            gp = _halves(g.prompts)[half]
            other_prompts += [gp[i % len(gp)] for i in range(n_o)]
            other_group += [g.name] * n_o
        other = (Split(f"{name}/others", tuple(other_prompts), tuple(next(pool) for _ in other_prompts))
                 if other_prompts else None)
        out.append(DebiasSplit(name, target, explicit, tuple(stated_value(probe, p) for p in ex), other,
                               tuple(other_group)))
    out[0].check_disjoint(out[1])
    return out[0], out[1]


def rank_candidates(pipe, probe: BiasProbe, head, refs, group: ProbeGroup, cfg: BiasSearchConfig,
                    progress: bool = True) -> dict[str, torch.Tensor]:
    """Ranking score per weight: higher = removing it brings the neutral distribution closer to the target while
    sparing explicit prompts and leaving the other groups where they are. Uses only search-split prompts."""
    traj = Trajectory(pipe, cfg.trajectory)
    search_prompts = _halves(group.prompts)[0]
    prompts = [search_prompts[i % len(search_prompts)] for i in range(cfg.saliency_images)]
    seeds = [cfg.seed + i for i in range(cfg.saliency_images)]
    if cfg.ranking == "target_fit":
        fit = MeaningScore(traj, head, probe.attribute, kind="target_fit", target=probe.target_shares())
        value = probe.values[0]  # ignored by target_fit
    else:
        if probe.biased_value is None:
            raise ValueError(f"ranking 'log_odds' needs the probe's biased_value; probe {probe.name!r} has none "
                             "(use ranking 'target_fit')")
        fit = MeaningScore(traj, head, probe.attribute, kind="log_odds")
        value = probe.biased_value
    # W * grad is the first-order drop of the score when the weight is removed. For target_fit a negative drop
    # brings the target closer; for the biased value's log-odds a positive drop lowers the bias
    sign = -1.0 if cfg.ranking == "target_fit" else 1.0
    s_fit = weight_saliency(fit, refs, prompts, seeds, [value] * len(prompts), kind="signed", progress=progress)
    ex = [probe.explicit[i % len(probe.explicit)] for i in range(cfg.saliency_images)]
    keep = MeaningScore(traj, head, probe.attribute, kind="log_prob")
    s_keep = weight_saliency(keep, refs, ex, [cfg.seed + 1000 + i for i in range(len(ex))],
                             [stated_value(probe, p) for p in ex], kind="signed", progress=progress)
    others = [p for g in probe.groups if g.name != group.name for p in _halves(g.prompts)[0]]
    s_other = None
    if others and cfg.other_weight:
        op = [others[i % len(others)] for i in range(cfg.saliency_images)]
        s_other = weight_saliency(fit, refs, op, [cfg.seed + 2000 + i for i in range(len(op))],
                                  [value] * len(op), kind="signed", progress=progress)

    def spread(sal: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([v.flatten() for v in sal.values()]).std().clamp_min(1e-30)

    rank = {n: sign * s_fit[n] / spread(s_fit) - cfg.explicit_weight * s_keep[n].clamp_min(0) / spread(s_keep)
            for n in s_fit}
    if s_other is not None:
        rank = {n: r - cfg.other_weight * s_other[n].abs() / spread(s_other) for n, r in rank.items()}
    return rank


def _sizes(cfg: BiasSearchConfig, n: int) -> list[int]:
    """min_size, then each size ``growth`` times the last (at least one more), up to min(max_size, n)."""
    sizes, k = [], cfg.min_size
    while k < min(cfg.max_size, n):
        sizes.append(k)
        k = max(k + 1, math.ceil(k * cfg.growth))
    return sizes + [min(cfg.max_size, n)]


def judge(ev: DebiasEvaluator, split: DebiasSplit, ids: np.ndarray, probe: BiasProbe, cfg: BiasSearchConfig,
          constraints: bool = True) -> dict:
    """The objective (and, with ``constraints``, explicit checks and other groups' shifts) of removing ``ids``."""
    target = probe.target_shares()
    empty = np.zeros(0, dtype=np.int64)
    before, after = ev.labels(split, "target", empty), ev.labels(split, "target", ids)
    row = {"objective": objective(after, probe.values, target, cfg.objective),
           "effect": objective(before, probe.values, target, cfg.objective)
           - objective(after, probe.values, target, cfg.objective),
           **{f"share_{v}": float(np.mean([a == v for a in after if a is not None] or [np.nan]))
              for v in probe.values}}
    if not constraints:
        return row
    checks = explicit_checks(split.explicit.prompts, split.truth, ev.labels(split, "explicit", empty),
                             ev.labels(split, "explicit", ids), cfg.accuracy_floor)
    row["explicit_min_accuracy"] = min(c.accuracy for c in checks)
    row["explicit_failing"] = sum(not c.passes for c in checks)
    shifts = {g: shift(b, a, probe.values) for g, (b, a) in other_groups(ev, split, ids).items()}
    row["max_other_shift"] = max(shifts.values()) if shifts else 0.0
    row["feasible"] = bool(row["explicit_failing"] == 0 and row["max_other_shift"] <= cfg.tolerance)
    row["checks"], row["shifts"] = checks, shifts
    return row


def search_prefixes(ev: DebiasEvaluator, split: DebiasSplit, order: np.ndarray, sizes: list[int], probe: BiasProbe,
                    cfg: BiasSearchConfig, progress: bool = True) -> tuple[pd.DataFrame, int | None]:
    """Evaluate growing top-ranked prefixes on the search split; the size of the best feasible one (None if no
    feasible prefix lowers the distance)."""
    rows = []
    for k in tqdm(sizes, desc="bias search", disable=not progress):
        ids = order[:k]
        row = judge(ev, split, ids, probe, cfg, constraints=False)
        if row["effect"] > 0:  # only a prefix that helps can be chosen: check its constraints
            full = judge(ev, split, ids, probe, cfg)
            row.update({k_: v for k_, v in full.items() if k_ not in ("checks", "shifts")})
        else:
            row.update({"explicit_min_accuracy": np.nan, "explicit_failing": np.nan, "max_other_shift": np.nan,
                        "feasible": False})
        rows.append({"size": k, **row})
        if row["effect"] > 0 and row["explicit_failing"] and row["explicit_failing"] > 0:
            break  # larger prefixes of the same ranking only remove more
    table = pd.DataFrame(rows)
    ok = table[table["feasible"].astype(bool) & (table["effect"] > 0)]
    return table, (int(ok.loc[ok["effect"].idxmax(), "size"]) if len(ok) else None)


def find_bias_critical(pipe, probe: BiasProbe, classify: Classifier, head, cfg: BiasSearchConfig = BiasSearchConfig(),
                       exclude_seeds: set[int] = frozenset(), progress: bool = True) -> BiasCriticalResult:
    """Search a debiasing set on the search split and confirm it on the confirmation split.

    Args:
        pipe: the pipeline (restored exactly on return).
        probe (BiasProbe): needs explicit prompts for every value, and ``biased_value`` or ``cfg.group``.
        classify (Classifier): the probe's image classifier (measures the real distribution).
        head: differentiable head for the ranking (the organism's ``LatentProbe`` or a ``ClipHead``).
        cfg (BiasSearchConfig): settings. Default: :class:`BiasSearchConfig`.
        exclude_seeds (set[int]): seeds the splits must not use (the run's own measurement). Default: none.
        progress (bool): show progress bars. Default: ``True``.

    Returns:
        BiasCriticalResult: the chosen set with its search table and its confirmation (``summary["verdict"]`` is
        provisional until the run's family of tests is corrected, see :func:`sdprobe.bias.run.adjust_bias_family`).
    """
    group = target_group(probe, cfg.group)
    search_split, confirm_split = debias_splits(probe, group, cfg, exclude_seeds)
    refs = select(pipe, list(cfg.selectors))
    rank = rank_candidates(pipe, probe, head, refs, group, cfg, progress)
    cands = CandidateSet.from_tensors({n: torch.arange(v.numel()) for n, v in rank.items()},
                                      {r.qualified_name: tuple(r.weight.shape) for r in refs}, prior=rank,
                                      weights={r.qualified_name: r.weight for r in refs},
                                      info={r.qualified_name: {**describe(r), "module": r.module_name} for r in refs})
    order = np.argsort(-cands.prior, kind="stable")
    with ProgressiveMask(refs, {n: v.abs() for n, v in rank.items()}, max_sparsity=0.0) as mask:
        ev = DebiasEvaluator(pipe, classify, cands, mask, cfg.generation)
        return search_and_confirm(ev, cands, order, (search_split, confirm_split), probe, group, cfg, progress)


def search_and_confirm(ev, cands: CandidateSet, order: np.ndarray, splits: tuple[DebiasSplit, DebiasSplit],
                       probe: BiasProbe, group: ProbeGroup, cfg: BiasSearchConfig,
                       progress: bool = True) -> BiasCriticalResult:
    """Search the ranked prefixes on the search split, then confirm the chosen set and draw its dose-response.

    Args:
        ev: a :class:`DebiasEvaluator` (or any object with its ``labels`` and ``images``).
        cands (CandidateSet): the candidates ``order`` ranks.
        order (np.ndarray): item ids, most promising first.
        splits (tuple[DebiasSplit, DebiasSplit]): the search and confirmation splits.
        probe (BiasProbe), group (ProbeGroup): what is debiased.
        cfg (BiasSearchConfig): settings.
        progress (bool): progress bars. Default: True.
    """
    from sdprobe.bias.confirm import confirm_debias
    from sdprobe.bias.dose import dose_response

    search_split, confirm_split = splits
    search, size = search_prefixes(ev, search_split, order, _sizes(cfg, cands.n), probe, cfg, progress)
    ids = np.sort(order[:size]) if size else np.zeros(0, dtype=np.int64)
    evidence = confirm_debias(ev, cands, ids, confirm_split, probe, group, cfg, progress)
    dose = dose_response(ev, cands, ids, confirm_split, probe, cfg) if size else pd.DataFrame()
    shapes = dict(zip(cands.names, cands.shapes))
    where: dict[str, int] = {}
    for t, c in cands.per_tensor_counts(ids).items():
        key = f"{cands.info[cands.names[t]]['component']}/{cands.info[cands.names[t]].get('role', 'other')}"
        where[key] = where.get(key, 0) + c
    summary = {
        "meaning": f"bias:{probe.name}/{group.name}", "probe": probe.name, "group": group.name,
        "attribute": probe.attribute, "biased_value": probe.biased_value, "objective": cfg.objective,
        "target": dict(zip(probe.values, probe.target_shares())), "n_candidates": cands.n, "size": int(len(ids)),
        "fraction_of_candidates": len(ids) / cands.n, "where": where, "images_generated": ev.images,
        "search": {"chosen_size": size, "prefixes": len(search),
                   "effect": float(search.loc[search["size"] == size, "effect"].iloc[0]) if size else float("nan")},
        "confirmation": evidence.summary, "config": cfg.to_dict(),
        "splits": {f"{name}/{part}": split.part(part).to_dict()
                   for name, split in (("search", search_split), ("confirmation", confirm_split))
                   for part in ("target", "explicit", "others") if split.part(part) is not None},
        "shapes": {n: list(shapes[n]) for n in cands.to_dict(ids)},
    }
    log.info("bias set for %s/%s: %d weights; confirmation %s effect %.3f [%.3f, %.3f], p = %.3g over %d controls",
             probe.name, group.name, len(ids), cfg.objective, evidence.summary["effect"],
             evidence.summary["ci_low"], evidence.summary["ci_high"], evidence.summary["p_value"],
             evidence.summary["n_controls"])
    return BiasCriticalResult(summary, cands.to_dict(ids), search, evidence.controls, evidence.distribution,
                              evidence.explicit, dose, {"search": search_split, "confirmation": confirm_split},
                              shapes)
