"""The findings summary at the top of a report: what the runs show, in sentences built from their numbers.

Every sentence quotes a number that a later section shows in full, with its interval; nothing here is computed
that the sections do not also show. Caveats say what the numbers do not license: who judged the meanings, which
runs are controls or unfinished, and which searches found nothing.

Example:
    >>> statements, caveats = findings(runs)
    >>> statements[0]
    'te-magnitude (text_encoder, magnitude; 38 levels, 0-0.95): color gradual at 0.806 [0.790, 0.820] ...'
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdprobe.report import compute
from sdprobe.report.load import RunData
from sdprobe.report.tree import fmt, interval

CONTROL_METHODS = compute.BASELINE_METHODS  # sweeps whose thresholds are a baseline, not a finding


def _finite(x) -> bool:
    try:
        return x is not None and bool(np.isfinite(float(x)))
    except (TypeError, ValueError):
        return False


def _event(row: pd.Series) -> str:
    """``color sudden at 0.352 [0.350, 0.355] (1.000 -> 0.141)`` from a thresholds.csv row."""
    text = f"{row['metric']} {row['kind']} at {interval(row['threshold'], row.get('ci_low'), row.get('ci_high'))}"
    if _finite(row.get("dense")) and _finite(row.get("post")):
        text += f" ({fmt(float(row['dense']))} → {fmt(float(row['post']))})"
    if int(row.get("n_events", 1) or 1) > 1:
        text += f", the largest of {int(row['n_events'])} events"
    return text


def sweep_finding(run: RunData) -> str | None:
    """One sentence per sweep: the largest event of each metric, and the metrics that never collapse."""
    thresholds, results = run.table("thresholds"), run.table("results")
    if results is None:
        return None
    levels = results["level"]
    head = (f"{run.name} ({compute.scope_label(run.config)}, {run.config.get('method', '?')}; "
            f"{levels.nunique()} levels, {fmt(float(levels.min()), 2)}–{fmt(float(levels.max()), 2)})")
    if thresholds is None or "kind" not in thresholds:
        return f"{head}: no thresholds detected yet."
    largest = thresholds[thresholds["largest"].astype(str).str.lower() == "true"] if "largest" in thresholds \
        else thresholds
    order = {m: i for i, m in enumerate(compute.metric_columns(run))}
    largest = largest.assign(_order=largest["metric"].map(order).fillna(len(order))).sort_values("_order")
    is_event = [str(r["kind"]) in ("sudden", "gradual") and _finite(r.get("threshold")) for _, r in largest.iterrows()]
    events = [_event(r) for (_, r), e in zip(largest.iterrows(), is_event) if e]
    quiet = [str(m) for m, e in zip(largest["metric"], is_event) if not e]
    parts = ["; ".join(events) if events else "no metric collapses"]
    if quiet and events:
        parts.append(f"no collapse in {', '.join(quiet)}")
    return f"{head}: {'; '.join(parts)}."


def critical_findings(run: RunData) -> list[str]:
    """Each isolated meaning: the verdict, its size and the confirmation numbers; or why no set was found."""
    out = []
    for c in run.critical:
        s = c.summary
        conf = s.get("confirmation") or {}
        parts = []
        for d in ("necessity", "sufficiency"):
            r = conf.get(d)
            if isinstance(r, dict) and "effect" in r:
                parts.append(f"{d} {interval(r.get('effect'), r.get('ci_low'), r.get('ci_high'))}, "
                             f"Holm p {fmt(r.get('p_adjusted'))}")
        detail = f" ({'; '.join(parts)}; {conf.get('n_prompts', '?')} fresh prompts and seeds)" if parts else ""
        out.append(f"Critical weights for {c.meaning} in {run.name}: {s.get('verdict', 'no verdict')}, "
                   f"{s.get('size', '?')} of {s.get('n_candidates', '?')} candidates{detail}.")
    for meaning, why in sorted(run.no_set.items()):
        out.append(f"Critical weights for {meaning} in {run.name}: no replicable critical set; {why}.")
    return out


def bias_findings(run: RunData) -> list[str]:
    """Each probe's most frequent value in the dense model against the world's share, and each debiasing verdict."""
    out = []
    dist = run.table("distribution")
    if dist is not None and {"condition", "probe", "attribute", "value", "share"} <= set(dist.columns):
        dense = dist[dist["condition"].astype(str) == "dense"]
        for (probe, attribute), d in dense.groupby(["probe", "attribute"], sort=False):
            top = d.loc[d["share"].astype(float).idxmax()]
            text = (f"Bias probe {probe}: the dense model draws {attribute} {top['value']} in "
                    f"{interval(top['share'], top.get('ci_low'), top.get('ci_high'))} of {top.get('n', '?')} images")
            if _finite(top.get("expected")):
                text += f"; the world's share is {fmt(float(top['expected']))}"
            out.append(text + ".")
    for b in run.bias_critical:
        s, c = b.summary, b.summary.get("confirmation") or {}
        reasons = s.get("reasons") or []
        out.append(f"Debiasing weights for {b.group}: {s.get('verdict', 'no verdict')}, {s.get('size', '?')} weights; "
                   f"effect {interval(c.get('effect'), c.get('ci_low'), c.get('ci_high'))} on the confirmation "
                   f"split, Holm p {fmt(s.get('p_adjusted'))}" + (f" ({'; '.join(reasons)})" if reasons else "") + ".")
    return out


def attribution_findings(run: RunData) -> list[str]:
    """The share of prompts whose most attributed token names the target."""
    tokens = run.table("tokens")
    if tokens is None or "top_token_correct" not in tokens or "target" not in tokens:
        return []
    keys = [k for k in ("prompt", "target", "seed") if k in tokens]
    per = tokens.drop_duplicates(keys)
    rows = per.groupby("target")["top_token_correct"].agg(["mean", "count"])
    return [f"Attribution ({run.name}): the most attributed token names the {t} word in {fmt(float(r['mean']))} of "
            f"{int(r['count'])} prompts." for t, r in rows.iterrows()]


def caveats(runs: list[RunData]) -> list[str]:
    """What the numbers above do not license."""
    out = []
    judges = sorted({compute.judge_label(r.config) for r in runs if r.kind == "sweep"} - {"none (no meaning metric)"})
    if judges:
        out.append(f"Meanings were judged by {' and by '.join(judges)}.")
    controls = [r.name for r in runs if r.kind == "sweep" and r.config.get("method") in CONTROL_METHODS]
    if controls:
        out.append(f"{', '.join(controls)} prune at random: their thresholds are the baseline a ranking must beat, "
                   "not a finding about particular weights.")
    per_level = sorted({int(r.table("results").groupby("level").size().max()) for r in runs
                        if r.kind == "sweep" and r.table("results") is not None})
    if per_level:
        out.append(f"Curves and threshold intervals rest on {'/'.join(map(str, per_level))} images per level (the "
                   "same prompts and seeds at every level); intervals are bootstrap intervals over them.")
    if any(r.critical or r.no_set or r.bias_critical for r in runs):
        out.append("Weight sets are judged only on a confirmation split of prompts and seeds that their search never "
                   "saw, against random control sets of the same size, with Holm's correction over every test.")
    unfinished = [r.name for r in runs if r.partial]
    if unfinished:
        out.append(f"Unfinished runs ({', '.join(unfinished)}): their numbers may still change.")
    return out


def findings(runs: list[RunData]) -> tuple[list[str], list[str]]:
    """The statements and caveats of the findings summary.

    Args:
        runs (list[RunData]): every run of the report.

    Returns:
        tuple[list[str], list[str]]: statements (sweeps first, then critical sets, bias and attribution) and caveats.
    """
    statements = [s for r in runs if r.kind == "sweep" for s in [sweep_finding(r)] if s]
    statements += [s for r in runs if r.kind == "sweep" for s in critical_findings(r)]
    statements += [s for r in runs if r.kind == "bias" for s in bias_findings(r)]
    statements += [s for r in runs if r.kind == "attribution" for s in attribution_findings(r)]
    return statements, caveats(runs)
