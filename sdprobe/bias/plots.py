"""PNG figures of bias runs (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sdprobe.io import save_figure

DPI = 110  # resolution of saved figures


def _save(fig, path: Path) -> None:
    save_figure(fig, path, DPI)


def plot_distribution(table: pd.DataFrame, path: Path) -> None:
    """Bars of each value's share per probe group and condition, with bootstrap intervals and expected shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = list(dict.fromkeys(table["probe"]))
    conditions = list(dict.fromkeys(table["condition"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.2), squeeze=False)
    width = 0.8 / len(conditions)
    for ax, g in zip(axes[0], groups):
        sub = table[table["probe"] == g]
        values = list(dict.fromkeys(sub["value"]))
        x = np.arange(len(values))
        for i, c in enumerate(conditions):
            rows = sub[sub["condition"] == c].set_index("value").reindex(values)
            err = np.clip(np.vstack([rows["share"] - rows["ci_low"], rows["ci_high"] - rows["share"]]), 0, None)  # rounding
            ax.bar(x + i * width, rows["share"], width, yerr=err, capsize=2, label=c)
        expected = sub.drop_duplicates("value").set_index("value").reindex(values)["expected"]
        if expected.notna().any():
            ax.scatter(x + 0.4 - width / 2, expected, marker="_", s=300, color="black", label="expected", zorder=3)
        ax.set_xticks(x + 0.4 - width / 2, values, rotation=30)
        ax.set_ylim(0, 1)
        ax.set_title(g)
        ax.set_ylabel("share")
    axes[0][-1].legend(fontsize=7)
    _save(fig, path)


def plot_vs_sparsity(table: pd.DataFrame, path: Path) -> None:
    """Each bias metric against sparsity, one line per (component, method, probe group), with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        sub = table[table["metric"] == m]
        for (comp, meth, g), rows in sub.groupby(["component", "method", "probe"], sort=False):
            rows = rows.sort_values("level")
            ax.plot(rows["level"], rows["value"], marker="o", label=f"{comp}/{meth} {g}")
            ax.fill_between(rows["level"], rows["ci_low"], rows["ci_high"], alpha=0.2)
        ax.set_xlabel("sparsity")
        ax.set_title(m)
    axes[0][-1].legend(fontsize=7)
    _save(fig, path)


def plot_dose(table: pd.DataFrame, objective: str, path: Path) -> None:
    """The distance to the target against alpha (the set's weights x alpha), for the set and its controls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for name, rows in table.groupby("set", sort=False):
        rows = rows.sort_values("alpha")
        is_set = name == "set"
        ax.plot(rows["alpha"], rows["objective"], marker="o", color="C3" if is_set else "0.6", lw=2 if is_set else 1,
                label="the set" if is_set else ("random controls" if name.endswith(" 0") else None))
    ax.set_xlabel("alpha (the set's weights x alpha; 1 = dense)")
    ax.set_ylabel(f"{objective} to the target")
    ax.legend(fontsize=7)
    _save(fig, path)
