"""Figures of bias and attribution runs. Each function returns PNG bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sdprobe.report.plots import (
    BAND_ALPHA,
    COLORS,
    HIST_BINS,
    LABEL_FONT,
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    legend_below,
    new_figure,
    panels,
    to_png,
)

BAR_GROUP_WIDTH = 0.8  # share of the x slot that a group of bars fills
TOKEN_ROW_IN = 0.45  # height of one token-attribution row, inches
TOKEN_CELL_IN = 0.75  # width of one token cell, inches
TOKEN_FONT = 7  # font size of tokens written into cells
DARK_CELL = 0.6  # |scaled attribution| above which RdBu_r cells are dark enough for white words
MAX_LABEL_CHARS = 40  # longer row labels are cut


def _cut(text: str, n: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _cut_left(text: str, n: int = MAX_LABEL_CHARS) -> str:
    """Keep the end of ``text`` (the distinguishing part of a dotted module name)."""
    return text if len(text) <= n else "…" + text[-(n - 1):]


def bias_bars(dist: pd.DataFrame, title: str, dpi: int) -> bytes:
    """Shares of each attribute value under each condition, with CI whiskers and the expected share as a tick.

    Args:
        dist (pd.DataFrame): rows of ``distribution.csv`` for one probe and attribute (condition, value, share,
            ci_low, ci_high, expected).
        title (str): panel title.
        dpi (int): resolution.
    """
    values = list(dict.fromkeys(dist["value"].astype(str)))
    conditions = list(dict.fromkeys(dist["condition"].astype(str)))
    fig = new_figure(max(PANEL_WIDTH_IN, 0.9 * len(values) * max(1, len(conditions)) ** 0.5 + 2), PANEL_HEIGHT_IN + 0.5)
    ax = fig.subplots()
    x = np.arange(len(values))
    width = BAR_GROUP_WIDTH / max(1, len(conditions))
    for i, cond in enumerate(conditions):
        d = dist[dist["condition"].astype(str) == cond]
        d = d.set_index(d["value"].astype(str)).reindex(values)
        share = d["share"].to_numpy(dtype=float)
        pos = x - BAR_GROUP_WIDTH / 2 + (i + 0.5) * width
        ax.bar(pos, share, width=width, color=COLORS[i % len(COLORS)], label=cond)
        if {"ci_low", "ci_high"} <= set(d.columns):
            lo, hi = d["ci_low"].to_numpy(dtype=float), d["ci_high"].to_numpy(dtype=float)
            ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(share)
            ax.errorbar(pos[ok], share[ok], yerr=[share[ok] - lo[ok], hi[ok] - share[ok]], fmt="none", ecolor="black",
                        lw=0.8, capsize=2)
    if "expected" in dist:
        first = dist.drop_duplicates("value")
        e = first.set_index(first["value"].astype(str))["expected"].reindex(values).to_numpy(dtype=float)
        ok = np.isfinite(e)
        if ok.any():
            ax.scatter(x[ok], e[ok], marker="_", s=400, color="black", zorder=3, label="expected")
    ax.set_xticks(x, values, rotation=30, fontsize=LABEL_FONT)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend(fontsize=LABEL_FONT)
    return to_png(fig, dpi)


def dose_curve(df: pd.DataFrame, objective: str, dpi: int) -> bytes:
    """The distance to the target against alpha (the set's weights x alpha) for the set (bold) and its controls."""
    fig = new_figure(PANEL_WIDTH_IN, PANEL_HEIGHT_IN)
    ax = fig.subplots()
    for name, rows in df.groupby("set", sort=False):
        rows = rows.sort_values("alpha")
        is_set = str(name) == "set"
        ax.plot(rows["alpha"], rows["objective"], marker="o", ms=3, lw=2 if is_set else 1,
                color=COLORS[0] if is_set else "0.6", label="the set" if is_set else None)
    ax.plot([], [], color="0.6", label="random controls")
    ax.set_xlabel("alpha (weights x alpha; 1 = dense)")
    ax.set_ylabel(f"{objective} to the target")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LABEL_FONT)
    return to_png(fig, dpi)


