"""Stage 1b of a report: derive the summaries that the sections show from the loaded tables.

Everything here is plain pandas/numpy on the tables of :mod:`sdprobe.report.load`; nothing is drawn or rendered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sdprobe.report.load import RunData
from sdprobe.runs import BOOKKEEPING
from sdprobe.world.attributes import MEANINGS

DEFAULT_BOOTSTRAP = 1000  # bootstrap resamples behind every confidence band
DEFAULT_CI = 0.95  # coverage of confidence bands
DEFAULT_SEED = 0  # seed of the bootstrap's random generator, so a report is reproducible
DEFAULT_MAX_ROWS = 60  # heatmaps with more tensors than this are aggregated to component/region/block/role
READ_PREFIX = "read_"  # oracle readings (strings), not metrics
SPARSITY_PREFIX = "sparsity_"  # achieved sparsity columns, not metrics
GROUP_KEYS = ("component", "region", "block", "role")  # coarser rows of the layer heatmap
BASELINE_METHODS = ("random",)  # control methods, listed after the methods they are controls for


def metric_columns(run: RunData) -> list[str]:
    """The metric columns of a sweep's results: the meanings first (world order), then the others.

    The config's ``higher_is_better`` names the metrics; without it, every numeric column that is not
    bookkeeping, a ``sparsity_*`` column or an oracle reading counts.

    Example:
        >>> metric_columns(run)
        ['color', 'shape', 'position', 'size', 'unreadable', 'distance']
    """
    results = run.table("results")
    if results is None:
        return []
    declared = run.config.get("higher_is_better")
    if isinstance(declared, dict) and declared:
        cols = [c for c in declared if c in results.columns]
    else:
        cols = [c for c in results.columns if c not in BOOKKEEPING and not c.startswith((SPARSITY_PREFIX, READ_PREFIX))
                and pd.api.types.is_numeric_dtype(results[c])]
    meanings = [m for m in MEANINGS if m in cols]
    return meanings + [c for c in cols if c not in meanings]


def higher_is_better(run: RunData, metric: str) -> bool | None:
    declared = run.config.get("higher_is_better")
    return declared.get(metric) if isinstance(declared, dict) else None


def declared_floors(thresholds: pd.DataFrame | None) -> dict[str, float]:
    """Each accuracy-like metric's chance level as its metric declared it (thresholds.csv rows with
    ``floor_source == "given"`` and ``higher_is_better``).

    Floors taken from the curve itself are not chance levels, and the declared worst value of a rising metric
    (a distance, the unreadable rate) is a bound rather than chance: both are left out.
    """
    needed = {"metric", "floor", "floor_source", "higher_is_better"}
    if thresholds is None or not needed <= set(thresholds.columns):
        return {}
    given = thresholds[(thresholds["floor_source"].astype(str) == "given")
                       & (thresholds["higher_is_better"].astype(str).str.lower() == "true")]
    return {str(m): float(f) for m, f in zip(given["metric"], given["floor"]) if np.isfinite(float(f))}


def flat_metrics(summary: pd.DataFrame, metrics: list[str], tol: float = 1e-9) -> dict[str, float]:
    """Metrics whose mean and band are the same at every level (a flat panel says nothing), with that value.

    Example:
        >>> flat_metrics(summary, ["color", "unreadable"])
        {'unreadable': 0.0}
    """
    out = {}
    for m in metrics:
        s = summary[summary["metric"] == m]
        if s.empty:
            continue
        values = s[["mean", "ci_low", "ci_high"]].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size and finite.max() - finite.min() <= tol:
            out[m] = float(finite[0])
    return out


def bootstrap_mean(values: np.ndarray, clusters: np.ndarray | None, rng: np.random.Generator,
                   n_boot: int = DEFAULT_BOOTSTRAP, ci: float = DEFAULT_CI) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval, resampling whole clusters (e.g. seeds).

    Efron & Tibshirani, *An Introduction to the Bootstrap* (1993), https://doi.org/10.1201/9780429246593.

    Args:
        values (np.ndarray): shape (N,), finite values.
        clusters (np.ndarray | None): shape (N,), cluster label of each value; None: every value is its own cluster.
        rng (np.random.Generator): source of the resamples.
        n_boot (int): resamples. Default: :data:`DEFAULT_BOOTSTRAP`.
        ci (float): coverage of the interval, in (0, 1). Default: :data:`DEFAULT_CI`.

    Returns:
        tuple[float, float, float]: mean, lower and upper bound (all NaN for no values).

    Example:
        >>> bootstrap_mean(np.array([1.0, 1.0]), None, np.random.default_rng(0))
        (1.0, 1.0, 1.0)
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    if clusters is None:
        sums, counts = values.astype(float), np.ones(len(values))
    else:
        codes, uniq = pd.factorize(clusters)
        sums = np.bincount(codes, weights=values, minlength=len(uniq))
        counts = np.bincount(codes, minlength=len(uniq)).astype(float)
    mean = float(sums.sum() / counts.sum())
    if len(sums) < 2 or n_boot <= 0:
        return mean, mean, mean
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))  # (B, K)
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)  # (B,)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(lo), float(hi)


def curve_summary(results: pd.DataFrame, metrics: list[str], n_boot: int = DEFAULT_BOOTSTRAP, ci: float = DEFAULT_CI,
                  seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Metric means per level with bootstrap bands over seeds.

    Images of one seed are resampled together (a cluster bootstrap), so the band reflects seed-to-seed variation.
    NaN values (a metric that does not apply to an image) are left out.

    Args:
        results (pd.DataFrame): a sweep's results (columns ``level``, ``seed`` and the metrics).
        metrics (list[str]): metric columns to summarise.
        n_boot (int): bootstrap resamples. Default: :data:`DEFAULT_BOOTSTRAP`.
        ci (float): band coverage. Default: :data:`DEFAULT_CI`.
        seed (int): bootstrap generator seed. Default: :data:`DEFAULT_SEED`.

    Returns:
        pd.DataFrame: columns ``level``, ``metric``, ``mean``, ``ci_low``, ``ci_high``, ``n``, sorted by metric
        and level.

    Example:
        >>> curve_summary(results, ["color"]).iloc[0][["level", "mean"]].tolist()
        [0.0, 0.97]
    """
    rng = np.random.default_rng(seed)
    rows = []
    for metric in metrics:
        for level, group in results.groupby("level", sort=True):
            values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(values)
            clusters = group["seed"].to_numpy()[ok] if "seed" in group else None
            mean, lo, hi = bootstrap_mean(values[ok], clusters, rng, n_boot=n_boot, ci=ci)
            rows.append({"level": float(level), "metric": metric, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "n": int(ok.sum())})
    return pd.DataFrame(rows, columns=["level", "metric", "mean", "ci_low", "ci_high", "n"])


