"""Sections of a sweep run: configuration, curves, sample grids, layer heatmap, critical sets, method comparison.

Each builder returns a :class:`~sdprobe.report.tree.Section`, or None when the run lacks the data it needs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from sdprobe.report import compute, plots
from sdprobe.report.images import THUMBNAIL_PALETTE, compact_png
from sdprobe.report.load import RunData
from sdprobe.report.tree import (
    Figure,
    ImageGrid,
    ImageRow,
    ReportOptions,
    Section,
    Table,
    Text,
    fmt,
    interval,
    table_from_frame,
)

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THRESHOLD_COLUMNS = ("metric", "event", "largest", "kind", "threshold", "ci_low", "ci_high", "ci_method", "s_lo",
                     "s_hi", "relative_drop", "width", "notes")  # thresholds.csv columns shown (it holds more)
WEIGHT_COLUMNS = ("qualified_name", "role", "row", "col", "value", "rank", "score")  # columns of top-weight tables


def status_section(run: RunData) -> Section:
    """What a run is and how far it got; its full configuration is in the report's reproduction section."""
    sec = Section("Run")
    status = [["kind", run.kind], ["state", run.state], ["folder", str(run.path)]]
    if run.kind == "sweep":
        status.append(["pruned", compute.scope_label(run.config)])
        status.append(["meanings judged by", compute.judge_label(run.config)])
        results = run.table("results")
        if results is not None:
            status.append(["levels evaluated", str(results["level"].nunique())])
            status.append(["images per level", str(int(results.groupby("level").size().max()))])
    sec.add(Table(["", "value"], status, caption="run (config.json and environment.json: see Reproduction)"))
    for note in run.notes:
        sec.add(Text(note, style="warning"))
    return sec


def _flat_note(flat: dict[str, float]) -> str:
    if not flat:
        return ""
    return (" Not drawn, the same at every level: " + ", ".join(f"{m} = {fmt(v)}" for m, v in flat.items()) + ".")


def curves_section(run: RunData, summary: pd.DataFrame | None, opts: ReportOptions) -> Section | None:
    """Metric-vs-sparsity curves with thresholds and chance lines, and the thresholds table."""
    if summary is None or summary.empty:
        return None
    metrics = list(dict.fromkeys(summary["metric"]))
    flat = compute.flat_metrics(summary, metrics)
    drawn = [m for m in metrics if m not in flat]
    thresholds = run.table("thresholds")
    sec = Section("Metrics vs sparsity")
    if drawn:
        sec.add(Figure(plots.curves([(run.name, summary, thresholds)], drawn, opts.dpi, opts.ci,
                                    floors=compute.declared_floors(thresholds)),
                       alt=f"metrics against sparsity for {run.name}",
                       caption=f"Mean per level with a {opts.ci:.0%} bootstrap band over seeds "
                               f"({opts.n_boot} resamples); dashed lines: detected thresholds, shaded: their CI; "
                               f"dotted: chance.{_flat_note(flat)}"))
    else:
        sec.add(Text(f"Every metric is flat.{_flat_note(flat)}", style="note"))
    if thresholds is not None:
        sec.add(table_from_frame(thresholds, caption="thresholds.csv", columns=list(THRESHOLD_COLUMNS)))
    else:
        sec.add(Text("No thresholds yet (run `sdprobe thresholds`).", style="note"))
    return sec


def grid_section(run: RunData) -> Section | None:
    """The fixed sample prompts and seeds across levels: one row per level."""
    if not run.sample_images:
        return None
    rows, bad = [], []
    for level, path in run.sample_images:
        data = path.read_bytes()
        if data.startswith(PNG_MAGIC):
            rows.append(ImageRow(label=f"level {level:.4f}", png=compact_png(data, THUMBNAIL_PALETTE)))
        else:
            bad.append(path.name)
    prompts = [str(p) for p in (run.samples or {}).get("prompts", [])]
    seeds = (run.samples or {}).get("seeds", [])
    sec = Section("Sample images")
    sec.add(ImageGrid(rows=rows, columns=prompts,
                      caption="Rows: sparsity levels; columns: the fixed sample prompts and seeds. Thumbnails with "
                              f"{THUMBNAIL_PALETTE} colors; the full strips are the run's samples/<level>.png."))
    if prompts:
        sec.add(Table(["#", "prompt", "seed"],
                      [[str(i), p, fmt(seeds[i]) if i < len(seeds) else fmt(None)] for i, p in enumerate(prompts)],
                      caption="sample prompts"))
    if bad:
        sec.add(Text(f"not PNG images, left out: {', '.join(bad)}", style="warning"))
    return sec


