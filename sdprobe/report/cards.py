"""How result objects show themselves in Jupyter: one small HTML card each (``_repr_html_``).

A card is a title, key-value rows and optional tables, rendered by the ``card.html`` template with every string
escaped. Result classes build their rows and call :func:`card`; they never write HTML themselves.

Example:
    >>> card("critical set: color", [("verdict", "critical"), ("size", 2)])[:28]
    '<div class="sdprobe-card" st'
"""

from __future__ import annotations

import pandas as pd

from sdprobe.report.render import environment
from sdprobe.report.tree import Table, fmt, interval, table_from_frame

CARD_TEMPLATE = "card.html"
MAX_CARD_ROWS = 20  # rows shown of a table inside a card


def frame_table(df: pd.DataFrame, caption: str = "", columns: list[str] | None = None) -> Table:
    """A card table from a DataFrame (the first :data:`MAX_CARD_ROWS` rows)."""
    return table_from_frame(df, caption=caption, columns=columns, max_rows=MAX_CARD_ROWS)


def card(title: str, rows: list[tuple[str, object]], tables: list[Table] = (), note: str = "") -> str:
    """An HTML card: ``title``, then ``rows`` as key-value pairs (values formatted by :func:`fmt`), then ``tables``.

    Args:
        title (str): the card's heading.
        rows (list[tuple[str, object]]): (key, value) pairs; floats get 3 decimals, None a dash.
        tables (list[Table]): tables shown below the rows (e.g. from :func:`frame_table`).
        note (str): a highlighted line under the title (a warning, e.g. "unfinished").

    Returns:
        str: an HTML fragment.
    """
    return environment().get_template(CARD_TEMPLATE).render(
        title=title, note=note, rows=[(k, v if isinstance(v, str) else fmt(v)) for k, v in rows], tables=list(tables))


EVIDENCE_COLUMNS = ["direction", "effect [95% CI]", "images", "p", "Holm p", "random controls", "control mean"]


def evidence_table(directions: dict[str, dict], caption: str) -> Table:
    """Necessity and sufficiency side by side, from :class:`~sdprobe.evidence.DirectionResult` dicts."""
    rows = [[d, interval(r.get("effect"), r.get("ci_low"), r.get("ci_high")),
             f"{fmt(r.get('effect_images'))} of {r.get('n_images')}", fmt(r.get("p_value")), fmt(r.get("p_adjusted")),
             fmt(r.get("n_controls")), fmt(r.get("control_mean"))]
            for d, r in directions.items() if isinstance(r, dict) and "effect" in r]
    return Table(EVIDENCE_COLUMNS, rows, caption=caption)


def run_card(run) -> str:
    """A run folder: what it is, how far it got, and (for a sweep) its thresholds."""
    config = run.config()
    state = run.state()
    rows = [("kind", config.get("kind", "?")), ("state", state), ("model", config.get("model")),
            ("method", config.get("method"))]
    tables = []
    if config.get("kind") == "sweep":
        levels = run.done_levels()
        rows.append(("levels evaluated", f"{len(levels)}" + (f" ({fmt(levels[0], 2)}–{fmt(levels[-1], 2)})"
                                                             if levels else "")))
        thresholds = run.thresholds()
        if thresholds is not None:
            tables.append(frame_table(thresholds, "thresholds.csv", ["metric", "event", "largest", "kind",
                                                                    "threshold", "ci_low", "ci_high"]))
    note = "" if state == "finished" else f"unfinished ({state}): numbers may still change"
    return card(f"sdprobe run {run.path}", rows, tables, note)


def collapse_card(result) -> str:
    """One detected event (or its absence)."""
    rows = [("kind", result.kind), ("threshold [CI]", interval(result.threshold, result.ci_low, result.ci_high)),
            ("dense → after", f"{fmt(result.dense)} → {fmt(result.post)}"),
            ("share of dense − floor lost", result.relative_drop), ("s_hold … s_fail",
                                                                    f"{fmt(result.s_hold)} … {fmt(result.s_fail)}"),
            ("event", f"{result.event} of {result.n_events}")]
    return card(f"{result.metric}: {result.kind}", rows, note=result.notes)


def critical_card(cs) -> str:
    """A critical set with its confirmation evidence."""
    s = cs.summary()
    conf = s["confirmation"]
    rows = [("verdict", s["verdict"]), ("size", f"{s['size']} of {s['n_candidates']} candidates"),
            ("window", f"{s['window'].get('kind', '')} {fmt(s['window'].get('start'))}..{fmt(s['window'].get('stop'))}"),
            ("confirmation split", f"{conf['n_prompts']} fresh prompts and seeds"),
            ("where", ", ".join(f"{k}: {v}" for k, v in s["where"].items()))]
    return card(f"critical set: {cs.meaning}", rows,
                [evidence_table({d: conf.get(d) for d in ("necessity", "sufficiency")}, "confirmation split")])


def isolation_card(report) -> str:
    """Every meaning an isolation ran: its verdict and numbers, or why it found no set."""
    rows = [(m, f"{cs.verdict}, {len(cs.ids)} weights") for m, cs in report.sets.items()]
    rows += [(m, f"no replicable critical set: {why}") for m, why in report.skipped.items()]
    tables = [evidence_table({d: r.to_dict() for d, r in cs.confirmation.items()}, f"{m}: confirmation split")
              for m, cs in report.sets.items()]
    return card("isolation", rows, tables)


def replication_card(rep) -> str:
    """A saved set judged again on a new split."""
    rows = [("verdict", rep.verdict), ("size", rep.size), ("judged by", rep.metric),
            ("replication split", f"{len(rep.split)} new prompts and seeds"), ("model", rep.model)]
    return card(f"replication: {rep.meaning}", rows,
                [evidence_table({d: r.to_dict() for d, r in rep.directions.items()}, "replication split")])


def debias_card(result) -> str:
    """A debiasing search with its confirmation."""
    s = result.summary
    c = s.get("confirmation") or {}
    rows = [("verdict", s.get("verdict")), ("group", s.get("group")), ("size", s.get("size")),
            ("objective", s.get("objective")),
            ("effect [95% CI]", interval(c.get("effect"), c.get("ci_low"), c.get("ci_high"))),
            ("controls", f"{c.get('n_controls')} random, mean effect {fmt(c.get('control_mean'))}"),
            ("Holm p", s.get("p_adjusted")), ("reasons", "; ".join(s.get("reasons") or []) or "–")]
    return card(f"debiasing set: {s.get('probe', '')}/{s.get('group', '')}", rows)