def set_summary(sets: pd.DataFrame | None, ci: float = DEFAULT_CI) -> pd.DataFrame:
    """Per-set metrics (``sets.csv``: one value per level, with ``<name>_se``) in :func:`curve_summary`'s layout,
    with a normal band of the given coverage; metrics without a standard error get no band."""
    from scipy.stats import norm

    columns = ["level", "metric", "mean", "ci_low", "ci_high", "n"]
    if sets is None or sets.empty:
        return pd.DataFrame(columns=columns)
    z = float(norm.ppf((1 + ci) / 2))
    rows = []
    names = [c for c in sets.columns if f"{c}_se" in sets.columns]
    for _, r in sets.iterrows():
        for m in names:
            se = float(r[f"{m}_se"])
            rows.append({"level": float(r["level"]), "metric": m, "mean": float(r[m]),
                         "ci_low": float(r[m]) - z * se, "ci_high": float(r[m]) + z * se,
                         "n": int(r["n_images"]) if "n_images" in r else 0})
    return pd.DataFrame(rows, columns=columns).sort_values(["metric", "level"]).reset_index(drop=True)


def scope_label(config: dict) -> str:
    """Human label of what a sweep pruned, e.g. ``text_encoder`` or ``text_encoder+0.125, unet``."""
    comps = config.get("components")
    if not isinstance(comps, dict) or not comps:
        return "unknown scope"
    parts = []
    for name, plan in sorted(comps.items()):
        selectors = plan.get("selectors", [name]) if isinstance(plan, dict) else [name]
        offset = plan.get("offset", 0.0) if isinstance(plan, dict) else 0.0
        label = ",".join(map(str, selectors))
        parts.append(f"{label}{offset:+g}" if offset else label)
    return " & ".join(parts)