def layers_section(run: RunData, opts: ReportOptions) -> Section | None:
    """Per-tensor sparsity across levels (layers.csv) as a heatmap."""
    layers = run.table("layers")
    if layers is None or layers.empty or not {"level", "qualified_name", "sparsity"} <= set(layers.columns):
        return None
    matrix, rows = compute.layer_matrix(layers, opts.max_heatmap_rows)
    what = "tensor" if rows == "tensor" else "component/region/block/role (numel-weighted)"
    return Section("Per-layer sparsity").add(
        Figure(plots.heatmap(matrix, f"sparsity per {what}", "sparsity", opts.dpi, vmin=0.0, vmax=1.0,
                             xlabel="level"),
               alt=f"per-layer sparsity heatmap of {run.name}", caption=f"Rows: {len(matrix)} {rows}s; columns: levels."))


def _ci(d: dict, key: str = "effect", lo: str = "ci_low", hi: str = "ci_high") -> str:
    return interval(d.get(key), d.get(lo), d.get(hi))


def _critical_rows(run: RunData) -> list[list[str]]:
    rows = []
    for c in run.critical:
        s, conf = c.summary, c.summary.get("confirmation") or {}
        w = s.get("window") or {}
        for d in ("necessity", "sufficiency"):
            r = conf.get(d)
            if not r:
                continue
            rows.append([c.meaning, str(s.get("verdict", "")), f"{w.get('kind', '')} {fmt(w.get('start'))}..{fmt(w.get('stop'))}",
                         f"{s.get('size')} / {s.get('n_candidates')}", d,
                         f"{_ci(r)} ({fmt(r.get('effect_images'))} of {r.get('n_images')})",
                         _ci(r, "fraction", "fraction_low", "fraction_high"),
                         f"{fmt(r.get('p_value'))} / {fmt(r.get('p_adjusted'))}", str(r.get("n_controls")),
                         f"{fmt(r.get('matched_p'))} ({r.get('n_matched')})"])
    return rows


