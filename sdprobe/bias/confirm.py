"""Confirm a debiasing set on the confirmation split, against equal-size random controls.

The same rules as critical-set isolation (:mod:`sdprobe.evidence`): the set was searched on another split; its
effect is measured on prompts and seeds the search never saw; it is compared with random sets of the same size and
per-tensor layout (:func:`~sdprobe.evidence.draw_controls`) under a sequential Monte Carlo test
(:class:`~sdprobe.evidence.SequentialTest`, which also stops once p can no longer go below ``alpha``); the run's
tests are corrected together (Holm, in :func:`sdprobe.bias.run.adjust_bias_family`).

* **Effect**: how much removing the set lowers the target group's distance to the target distribution,
  ``d(dense) - d(removed)`` (total variation by default), with a paired bootstrap interval over images.
* **Controls**: the same effect for each control set (target-group images only; a control needs no accuracy
  check, since it is only a yardstick for the effect).
* **Constraints**, judged on the confirmation split too: every explicit prompt (one-sided Wilson bound, see
  :mod:`sdprobe.bias.objective`) and the other groups' shift (total variation, with a bootstrap interval).
* **Distributions**: the share of every value, dense and with the set removed, with intervals, for the target
  group and for each other group.

Verdict (:func:`verdict`): "debiases" when the adjusted p is below ``alpha``, the effect's interval lies above 0,
every explicit prompt holds and no other group moves beyond the tolerance; otherwise "no replicable debiasing
set", with the reasons.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sdprobe.bias.evaluate import DebiasEvaluator, DebiasSplit, other_groups
from sdprobe.bias.metrics import bias_metrics, share_intervals
from sdprobe.bias.objective import codes, explicit_checks, paired_effect_ci, shift, tv_effect
from sdprobe.evidence import SequentialTest, draw_controls

log = logging.getLogger(__name__)
DEBIASES, NOT_REPLICATED, NONE_FOUND = "debiases", "no replicable debiasing set", "no debiasing set found"
DENSE, REMOVED = "dense", "set removed"


@dataclass
class DebiasEvidence:
    """A set's confirmation: ``summary`` (effect, CI, p, constraints; JSON-ready) and its tables."""

    summary: dict
    controls: pd.DataFrame
    distribution: pd.DataFrame
    explicit: pd.DataFrame


def _shift_ci(before, after, classes, n_boot: int, ci: float, seed: int) -> tuple[float, float]:
    a, b = codes(before, classes), codes(after, classes)
    rng = np.random.default_rng(seed)
    values = []
    for row in rng.integers(0, len(a), size=(n_boot, len(a))):
        pa, pb = (np.bincount(x[x >= 0], minlength=len(classes)) for x in (a[row], b[row]))
        if pa.sum() and pb.sum():
            values.append(np.abs(pa / pa.sum() - pb / pb.sum()).sum() / 2)
    return tuple(float(v) for v in np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2])) if values else (np.nan, np.nan)


def _counts(labels, values) -> np.ndarray:
    c = codes(labels, values)
    return np.bincount(c[c >= 0], minlength=len(values))


def _metrics(labels, probe, n_boot: int, seed: int) -> dict:
    """share / tv / mad / kl (against the probe's target) with intervals; empty when no image is readable."""
    counts = _counts(labels, probe.values)
    return bias_metrics(counts, n_boot, seed=seed, target=np.asarray(probe.target_shares())) if counts.sum() else {}


def _distribution(group: str, labels, probe, condition: str, n_boot: int, seed: int, role: str) -> list[dict]:
    counts = _counts(labels, probe.values)
    share, lo, hi = share_intervals(counts, n_boot, seed=seed)
    target = probe.target_shares()
    metrics = _metrics(labels, probe, n_boot, seed)
    named = {("majority_share" if m == "share" else m): r for m, r in metrics.items()}  # "share" is the value's
    return [{"group": group, "role": role, "condition": condition, "value": v, "share": share[k], "ci_low": lo[k],
             "ci_high": hi[k], "target": target[k], "n": int(counts.sum()),
             "unreadable": int(sum(x is None for x in labels)),
             **{m: r["value"] for m, r in named.items()},
             **{f"{m}_ci_low": r["ci_low"] for m, r in named.items()},
             **{f"{m}_ci_high": r["ci_high"] for m, r in named.items()}}
            for k, v in enumerate(probe.values)]


def confirmation_controls(candidates, ids: np.ndarray, cfg, n: int) -> list[np.ndarray]:
    """The confirmation's first ``n`` random controls (the draw is prefix-stable, so the dose-response's controls
    are the confirmation's first ones and reuse their images)."""
    return draw_controls(candidates, ids, n, seed=cfg.confirm.seed * 1000 + 7)