def judge_label(config: dict) -> str:
    """Who judged a sweep's meanings, e.g. ``oracle (exact)`` or ``clip-attributes (CLIP builtin:tiny-shapes-clip,
    suite analyses/prompts/compositional.toml)``; ``none`` when the sweep measured no meaning metric."""
    from sdprobe.cli.choices import MEANING_METRICS  # the registry's names, without importing the metrics (torch)

    names = [m for m in config.get("metrics", []) if m in MEANING_METRICS]
    if not names:
        return "none (no meaning metric)"
    if names[0] == "oracle":
        return "oracle (the organism's exact reader)"
    options = (config.get("metric_options") or {}).get(names[0], {})
    return (f"{names[0]} (CLIP {options.get('clip_path', '?')}, suite {options.get('suite', 'builtin:tiny-shapes')}; "
            "zero-shot, see its agreement with the oracle in the README)")


@dataclass
class Comparison:
    """Sweeps of the same scope with different methods."""

    scope: str
    runs: list[RunData]


def comparisons(runs: list[RunData]) -> list[Comparison]:
    """Group sweeps that pruned the same components with the same selectors and offsets.

    Returns:
        list[Comparison]: groups with at least two distinct methods, in order of first appearance; within a group,
        runs keep their order except that baselines (:data:`BASELINE_METHODS`) come last.
    """
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        if run.kind != "sweep" or run.table("results") is None:
            continue
        key = json.dumps(run.config.get("components"), sort_keys=True, default=str)
        groups.setdefault(key, []).append(run)
    out = []
    for members in groups.values():
        if len({m.config.get("method") for m in members}) >= 2:
            members = sorted(members, key=lambda r: r.config.get("method") in BASELINE_METHODS)  # stable
            out.append(Comparison(scope=scope_label(members[0].config), runs=members))
    return out


def threshold_cells(rows: pd.DataFrame) -> str:
    """Every event of one metric, ``0.512 [0.50, 0.52] sudden; 0.805 [0.80, 0.81] sudden*`` (``*`` the largest)."""
    cells = []
    for _, row in rows.iterrows():
        mark = "*" if len(rows) > 1 and bool(row.get("largest", False)) else ""
        cells.append(threshold_cell(row) + mark)
    return "; ".join(cells)


def threshold_cell(row: pd.Series) -> str:
    """``0.412 [0.40, 0.43] sudden`` from a thresholds.csv row."""
    kind = str(row.get("kind", ""))
    t = row.get("threshold")
    if t is None or not np.isfinite(float(t)):
        return kind or "none"
    lo, hi = row.get("ci_low"), row.get("ci_high")
    ci = f" [{float(lo):.3f}, {float(hi):.3f}]" if lo is not None and hi is not None and np.isfinite([lo, hi]).all() else ""
    return f"{float(t):.3f}{ci} {kind}".strip()


