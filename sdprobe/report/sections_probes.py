"""Sections of bias and attribution runs. Each builder returns a Section, or None when its table is absent."""

from __future__ import annotations

import pandas as pd

from sdprobe.report import plots_probes
from sdprobe.report.load import RunData
from sdprobe.report.tree import (
    Figure,
    ReportOptions,
    Section,
    Table,
    Text,
    fmt,
    table_from_frame,
)

DISTRIBUTION_COLUMNS = {"condition", "probe", "attribute", "value", "share"}
TOKEN_COLUMNS = {"prompt", "target", "position", "token", "attribution"}
NEURON_COLUMNS = {"component", "layer", "unit", "target", "attribution"}
SALIENCY_COLUMNS = {"meaning", "saliency", "in_critical_set"}
OVERLAP_COLUMNS = {"meaning", "k", "precision_at_k"}
VS_SPARSITY_COLUMNS = {"component", "method", "level", "metric", "value"}


def _has(df: pd.DataFrame | None, columns: set[str]) -> bool:
    return df is not None and not df.empty and columns <= set(df.columns)


def bias_sections(run: RunData, opts: ReportOptions) -> list[Section]:
    """Distributions with CIs and expected shares, bias metrics, bias vs sparsity, and bias-critical weights."""
    out = []
    dist = run.table("distribution")
    if _has(dist, DISTRIBUTION_COLUMNS):
        sec = Section("Bias distributions")
        for (probe, attribute), d in dist.groupby(["probe", "attribute"], sort=False):
            sec.add(Figure(plots_probes.bias_bars(d, f"{probe}: {attribute}", opts.dpi),
                           alt=f"distribution of {attribute} for probe {probe}",
                           caption=f"Probe {probe!s}: share of each {attribute!s} value per condition, with CIs; "
                                   "black ticks: the expected (world's) share."))
        out.append(sec)
    metrics = run.table("metrics")
    if metrics is not None and not metrics.empty:
        out.append(Section("Bias metrics").add(table_from_frame(metrics, caption="metrics.csv",
                                                                max_rows=opts.max_table_rows)))
    vs = run.table("vs_sparsity")
    if _has(vs, VS_SPARSITY_COLUMNS):
        vs = with_dense(vs, metrics)
        out.append(Section("Bias vs sparsity").add(
            Figure(plots_probes.bias_vs_sparsity(vs, opts.dpi), alt="bias metrics against sparsity",
                   caption="Bias metrics as a component is pruned, with CI bands; level 0 is the dense model.")))
    for bset in run.bias_critical:
        out.append(debias_section(bset, opts))
    return out


def with_dense(vs: pd.DataFrame, metrics: pd.DataFrame | None) -> pd.DataFrame:
    """vs_sparsity.csv with the dense model's metrics (metrics.csv, condition ``dense``) as level 0 of every line."""
    if metrics is None or not {"condition", "probe", "metric", "value"} <= set(metrics.columns) or \
            (vs["level"].astype(float) == 0).any():
        return vs
    dense = metrics[metrics["condition"].astype(str) == "dense"].drop(columns="condition")
    lines = vs[["component", "method"]].drop_duplicates()
    rows = lines.merge(dense, how="cross").assign(level=0.0)
    return pd.concat([rows[[c for c in vs.columns if c in rows.columns]], vs], ignore_index=True)


def _num(x, digits: int = 3) -> str:
    return fmt(None) if x is None or (isinstance(x, float) and x != x) else f"{float(x):.{digits}f}"


