"""Stage 2 of a report: build the tree of sections from loaded runs and studies.

The tree (:mod:`sdprobe.report.tree`) holds strings, formatted numbers and PNG bytes; figures are drawn here
(through :mod:`sdprobe.report.plots`), but no HTML is written.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import pandas as pd

from sdprobe.report import compute
from sdprobe.report.glossary import GLOSSARY
from sdprobe.report.load import FINISHED, RunData, StudyData
from sdprobe.report.sections_probes import attribution_sections, bias_sections
from sdprobe.report.findings import findings
from sdprobe.report.reproduction import reproduction_section
from sdprobe.report.sections_sweep import comparison_section, status_section, sweep_sections
from sdprobe.report.tree import (
    Bullets,
    Report,
    ReportOptions,
    Section,
    Table,
    Text,
    assign_anchors,
    fmt,
)

log = logging.getLogger(__name__)

PARTIAL = "PARTIAL"  # badge and banner text of unfinished runs


def _version() -> str:
    try:
        return metadata.version("sdprobe")
    except metadata.PackageNotFoundError:
        return "unknown"


def all_runs(sources: list[RunData | StudyData]) -> list[RunData]:
    return [r for s in sources for r in (s.runs if isinstance(s, StudyData) else [s])]


def partial_reasons(sources: list[RunData | StudyData]) -> list[str]:
    """Why the report is partial: unfinished runs, planned runs missing from a study, an unfinished study."""
    reasons = []
    for s in sources:
        if isinstance(s, StudyData):
            state = s.meta.get("state")
            if state is not None and state != FINISHED:
                reasons.append(f"study {s.name} is {state!s}")
            if s.missing:
                reasons.append(f"study {s.name} lacks planned runs: {', '.join(s.missing)}")
            runs = s.runs
        else:
            runs = [s]
        for r in runs:
            if r.partial:
                reasons.append(f"run {r.name} is {r.state} (not {FINISHED})")
            elif r.kind == "sweep" and r.table("results") is None:
                reasons.append(f"run {r.name} has no evaluated levels")
    return reasons


def _sudden(run: RunData) -> str:
    t = run.table("thresholds")
    if t is None or "kind" not in t:
        return fmt(None)
    hits = t[t["kind"] == "sudden"]
    return ", ".join(f"{m} @ {float(v):.3f}" for m, v in zip(hits["metric"], hits["threshold"])) or "none"


def overview(runs: list[RunData]) -> Section:
    """One row per run: kind, state, method and scope, levels, sudden collapses."""
    rows = []
    for r in runs:
        results = r.table("results")
        rows.append([r.name, r.kind, r.state + (f" ({PARTIAL})" if r.partial else ""), fmt(r.config.get("method")),
                     compute.scope_label(r.config) if r.kind == "sweep" else fmt(None),
                     str(results["level"].nunique()) if results is not None else fmt(None),
                     _sudden(r) if r.kind == "sweep" else fmt(None)])
    return Section("Overview").add(Table(["run", "kind", "state", "method", "pruned", "levels", "sudden collapses"],
                                         rows))


def run_section(run: RunData, summary: pd.DataFrame | None, opts: ReportOptions) -> Section:
    """The section of one run: its configuration, then the sections of its kind."""
    detail = f"{run.kind}, {run.config['method']}" if run.config.get("method") else run.kind
    sec = Section(f"{run.name} ({detail})", badge=PARTIAL if run.partial else "")
    sec.add(status_section(run))
    if run.kind == "sweep":
        body = sweep_sections(run, summary, opts)
    elif run.kind == "bias":
        body = bias_sections(run, opts)
    elif run.kind == "attribution":
        body = attribution_sections(run, opts)
    else:
        body = [Section("Results").add(Text(f"Run kind {run.kind!r} has no report sections; known kinds: "
                                            "sweep, bias, attribution.", style="note"))]
    if not body:
        body = [Section("Results").add(Text("No results yet.", style="warning"))]
    return sec.add(*body)


def study_section(study: StudyData, summaries: dict, opts: ReportOptions) -> Section:
    sec = Section(f"Study {study.name}", badge=PARTIAL if study.partial else "")
    if study.missing:
        sec.add(Text(f"Planned runs not on disk yet: {', '.join(study.missing)}", style="warning"))
    return sec.add(*(run_section(r, summaries.get(r.path), opts) for r in study.runs))


def findings_section(runs: list[RunData]) -> Section:
    """The summary at the top: one statement per finding with its interval, then the caveats."""
    statements, notes = findings(runs)
    sec = Section("Findings")
    sec.add(Bullets(statements) if statements else Text("No run has results yet.", style="warning"))
    if notes:
        sec.add(Bullets(notes, style="note"))
    return sec


def build(sources: list[RunData | StudyData], opts: ReportOptions | None = None, title: str | None = None) -> Report:
    """Build the report tree of the given runs and studies.

    Args:
        sources (list[RunData | StudyData]): from :func:`sdprobe.report.load.discover`.
        opts (ReportOptions | None): report knobs. Default: ``ReportOptions()``.
        title (str | None): page title. Default: names of the sources.

    Returns:
        Report: the tree, with anchors assigned and the partial banner's reasons filled in.

    Example:
        >>> report = build(discover([Path("runs/study")]))
        >>> [s.title for s in report.sections][:2]
        ['Findings', 'Overview']
    """
    opts = opts or ReportOptions()
    runs = all_runs(sources)
    summaries: dict[Path, pd.DataFrame] = {}
    for r in runs:
        results = r.table("results")
        if r.kind == "sweep" and results is not None:
            images = compute.curve_summary(results, compute.metric_columns(r), n_boot=opts.n_boot, ci=opts.ci,
                                           seed=opts.seed)
            sets = compute.set_summary(r.table("sets"), opts.ci)
            summaries[r.path] = images if sets.empty else pd.concat([images, sets], ignore_index=True)
    sections = [findings_section(runs), overview(runs)]
    sections += [comparison_section(c, summaries, opts) for c in compute.comparisons(runs)]
    for s in sources:
        if isinstance(s, StudyData):
            sections.append(study_section(s, summaries, opts))
        else:
            sections.append(run_section(s, summaries.get(s.path), opts))
    sections.append(Section("Glossary").add(Table(["term", "meaning"], [list(row) for row in GLOSSARY],
                                                   caption="the terms this report uses")))
    sections.append(reproduction_section(sources))
    assign_anchors(sections)
    names = ", ".join(s.name for s in sources)
    return Report(title=title or f"sdprobe report: {names}", sources=[str(s.path) for s in sources], sections=sections,
                  partial_reasons=partial_reasons(sources), version=_version())