def layer_matrix(layers: pd.DataFrame, max_rows: int = DEFAULT_MAX_ROWS) -> tuple[pd.DataFrame, str]:
    """Per-tensor sparsity at every level, as a (tensors x levels) matrix.

    Args:
        layers (pd.DataFrame): ``layers.csv`` (level, qualified_name, component, region, block, role, numel, sparsity).
        max_rows (int): above this many tensors, rows are tensors grouped by component/region/block/role, with
            sparsity weighted by ``numel``. Default: :data:`DEFAULT_MAX_ROWS`.

    Returns:
        tuple[pd.DataFrame, str]: the matrix (index: row labels, columns: levels) and what a row is
        (``"tensor"`` or ``"group"``).
    """
    df = layers.copy()
    if df["qualified_name"].nunique() <= max_rows or not set(GROUP_KEYS) <= set(df.columns):
        m = df.pivot_table(index="qualified_name", columns="level", values="sparsity", aggfunc="mean", sort=False)
        return m.reindex(sorted(m.columns), axis=1), "tensor"  # levels ascending, not in evaluation order
    df["_row"] = df[list(GROUP_KEYS)].astype(str).agg("/".join, axis=1)
    w = df["numel"].astype(float) if "numel" in df else pd.Series(1.0, index=df.index)
    df["_z"] = df["sparsity"].astype(float) * w
    df["_w"] = w
    g = df.groupby(["_row", "level"], sort=False)[["_z", "_w"]].sum()
    m = (g["_z"] / g["_w"]).unstack("level")
    return m.reindex(index=df["_row"].drop_duplicates(), columns=sorted(m.columns)), "group"


def critical_density(run: RunData, max_rows: int = DEFAULT_MAX_ROWS) -> tuple[pd.DataFrame, bool] | None:
    """Critical weights per layer (or per component/role) divided by the layer's size, one column per meaning.

    Layers come from each set's ``weights.csv``; without one, from the summary's ``where`` counts (keyed
    ``component/role``). Sizes come from ``layers.csv``.

    Returns:
        tuple[pd.DataFrame, bool] | None: the matrix (rows: layers or component/role, columns: meanings) and
        whether it is normalised by ``numel`` (False: raw counts, sizes unknown); None without critical sets.
    """
    if not run.critical:
        return None
    layers = run.table("layers")
    sizes = None
    if layers is not None and {"qualified_name", "numel"} <= set(layers.columns):
        sizes = layers.drop_duplicates("qualified_name").set_index("qualified_name")
    per_layer = all(c.weights is not None and "qualified_name" in c.weights for c in run.critical)
    if per_layer:
        n_layers = len(set().union(*(set(c.weights["qualified_name"]) for c in run.critical)))
        per_layer = n_layers <= max_rows
    counts: dict[str, pd.Series] = {}
    for c in run.critical:
        if per_layer:
            counts[c.meaning] = c.weights["qualified_name"].value_counts()
        elif isinstance(c.summary.get("where"), dict):
            counts[c.meaning] = pd.Series(c.summary["where"], dtype=float)
        elif c.weights is not None and {"component", "role"} <= set(c.weights.columns):
            counts[c.meaning] = (c.weights["component"].astype(str) + "/" + c.weights["role"].astype(str)).value_counts()
    if not counts:
        return None
    matrix = pd.DataFrame(counts).fillna(0.0).astype(float).sort_index()
    if sizes is None:
        return matrix, False
    if per_layer:
        numel = sizes["numel"].reindex(matrix.index)
    elif {"component", "role"} <= set(sizes.columns):
        numel = sizes.groupby(sizes["component"].astype(str) + "/" + sizes["role"].astype(str))["numel"].sum()
        numel = numel.reindex(matrix.index)
    else:
        return matrix, False
    if numel.isna().any():
        return matrix, False
    return matrix.div(numel.astype(float), axis=0), True


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dict -> sorted (dotted key, leaf value) pairs, for key/value tables."""
    out: list[tuple[str, object]] = []
    for k in sorted(d, key=str):
        v = d[k]
        if isinstance(v, dict) and v:
            out += flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out
