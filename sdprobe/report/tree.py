"""The node types of a report: sections, tables, figures and image grids, plus the report's options.

The tree holds only data (strings, numbers, PNG bytes); :mod:`sdprobe.report.structure` builds it and
:mod:`sdprobe.report.render` turns it into a page.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from sdprobe.report.compute import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CI,
    DEFAULT_MAX_ROWS,
    DEFAULT_SEED,
)

MISSING = "–"  # shown for NaN / None cells
FLOAT_DIGITS = 3  # decimals of floats in tables
MAX_CELL_CHARS = 200  # longer cell values are cut, with an ellipsis


@dataclass
class ReportOptions:
    """Knobs of a report. Defaults suit runs of the organism and of SD-sized models alike.

    Attributes:
        n_boot (int): bootstrap resamples behind confidence bands. Default: 1000.
        ci (float): coverage of confidence bands. Default: 0.95.
        seed (int): seed of the bootstrap generator (reports are reproducible). Default: 0.
        max_heatmap_rows (int): heatmaps with more tensors are aggregated to component/region/block/role. Default: 60.
        top_k (int): rows of "top" tables and bars (critical weights, neurons). Default: 10.
        max_token_rows (int): prompt/target rows of the token attribution heat map. Default: 12.
        max_table_rows (int): rows shown of long tables. Default: 50.
        dpi (int): resolution of figures. Default: 100.
    """

    n_boot: int = DEFAULT_BOOTSTRAP
    ci: float = DEFAULT_CI
    seed: int = DEFAULT_SEED
    max_heatmap_rows: int = DEFAULT_MAX_ROWS
    top_k: int = 10  # rows of top-k tables and bars
    max_token_rows: int = 12  # prompt/target rows of the token heat map
    max_table_rows: int = 50  # rows shown of long tables
    dpi: int = 100  # figure resolution

    def __post_init__(self) -> None:
        if not 0.0 < self.ci < 1.0:
            raise ValueError(f"ci must be in (0, 1), got {self.ci}")
        for name in ("n_boot", "max_heatmap_rows", "top_k", "max_token_rows", "max_table_rows", "dpi"):
            if getattr(self, name) < (0 if name == "n_boot" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class Text:
    """A paragraph. ``style`` is ``"plain"``, ``"note"`` (muted) or ``"warning"`` (highlighted)."""

    text: str
    style: str = "plain"
    kind: ClassVar[str] = "text"


@dataclass
class Bullets:
    """A list of short statements (the findings and their caveats). ``style`` as in :class:`Text`."""

    items: list[str]
    style: str = "plain"
    kind: ClassVar[str] = "bullets"


@dataclass
class Table:
    """A table of already formatted cells."""

    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    kind: ClassVar[str] = "table"


@dataclass
class Figure:
    """A PNG figure, embedded in the page as a data URI."""

    png: bytes
    alt: str
    caption: str = ""
    kind: ClassVar[str] = "figure"


@dataclass
class ImageRow:
    """One labelled row of an image grid (a PNG strip, one image per column)."""

    label: str
    png: bytes


@dataclass
class ImageGrid:
    """Rows of PNG strips with a label each; ``columns`` names the columns (e.g. the prompts)."""

    rows: list[ImageRow]
    columns: list[str]
    caption: str = ""
    kind: ClassVar[str] = "images"


@dataclass
class Section:
    """A titled section; ``anchor`` is its id in the page (set by :func:`assign_anchors`).

    A ``collapsed`` section shows its title and folds its content away until the reader opens it.
    """

    title: str
    children: list[Section | Text | Bullets | Table | Figure | ImageGrid] = field(default_factory=list)
    badge: str = ""  # short marker next to the title, e.g. "PARTIAL"
    anchor: str = ""
    collapsed: bool = False
    kind: ClassVar[str] = "section"

    def add(self, *blocks) -> Section:
        self.children.extend(b for b in blocks if b is not None)
        return self

    @property
    def subsections(self) -> list[Section]:
        return [c for c in self.children if isinstance(c, Section)]

    def empty(self) -> bool:
        return not self.children


@dataclass
class Report:
    """The whole page: title, sources, whether anything is partial and why, and the sections."""

    title: str
    sources: list[str]
    sections: list[Section]
    partial_reasons: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    version: str = "unknown"

    @property
    def partial(self) -> bool:
        return bool(self.partial_reasons)


def fmt(value, digits: int = FLOAT_DIGITS) -> str:
    """Format one table cell: floats to ``digits`` decimals, NaN/None as a dash, bools as yes/no."""
    if value is None:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return MISSING
        if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 1e6):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def interval(value, low, high) -> str:
    """A value with its interval, ``0.938 [0.844, 1.000]``, each part formatted by :func:`fmt`."""
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def table_from_frame(df, caption: str = "", columns: list[str] | None = None, max_rows: int | None = None) -> Table:
    """A :class:`Table` from a DataFrame (optionally a subset of columns and the first ``max_rows`` rows)."""
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    shown = df if max_rows is None else df.head(max_rows)
    rows = [[fmt(v) for v in rec] for rec in shown[cols].itertuples(index=False, name=None)]
    if max_rows is not None and len(df) > max_rows:
        caption = f"{caption} (first {max_rows} of {len(df)} rows)".strip()
    return Table(columns=[str(c) for c in cols], rows=rows, caption=caption)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def assign_anchors(sections: list[Section], prefix: str = "", seen: set[str] | None = None) -> None:
    """Give every section a unique, URL-safe id made of its title path."""
    seen = set() if seen is None else seen
    for s in sections:
        base = f"{prefix}-{_slug(s.title)}" if prefix else _slug(s.title)
        anchor, i = base, 2
        while anchor in seen:
            anchor, i = f"{base}-{i}", i + 1
        seen.add(anchor)
        s.anchor = anchor
        assign_anchors(s.subsections, anchor, seen)
