"""Figures of sweeps: metric-vs-sparsity curves, heatmaps, control distributions. Each function returns PNG bytes.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sdprobe.report.images import compact_png

PANEL_WIDTH_IN = 3.6  # width of one small-multiple panel, inches
PANEL_HEIGHT_IN = 2.7  # height of one small-multiple panel, inches
MAX_PANELS_PER_ROW = 3  # small multiples wrap after this many panels
BAND_ALPHA = 0.2  # opacity of confidence bands
CI_SHADE_ALPHA = 0.12  # opacity of a threshold's confidence interval
CHANCE_STYLE = {"color": "0.35", "ls": ":", "lw": 1.2}  # the chance (floor) line of a metric
HEATMAP_ROW_IN = 0.18  # height of one heatmap row, inches
HEATMAP_MIN_HEIGHT_IN = 2.0  # smallest heatmap height, inches
HEATMAP_WIDTH_IN = 8.0  # heatmap width, inches
LABEL_FONT = 7  # font size of dense tick labels
HIST_BINS = 20  # bins of histograms
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
          "tab:olive", "tab:cyan")


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, dpi: int) -> bytes:
    """The figure as a compact PNG (:func:`sdprobe.report.images.compact_png`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return compact_png(buf.getvalue())


def panels(n: int, per_row: int = MAX_PANELS_PER_ROW) -> tuple[Figure, list]:
    """A figure with ``n`` small-multiple axes, wrapped ``per_row`` to a row; unused axes are hidden."""
    cols = max(1, min(n, per_row))
    rows = max(1, math.ceil(n / cols))
    fig = new_figure(PANEL_WIDTH_IN * cols, PANEL_HEIGHT_IN * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _mark_threshold(ax, row: pd.Series, color: str) -> None:
    t = float(row.get("threshold", float("nan")))
    if str(row.get("kind", "none")) == "none" or not np.isfinite(t):
        return
    lo, hi = float(row.get("ci_low", float("nan"))), float(row.get("ci_high", float("nan")))
    if np.isfinite(lo) and np.isfinite(hi):
        ax.axvspan(lo, hi, color=color, alpha=CI_SHADE_ALPHA, lw=0)
    ax.axvline(t, color=color, ls="--", lw=1)


def legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
    """One legend for the whole figure, below the panels, so it never covers a curve."""
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), MAX_PANELS_PER_ROW + 1),
                   fontsize=LABEL_FONT + 1, frameon=False)


def curves(series: list[tuple[str, pd.DataFrame, pd.DataFrame | None]], metrics: list[str], dpi: int,
           ci: float, floors: dict[str, float] | None = None) -> bytes:
    """Metric-vs-sparsity curves, one panel per metric, one line per series.

    Args:
        series (list[tuple[str, pd.DataFrame, pd.DataFrame | None]]): (label, curve summary from
            :func:`sdprobe.report.compute.curve_summary`, thresholds.csv or None). One series draws one run; several
            overlay runs (method comparison).
        metrics (list[str]): panels, in order.
        dpi (int): resolution.
        ci (float): coverage of the bands, for the legend.
        floors (dict[str, float] | None): chance level of each metric (dotted line). Default: none drawn.

    Returns:
        bytes: PNG. Each threshold is a dashed vertical line with its confidence interval shaded; the legend sits
        below the panels.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    floors = floors or {}
    fig, axes = panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        if metric in floors:
            ax.axhline(floors[metric], **CHANCE_STYLE)
        for i, (label, summary, thresholds) in enumerate(series):
            color = COLORS[i % len(COLORS)]
            s = summary[summary["metric"] == metric].sort_values("level")
            if s.empty:
                continue
            ax.plot(s["level"], s["mean"], marker="o", ms=2.5, lw=1.3, color=color, label=label)
            ax.fill_between(s["level"], s["ci_low"], s["ci_high"], color=color, alpha=BAND_ALPHA, lw=0)
            if thresholds is not None and "metric" in thresholds:
                for _, row in thresholds[thresholds["metric"] == metric].iterrows():
                    _mark_threshold(ax, row, color)
        ax.set_title(metric)
        ax.set_xlabel("sparsity (level)")
        ax.set_ylabel(f"{metric}, mean")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=COLORS[i % len(COLORS)], marker="o", ms=3) for i in range(len(series))]
    labels = [label for label, _, _ in series] if len(series) > 1 else ["mean per level"]
    handles.append(Patch(color="0.5", alpha=BAND_ALPHA * 2))
    labels.append(f"{ci:.0%} bootstrap band")
    handles.append(Line2D([], [], color="0.3", ls="--", lw=1))
    labels.append("threshold (shaded: its CI)")
    if any(m in floors for m in metrics):
        handles.append(Line2D([], [], **CHANCE_STYLE))
        labels.append("chance (the metric's floor)")
    legend_below(fig, handles, labels)
    return to_png(fig, dpi)


def heatmap(matrix: pd.DataFrame, title: str, colorbar: str, dpi: int, vmin: float | None = None,
            vmax: float | None = None, xlabel: str = "") -> bytes:
    """A labelled heatmap of ``matrix`` (rows x columns, seaborn), NaN cells blank."""
    import seaborn as sns

    height = max(HEATMAP_MIN_HEIGHT_IN, HEATMAP_ROW_IN * len(matrix) + 1.5)
    fig = new_figure(HEATMAP_WIDTH_IN, height)
    ax = fig.subplots()
    cols = [f"{c:.3f}" if isinstance(c, (float, np.floating)) else str(c) for c in matrix.columns]
    frame = pd.DataFrame(matrix.to_numpy(dtype=float), index=[str(i) for i in matrix.index], columns=cols)
    sns.heatmap(frame, ax=ax, cmap="viridis", vmin=vmin, vmax=vmax, cbar_kws={"label": colorbar},
                xticklabels=True, yticklabels=True)
    ax.tick_params(labelsize=LABEL_FONT)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return to_png(fig, dpi)


def control_histograms(items: list[tuple[str, list[float], float, float | None]], dpi: int) -> bytes:
    """For each critical set: the effects of its random controls, with the set's own effect marked.

    Args:
        items (list[tuple[str, list[float], float, float | None]]): (meaning, control effects, the set's effect,
            p-value).
        dpi (int): resolution.

    Returns:
        bytes: PNG, one panel per set.
    """
    fig, axes = panels(len(items))
    for ax, (meaning, controls, effect, p) in zip(axes, items):
        finite = [c for c in controls if np.isfinite(c)]
        if finite:
            ax.hist(finite, bins=HIST_BINS, color="tab:gray", alpha=0.8, label="random controls")
        if np.isfinite(effect):
            ax.axvline(effect, color="tab:red", lw=2, label="critical set")
        ax.set_title(f"{meaning}" + (f" (p = {p:.3g})" if p is not None and np.isfinite(p) else ""))
        ax.set_xlabel("effect (share of images)")
        ax.set_ylabel("random control sets")
        ax.legend(fontsize=LABEL_FONT)
    return to_png(fig, dpi)