def critical_section(run: RunData, opts: ReportOptions) -> Section | None:
    """Critical sets: confirmation evidence, selectivity, control distributions, where they lie, top weights; and
    the meanings whose search found no set, with the reason."""
    if not run.critical and not run.no_set:
        return None
    sec = Section("Critical weights")
    if run.no_set:
        sec.add(Table(["meaning", "verdict", "why"],
                      [[m, "no replicable critical set (none found on the search split)", why]
                       for m, why in sorted(run.no_set.items())],
                      caption="Isolations that ended without a set to confirm: nothing is claimed for these meanings."))
    if not run.critical:
        return sec
    rows = _critical_rows(run)
    if rows:
        first = run.critical[0].summary
        design = first.get("design") or {}
        sec.add(Table(["meaning", "verdict", "window", "size / candidates", "direction", "effect [95% CI] (images)",
                       "share of the collapse", "p raw / Holm", "random controls", "matched p (controls)"], rows,
                      caption=f"Confirmation split only ({(first.get('confirmation') or {}).get('n_prompts')} fresh "
                              f"prompts and seeds; the search never saw them). Necessity: accuracy lost when the set "
                              f"is removed at the window's start; sufficiency: accuracy regained when it is restored at "
                              f"its end. Holm over {design.get('tests_in_family', design.get('tests'))} tests; a set "
                              f"is critical only when both directions pass at {fmt(design.get('alpha'))}. Minimal "
                              f"detectable effect at power {fmt(design.get('target_power'))}: {fmt(design.get('mde'))}."))
    selectivity = {c.meaning: (c.summary.get("confirmation") or {}).get("selectivity", c.summary.get("selectivity"))
                   for c in run.critical}
    selectivity = {m: v for m, v in selectivity.items() if isinstance(v, dict)}
    if selectivity:
        sel = pd.DataFrame(selectivity).T
        sec.add(Table(["removed set", *map(str, sel.columns)],
                      [[str(i), *(fmt(v) for v in r)] for i, r in zip(sel.index, sel.to_numpy())],
                      caption="selectivity (confirmation split): accuracy drop of each other meaning when the set is "
                              "removed"))
    items = []
    for c in run.critical:
        if c.controls is None or "direction" not in c.controls:
            continue
        for d, r in ((c.summary.get("confirmation") or {}).items()):
            if not isinstance(r, dict) or "effect" not in r:
                continue
            ctl = c.controls[(c.controls["direction"] == d) & (c.controls["family"] == "random")]["effect"].tolist()
            if ctl:
                items.append((f"{c.meaning} {d}", [float(x) for x in ctl], float(r.get("effect") or np.nan),
                              r.get("p_value")))
    if items:
        sec.add(Figure(plots.control_histograms(items, opts.dpi), alt="control effect distributions",
                       caption="Confirmation split: effects of random tensor-stratified control sets of the same size "
                               "(gray) and of the set (red), per direction."))
    density = compute.critical_density(run, opts.max_heatmap_rows)
    if density is not None:
        matrix, normalised = density
        label = "critical weights / numel" if normalised else "critical weights (count; sizes unknown)"
        sec.add(Figure(plots.heatmap(matrix, "critical-weight density", label, opts.dpi, vmin=0.0,
                                     xlabel="meaning"),
                       alt="critical-weight density heatmap",
                       caption=f"Rows: layers (or component/role when there are many); columns: meanings; "
                               f"value: {label}."))
    for c in run.critical:
        if c.weights is not None and not c.weights.empty:
            w = c.weights
            if "score" in w:
                w = w.reindex(w["score"].astype(float).abs().sort_values(ascending=False).index)
            sec.add(table_from_frame(w, caption=f"{c.meaning}: top weights by |score|", columns=list(WEIGHT_COLUMNS),
                                     max_rows=opts.top_k))
    return sec


def comparison_section(comparison: compute.Comparison, summaries: dict, opts: ReportOptions) -> Section:
    """Methods of the same scope side by side: overlaid curves and thresholds."""
    runs = comparison.runs
    labels = [f"{r.config.get('method', '?')} ({r.name})" for r in runs]
    series = [(lab, summaries[r.path], r.table("thresholds")) for lab, r in zip(labels, runs)]
    metrics = list(dict.fromkeys(m for r in runs for m in compute.metric_columns(r)))
    flat = compute.flat_metrics(pd.concat([summaries[r.path] for r in runs]), metrics)
    drawn = [m for m in metrics if m not in flat]
    floors = {}
    for r in runs:
        floors.update(compute.declared_floors(r.table("thresholds")))
    sec = Section(f"Method comparison: {comparison.scope}")
    if drawn:
        sec.add(Figure(plots.curves(series, drawn, opts.dpi, opts.ci, floors=floors),
                       alt=f"method comparison for {comparison.scope}",
                       caption=f"Curves of each method overlaid; dashed lines: each method's thresholds; dotted: "
                               f"chance.{_flat_note(flat)}"))
    else:
        sec.add(Text(f"Every metric is flat.{_flat_note(flat)}", style="note"))
    rows = []
    for metric in metrics:
        cells = []
        for r in runs:
            t = r.table("thresholds")
            hit = t[t["metric"] == metric] if t is not None and "metric" in t else None
            cells.append(compute.threshold_cells(hit) if hit is not None and len(hit) else fmt(None))
        rows.append([metric, *cells])
    sec.add(Table(["metric", *labels], rows, caption="thresholds: value [CI] kind, one per event (* the largest)"))
    return sec


def sweep_sections(run: RunData, summary: pd.DataFrame | None, opts: ReportOptions) -> list[Section]:
    """All sections of one sweep run that have data, in page order."""
    out = [curves_section(run, summary, opts), grid_section(run), layers_section(run, opts),
           critical_section(run, opts)]
    if run.table("results") is None:
        out.insert(0, Section("Results").add(Text("No level has been evaluated yet.", style="warning")))
    return [s for s in out if s is not None]