def bias_vs_sparsity(df: pd.DataFrame, dpi: int) -> bytes:
    """Bias metrics against sparsity: one panel per metric, one line (with CI band) per probe/component/method."""
    metrics = list(dict.fromkeys(df["metric"].astype(str)))
    fig, axes = panels(len(metrics))
    line_keys = [c for c in ("probe", "component", "method") if c in df]  # one line per probe/component/method
    labels = df[line_keys].astype(str).agg("/".join, axis=1)
    for ax, metric in zip(axes, metrics):
        for i, label in enumerate(dict.fromkeys(labels)):
            s = df[(df["metric"].astype(str) == metric) & (labels == label)].sort_values("level")
            if s.empty:
                continue
            color = COLORS[i % len(COLORS)]
            ax.plot(s["level"], s["value"], marker="o", ms=2.5, color=color, label=label)
            if {"ci_low", "ci_high"} <= set(s.columns):
                ax.fill_between(s["level"], s["ci_low"].astype(float), s["ci_high"].astype(float), color=color,
                                alpha=BAND_ALPHA, lw=0)
        ax.set_title(metric)
        ax.set_xlabel("sparsity (level)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    if axes:
        handles, names = axes[0].get_legend_handles_labels()
        legend_below(fig, handles, names)
    return to_png(fig, dpi)


def token_heat(rows: list[tuple[str, list[str], list[float]]], dpi: int) -> bytes:
    """Token attributions as heat rows: one row per (prompt, target), one cell per token, the token written in.

    Args:
        rows (list[tuple[str, list[str], list[float]]]): (row label, tokens, attributions). Each row is scaled by
            its largest absolute attribution, so rows of different magnitude stay readable.
        dpi (int): resolution.
    """
    width = max(len(t) for _, t, _ in rows)
    matrix = np.full((len(rows), width), np.nan)
    for r, (_, _, values) in enumerate(rows):
        v = np.asarray(values, dtype=float)
        scale = np.nanmax(np.abs(v)) if np.isfinite(v).any() and np.nanmax(np.abs(v)) > 0 else 1.0
        matrix[r, : len(v)] = v / scale
    fig = new_figure(max(PANEL_WIDTH_IN, TOKEN_CELL_IN * width + 3.5), TOKEN_ROW_IN * len(rows) + 1.2)
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                   interpolation="nearest")
    for r, (_, tokens, _) in enumerate(rows):
        for c, tok in enumerate(tokens):
            dark = np.isfinite(matrix[r, c]) and abs(matrix[r, c]) > DARK_CELL  # white words on dark cells
            ax.text(c, r, _cut(str(tok), 12), ha="center", va="center", fontsize=TOKEN_FONT,
                    color="white" if dark else "black")
    ax.set_yticks(range(len(rows)), [_cut(label) for label, _, _ in rows], fontsize=LABEL_FONT)
    ax.set_xticks([])
    fig.colorbar(im, ax=ax, label="attribution / row max |attribution|")
    return to_png(fig, dpi)


def neuron_topk(df: pd.DataFrame, k: int, dpi: int) -> bytes:
    """The ``k`` units with the largest |attribution| per target, as horizontal bars (neurons.csv rows)."""
    targets = list(dict.fromkeys(df["target"].astype(str)))
    fig, axes = panels(len(targets))
    for ax, target in zip(axes, targets):
        d = df[df["target"].astype(str) == target]
        d = d.reindex(d["attribution"].astype(float).abs().sort_values(ascending=False).index).head(k)
        labels = [_cut_left(f"{c}:{layer}#{u}") for c, layer, u in zip(d["component"], d["layer"], d["unit"])]
        values = d["attribution"].to_numpy(dtype=float)
        ax.barh(range(len(d))[::-1], values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
        ax.set_yticks(range(len(d))[::-1], labels, fontsize=LABEL_FONT - 1)
        ax.set_title(f"top {k}: {target}")
        ax.set_xlabel("attribution")
    return to_png(fig, dpi)


LOG_AXIS_MIN_POINTS = 4  # a log axis for k only with at least this many k values spanning a decade


def overlap_curves(df: pd.DataFrame, dpi: int) -> bytes:
    """Precision@k of saliency against the critical set, one line per meaning (overlap.csv), with the precision a
    random choice of k candidates would have (``chance`` column, when present) as a dotted line."""
    fig = new_figure(PANEL_WIDTH_IN * 1.4, PANEL_HEIGHT_IN + 0.4)
    ax = fig.subplots()
    ks = np.sort(df["k"].astype(float).unique())
    for i, (meaning, d) in enumerate(df.groupby("meaning", sort=False)):
        d = d.sort_values("k")
        color = COLORS[i % len(COLORS)]
        ax.plot(d["k"], d["precision_at_k"], marker="o", ms=3, color=color, label=str(meaning))
        if "chance" in d:
            ax.plot(d["k"], d["chance"].astype(float), ls=":", color=color, label=f"{meaning}: chance")
    if len(ks) >= LOG_AXIS_MIN_POINTS and ks[0] > 0 and ks[-1] / ks[0] >= 10:
        ax.set_xscale("log")
    ax.set_xticks(ks, [f"{k:g}" for k in ks], fontsize=LABEL_FONT)
    ax.set_xlabel("k (top salient weights)")
    ax.set_ylabel("precision@k")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    legend_below(fig, handles, names)
    return to_png(fig, dpi)


def saliency_hist(df: pd.DataFrame, dpi: int) -> bytes:
    """Saliency of weights in vs. outside the critical set, one panel per meaning (weights.csv of attribution)."""
    meanings = list(dict.fromkeys(df["meaning"].astype(str)))
    fig, axes = panels(len(meanings))
    for ax, meaning in zip(axes, meanings):
        d = df[df["meaning"].astype(str) == meaning]
        sal = d["saliency"].astype(float).abs()
        inside = d["in_critical_set"].astype(str).str.lower().isin(("true", "1"))
        pos = sal[sal > 0]
        bins = np.geomspace(pos.min(), pos.max(), HIST_BINS) if len(pos) > 1 and pos.max() > pos.min() else HIST_BINS
        for mask, color, label in ((~inside, "tab:gray", "other candidates"), (inside, "tab:red", "critical set")):
            v = sal[mask & (sal > 0)]
            if len(v):
                ax.hist(v, bins=bins, color=color, alpha=0.6, density=True, label=label)
        if len(pos) > 1 and pos.max() > pos.min():
            ax.set_xscale("log")
        ax.set_title(meaning)
        ax.set_xlabel("|saliency|")
        ax.legend(fontsize=LABEL_FONT)
    return to_png(fig, dpi)