def debias_section(bset, opts: ReportOptions) -> Section:
    """One debiasing search: the verdict with its numbers (all from the confirmation split), every explicit prompt,
    the other groups' shifts and the dose-response."""
    s, c = bset.summary, bset.summary.get("confirmation", {})
    sec = Section(f"Debiasing weights: {bset.group}")
    verdict_ = s.get("verdict", "")
    reasons = s.get("reasons") or []
    sec.add(Text(f"Verdict: {verdict_}" + (f" ({'; '.join(reasons)})" if reasons else "") + ". Every number below "
                 "is from the confirmation split (prompts and seeds the search never saw).", style="note"))
    obj = s.get("objective", "tv")
    before, after = c.get("before", {}).get(obj, {}), c.get("after", {}).get(obj, {})
    rows = [["set size", f"{s.get('size', 0)} of {s.get('n_candidates', 0)} candidates"],
            [f"{obj} to the target, dense", f"{_num(before.get('value'))} [{_num(before.get('ci_low'))}, "
                                            f"{_num(before.get('ci_high'))}]"],
            [f"{obj} to the target, set removed", f"{_num(after.get('value'))} [{_num(after.get('ci_low'))}, "
                                                  f"{_num(after.get('ci_high'))}]"],
            ["effect (paired)", f"{_num(c.get('effect'))} [{_num(c.get('ci_low'))}, {_num(c.get('ci_high'))}]"],
            ["controls", f"{c.get('n_controls', 0)} random, mean effect {_num(c.get('control_mean'))}"],
            ["p (sequential)", _num(c.get("p_value"), 4)],
            [f"Holm-adjusted p (family of {s.get('family_size', 1)})", _num(s.get("p_adjusted"), 4)],
            ["explicit prompts", "all hold" if c.get("explicit_all_hold") else
             f"failing: {', '.join(c.get('explicit_failing', [])) or fmt(None)}"]]
    for g, sh in (c.get("other_shifts") or {}).items():
        rows.append([f"shift of {g} (tolerance {_num(c.get('tolerance'), 2)})",
                     f"{_num(sh.get('shift'))} [{_num(sh.get('ci_low'))}, {_num(sh.get('ci_high'))}]"])
    sec.add(Table(["quantity", "value"], rows, caption=f"{s.get('probe', '')}/{bset.group}: summary.json"))
    explicit = bset.tables.get("explicit")
    if explicit is not None and not explicit.empty:
        sec.add(table_from_frame(explicit.round(3), caption="each explicit prompt: accuracy with the set removed, "
                                 "one-sided 95% Wilson bounds, dense accuracy; passes when the upper bound reaches "
                                 "the required level", max_rows=opts.max_table_rows))
    dose = bset.tables.get("dose")
    if dose is not None and not dose.empty:
        sec.add(Figure(plots_probes.dose_curve(dose, obj, opts.dpi), alt=f"dose-response of the {bset.group} set",
                       caption="Dose-response: the set's weights x alpha (alpha 0 removes it), against equal-size "
                               "random controls scaled the same way."))
    return sec


def _pair_keys(tokens: pd.DataFrame) -> list[str]:
    """Columns that identify one attributed image: prompt and target, and the seed when the table has one."""
    return ["prompt", "target", "seed"] if "seed" in tokens else ["prompt", "target"]


def _token_rows(tokens: pd.DataFrame, limit: int) -> list[tuple[str, list[str], list[float]]]:
    rows = []
    for key, d in tokens.groupby(_pair_keys(tokens), sort=False):
        d = d.sort_values("position")
        label = f"{key[1]} | {key[0]}" + (f" | seed {key[2]}" if len(key) > 2 else "")
        rows.append((label, d["token"].astype(str).tolist(), d["attribution"].astype(float).tolist()))
        if len(rows) >= limit:
            break
    return rows


def attribution_sections(run: RunData, opts: ReportOptions) -> list[Section]:
    """Token attributions, top neurons, and how well weight saliency finds the critical sets."""
    out = []
    tokens = run.table("tokens")
    if _has(tokens, TOKEN_COLUMNS):
        sec = Section("Token attributions")
        rows = _token_rows(tokens, opts.max_token_rows)
        n_pairs = tokens.groupby(_pair_keys(tokens)).ngroups
        sec.add(Figure(plots_probes.token_heat(rows, opts.dpi), alt="token attribution heat rows",
                       caption=f"Attribution of each prompt token to the target meaning (red: positive), "
                               f"{len(rows)} of {n_pairs} prompt/target pairs."))
        if "top_token_correct" in tokens:
            per_pair = tokens.drop_duplicates(_pair_keys(tokens))
            acc = per_pair.groupby("target")["top_token_correct"].agg(["mean", "count"]).reset_index()
            sec.add(table_from_frame(acc.rename(columns={"mean": "top_token_correct", "count": "prompts"}),
                                     caption="share of prompts (and seeds) whose most attributed token names the target"))
        out.append(sec)
    neurons = run.table("neurons")
    if _has(neurons, NEURON_COLUMNS):
        out.append(Section("Neuron attributions").add(
            Figure(plots_probes.neuron_topk(neurons, opts.top_k, opts.dpi), alt="top neurons per target",
                   caption=f"The {opts.top_k} units with the largest |attribution| for each target.")))
    weights, overlap = run.table("weights"), run.table("overlap")
    if _has(weights, SALIENCY_COLUMNS) or _has(overlap, OVERLAP_COLUMNS):
        sec = Section("Saliency vs critical sets")
        if _has(overlap, OVERLAP_COLUMNS):
            sec.add(Figure(plots_probes.overlap_curves(overlap, opts.dpi), alt="precision at k of saliency",
                           caption="Share of the k most salient weights that lie in the critical set."))
            sec.add(table_from_frame(overlap, caption="overlap.csv", max_rows=opts.max_table_rows))
        if _has(weights, SALIENCY_COLUMNS):
            sec.add(Figure(plots_probes.saliency_hist(weights, opts.dpi), alt="saliency inside and outside the sets",
                           caption="Distribution of |saliency| of critical weights (red) and other candidates."))
        out.append(sec)
    if not out:
        out.append(Section("Attribution").add(Text("No attribution tables yet.", style="note")))
    return out