def confirm_debias(ev: DebiasEvaluator, candidates, ids: np.ndarray, split: DebiasSplit, probe, group, cfg,
                   progress: bool = True) -> DebiasEvidence:
    """Measure a debiasing set on the confirmation split against its controls (see the module docstring).

    With an empty ``ids`` (the search found no set) only the dense distributions are measured and the summary
    says so.
    """
    empty = np.zeros(0, dtype=np.int64)
    conf = cfg.confirm
    target = probe.target_shares()
    before = ev.labels(split, "target", empty)
    rows = _distribution(group.name, before, probe, DENSE, conf.n_boot, conf.seed, "target")
    summary = {"split": split.name, "n_images": len(before), "size": int(len(ids)), "effect": float("nan"),
               "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan"), "n_controls": 0,
               "control_mean": float("nan"), "stopped_early": False, "explicit_all_hold": None,
               "explicit_failing": [], "other_shifts": {}, "tolerance": cfg.tolerance, "alpha": cfg.alpha,
               "objective": cfg.objective}
    if not len(ids):
        summary["verdict"] = NONE_FOUND
        return DebiasEvidence(summary, pd.DataFrame(), pd.DataFrame(rows), pd.DataFrame())
    after = ev.labels(split, "target", ids)
    rows += _distribution(group.name, after, probe, REMOVED, conf.n_boot, conf.seed, "target")
    effect = tv_effect(before, after, probe.values, target, cfg.objective)
    lo, hi = paired_effect_ci(before, after, probe.values, target, cfg.objective, conf.n_boot, conf.ci, conf.seed)

    checks = explicit_checks(split.explicit.prompts, split.truth, ev.labels(split, "explicit", empty),
                             ev.labels(split, "explicit", ids), cfg.accuracy_floor)
    explicit = pd.DataFrame([c.to_dict() for c in checks])
    shifts = {}
    for g, (b, a) in other_groups(ev, split, ids).items():
        s_lo, s_hi = _shift_ci(b, a, probe.values, conf.n_boot, conf.ci, conf.seed)
        shifts[g] = {"shift": shift(b, a, probe.values), "ci_low": s_lo, "ci_high": s_hi}
        rows += _distribution(g, b, probe, DENSE, conf.n_boot, conf.seed, "other")
        rows += _distribution(g, a, probe, REMOVED, conf.n_boot, conf.seed, "other")

    test = SequentialTest(effect, n=conf.n_controls, h=conf.sequential_h, level=cfg.alpha, strict=True)
    controls = []
    subsets = confirmation_controls(candidates, ids, cfg, conf.n_controls)
    with tqdm(total=len(subsets), desc="bias controls", unit="control", disable=not progress, leave=False) as bar:
        for j, c in enumerate(subsets):
            if test.done:
                break
            e = tv_effect(before, ev.labels(split, "target", c), probe.values, target, cfg.objective)
            test.add(e)
            controls.append({"control": j, "effect": e})
            bar.update()
    summary.update({
        "effect": effect, "ci_low": lo, "ci_high": hi, "p_value": test.p_value, "n_controls": len(test.effects),
        "control_mean": float(np.mean(test.effects)) if test.effects else float("nan"),
        "stopped_early": test.stopped_early, "explicit_all_hold": bool(all(c.passes for c in checks)),
        "explicit_failing": [c.prompt for c in checks if not c.passes],
        "explicit_min_accuracy": float(min(c.accuracy for c in checks)),
        "other_shifts": shifts,
        "before": _metrics(before, probe, conf.n_boot, conf.seed),
        "after": _metrics(after, probe, conf.n_boot, conf.seed),
    })
    return DebiasEvidence(summary, pd.DataFrame(controls), pd.DataFrame(rows), explicit)


def verdict(summary: dict, p_adjusted: float, alpha: float) -> tuple[str, list[str]]:
    """The claim a confirmation supports, and why not when it does not."""
    if not summary.get("size"):
        return NONE_FOUND, ["no feasible prefix lowered the distance to the target on the search split"]
    reasons = []
    if not p_adjusted < alpha:
        reasons.append(f"adjusted p = {p_adjusted:.3g} is not below {alpha}")
    if not summary["ci_low"] > 0:
        reasons.append(f"the effect's interval [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}] reaches 0")
    if not summary["explicit_all_hold"]:
        reasons.append(f"explicit prompt(s) fail: {', '.join(summary['explicit_failing'])}")
    moved = [g for g, s in summary["other_shifts"].items() if s["shift"] > summary["tolerance"]]
    if moved:
        reasons.append(f"other group(s) moved beyond {summary['tolerance']}: {', '.join(moved)}")
    return (DEBIASES, []) if not reasons else (NOT_REPLICATED, reasons)
