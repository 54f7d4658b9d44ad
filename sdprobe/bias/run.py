"""Bias runs on disk (``kind: "bias"``): measure a probe dense and under pruning, then its bias-critical weights.

Files (see ``sdprobe/runs.py`` for the run contract): ``labels.csv`` (one row per image and condition),
``distribution.csv``, ``metrics.csv``, ``vs_sparsity.csv``, ``distribution.png``, ``vs_sparsity.png`` and, after
:func:`write_bias_critical`, one folder ``critical/<group>/`` per debiased group: ``set.json`` (the weight-set file,
:mod:`sdprobe.evidence.setfile`), ``summary.json`` (search, confirmation, verdict), ``indices.safetensors``,
``search.csv``, ``controls.csv``, ``distribution.csv`` (confirmation shares of every value, dense and with the set
removed, every group), ``explicit.csv`` (per explicit prompt), ``dose.csv`` and ``dose.png`` (dose-response), and
``critical/tests.csv``: every group's test with its Holm-adjusted p-value over the run.

Example:
    >>> run = run_bias(pipe, load_bias_probe("default-color"), oracle_classifier("color"), BiasRunConfig(), Path("runs/bias"))
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
from tqdm.auto import tqdm

from sdprobe import checks, provenance
from sdprobe.bias.classify import Classifier
from sdprobe.bias.confirm import verdict
from sdprobe.bias.critical import BiasCriticalResult
from sdprobe.bias.measure import distribution_rows, measure, metric_rows
from sdprobe.bias.plots import plot_distribution, plot_dose, plot_vs_sparsity
from sdprobe.bias.probes import BiasProbe
from sdprobe.bias.sparsity import bias_vs_sparsity, condition_name
from sdprobe.evidence import Split, WeightSet, write_set_file
from sdprobe.generate import GenerationConfig
from sdprobe.io import atomic_write_bytes, read_json, write_json
from sdprobe.runs import CRITICAL_DIR, RunDir, unlock_run

log = logging.getLogger(__name__)

LABELS, DISTRIBUTION, METRICS, VS_SPARSITY = "labels.csv", "distribution.csv", "metrics.csv", "vs_sparsity.csv"
DENSE = "dense"
CONDITIONS_DIR = "conditions"  # one labels file per measured condition, written as each finishes (resume)


@dataclass(frozen=True)
class BiasRunConfig:
    """What a bias run measures."""

    probe: str = "default-color"  # probe name or TOML path (recorded; the caller passes the loaded probe)
    model: str = "builtin:tiny-shapes"  # recorded for the report
    n_images: int = 200  # images per probe group and condition
    seed: int = 0  # first image seed; also seeds the bootstrap and the random scorer
    components: tuple[str, ...] = ()  # components to prune for bias-vs-sparsity, e.g. ("text_encoder",)
    methods: tuple[str, ...] = ("magnitude",)  # pruning methods for bias-vs-sparsity
    sparsities: tuple[float, ...] = ()  # levels; empty: dense only
    n_boot: int = 2000  # bootstrap resamples
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    set_file: str | None = None  # a weight-set file to apply, scaled by each of ``alphas``
    alphas: tuple[float, ...] = ()  # the set's weights x alpha (0 removes it)
    classifier: str | None = None  # the meaning metric that classified (oracle, clip-attributes); None: the probe's

    def __post_init__(self) -> None:
        from sdprobe.architecture import COMPONENTS
        from sdprobe.prune.factory import METHODS

        checks.positive_int("n_images", self.n_images)
        checks.seed("seed", self.seed)
        checks.non_negative_int("n_boot", self.n_boot)
        for s in self.sparsities:
            checks.fraction("sparsity", s)
        for a in self.alphas:
            checks.unit("alpha (the set's weights x alpha)", a)
        unknown = [c for c in self.components if c not in COMPONENTS]
        if unknown:
            raise ValueError(f"unknown component(s) {unknown}; valid: {', '.join(COMPONENTS)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown pruning method(s) {unknown}; valid: {', '.join(METHODS)}")
        if self.sparsities and not (self.components and self.methods):
            raise ValueError("sparsities need at least one component and one method to prune")
        if self.alphas and self.set_file is None:
            raise ValueError("alphas scale a weight set: give set_file (--set FILE) too")

    def to_dict(self) -> dict:
        return {**asdict(self), "generation": self.generation.to_dict()}


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    atomic_write_bytes(path, table.to_csv(index=False).encode())


def run_bias(pipe, probe: BiasProbe, classify: Classifier, config: BiasRunConfig, out: Path,
             progress: bool = True) -> RunDir:
    """Measure the probe dense and at each (component, method, sparsity); write the run directory.

    Returns:
        RunDir: the finished run.
    """
    found = _set_refs(pipe, config)  # a set that does not fit the model fails before anything is written
    provenance.check_source(pipe, config.model)
    run = RunDir.open_or_create(Path(out), {**config.to_dict(), "attribute": probe.attribute}, kind="bias")
    provenance.record(run.path, pipe, config.model)
    n_conditions = 1 + len(config.alphas) + len(config.components) * len(config.methods) * len(config.sparsities)
    bar = tqdm(total=n_conditions, desc="bias", unit="condition", disable=not progress)
    measured = _measured(run, bar)
    labels = measured(DENSE, lambda: measure(pipe, probe, classify, config.n_images, config.generation,
                                             config.seed)).assign(condition=DENSE)
    dist = [distribution_rows(labels, probe, DENSE, config.n_boot, seed=config.seed)]
    mets = [metric_rows(labels, probe, DENSE, config.n_boot, seed=config.seed)]
    all_labels, vs = [labels], []
    for cond, lab in _with_set(pipe, probe, classify, config, found, measured):
        all_labels.append(lab.assign(condition=cond))
        dist.append(distribution_rows(lab, probe, cond, config.n_boot, seed=config.seed))
        mets.append(metric_rows(lab, probe, cond, config.n_boot, seed=config.seed))
    if config.sparsities:
        for component in config.components:
            for method in config.methods:
                table, per_level = bias_vs_sparsity(pipe, probe, classify, component, method, config.sparsities,
                                                    config.n_images, config.generation, config.seed,
                                                    n_boot=config.n_boot, progress=False, measured=measured)
                vs.append(table)
                for level, lab in per_level.items():
                    cond = condition_name(component, method, level)
                    all_labels.append(lab.assign(condition=cond))
                    dist.append(distribution_rows(lab, probe, cond, config.n_boot, seed=config.seed))
                    mets.append(metric_rows(lab, probe, cond, config.n_boot, seed=config.seed))
    bar.close()
    _write_csv(run.path / LABELS, pd.concat(all_labels, ignore_index=True))
    distribution = pd.concat(dist, ignore_index=True)
    _write_csv(run.path / DISTRIBUTION, distribution)
    _write_csv(run.path / METRICS, pd.concat(mets, ignore_index=True))
    plot_distribution(distribution, run.path / "distribution.png")
    if vs:
        vs_table = pd.concat(vs, ignore_index=True)
        _write_csv(run.path / VS_SPARSITY, vs_table)
        plot_vs_sparsity(vs_table, run.path / "vs_sparsity.png")
    run.set_state("finished")
    return run


def _set_refs(pipe, config: BiasRunConfig):
    """The weight set of ``config.set_file`` and the tensors it names, checked to fit the model (or None)."""
    if config.set_file is None:
        return None
    from sdprobe.architecture import select
    from sdprobe.evidence import check_fits, read_set_file

    ws = read_set_file(Path(config.set_file))
    refs = select(pipe, sorted({name.split(".", 1)[0] for name in ws.weights}))
    check_fits(ws, {r.qualified_name: tuple(r.weight.shape) for r in refs}, config.model)
    return ws, [r for r in refs if r.qualified_name in ws.weights]


def _measured(run: RunDir, bar) -> Callable[[str, Callable[[], pd.DataFrame]], pd.DataFrame]:
    """``measured(condition, compute)``: the condition's labels from ``conditions/`` of the run, or computed and
    saved there (atomically) first; so a killed run resumes at the condition it was measuring."""
    folder = run.path / CONDITIONS_DIR

    def measured(condition: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        path = folder / f"{re.sub(r'[^A-Za-z0-9.@-]+', '_', condition)}.parquet"
        if path.exists():
            labels = pd.read_parquet(path)
        else:
            labels = compute()
            atomic_write_bytes(path, labels.to_parquet(index=False))
        bar.update(1)
        return labels

    return measured


def _with_set(pipe, probe: BiasProbe, classify: Classifier, config: BiasRunConfig, found, measured):
    """``(condition, labels)`` of the probe measured with the set scaled by each alpha."""
    if found is None:
        return
    from sdprobe.prune import ProgressiveMask

    ws, refs = found
    with ProgressiveMask(refs, {r.qualified_name: r.weight.detach().abs() for r in refs}, max_sparsity=0.0) as mask:
        for alpha in config.alphas:
            def compute(alpha=alpha):
                with mask.override(prune=ws.qualified(), keep=alpha):
                    return measure(pipe, probe, classify, config.n_images, config.generation, config.seed)

            cond = f"set x{alpha:g}"
            yield cond, measured(cond, compute)


def run_seeds(config: dict) -> set[int]:
    """The seeds a bias run measured with (a debiasing search must not use them)."""
    return set(range(int(config["seed"]), int(config["seed"]) + int(config["n_images"])))


def write_bias_critical(run: RunDir, probe: BiasProbe, result: BiasCriticalResult) -> Path:
    """Save a debiasing search under ``critical/<group>/``, add its confirmation distributions to the run's tables,
    and correct the run's family of bias tests (:func:`adjust_bias_family`).

    Returns:
        Path: the group's folder.
    """
    run.lock()  # one writer of critical/ at a time
    try:
        return _write_bias_critical(run, probe, result)
    finally:
        unlock_run(run.path)


def _write_bias_critical(run: RunDir, probe: BiasProbe, result: BiasCriticalResult) -> Path:
    from safetensors.torch import save_file

    group = result.summary["group"]
    folder = run.path / CRITICAL_DIR / group
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "indices.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in result.indices.items()}, str(tmp))
    tmp.replace(folder / "indices.safetensors")
    for name, table in (("search.csv", result.search), ("controls.csv", result.controls),
                        ("distribution.csv", result.distribution), ("explicit.csv", result.explicit),
                        ("dose.csv", result.dose)):
        _write_csv(folder / name, table)
    if not result.dose.empty:
        plot_dose(result.dose, result.summary["objective"], folder / "dose.png")
    write_json(folder / "summary.json", result.summary)  # written last: the folder counts once it exists
    rows = result.distribution.assign(
        condition=lambda d: "confirmation: " + d["condition"] + (" (" + group + " set)"), probe=lambda d: d["group"],
        attribute=probe.attribute,
        expected=lambda d: [(_group(probe, g).expected or {}).get(v, float("nan")) for g, v in zip(d["group"], d["value"])])
    old = pd.read_csv(run.path / DISTRIBUTION)
    keep = ~old["condition"].astype(str).str.endswith(f"({group} set)")
    _write_csv(run.path / DISTRIBUTION, pd.concat([old[keep], rows[list(old.columns)]], ignore_index=True))
    plot_distribution(pd.read_csv(run.path / DISTRIBUTION), run.path / "distribution.png")
    adjust_bias_family(run)
    return folder


def _group(probe: BiasProbe, name: str):
    return next(g for g in probe.groups if g.name == name)


def adjust_bias_family(run: RunDir) -> pd.DataFrame:
    """Holm over every debiasing test saved in the run; rewrites each group's verdict, ``set.json`` and
    ``critical/tests.csv``.

    Returns:
        pandas.DataFrame: one row per group: raw and adjusted p, verdict and its reasons.
    """
    from sdprobe.evidence import holm

    folders = sorted(p.parent for p in (run.path / CRITICAL_DIR).glob("*/summary.json"))
    summaries = [read_json(f / "summary.json") for f in folders]
    raw = [s["confirmation"]["p_value"] if s["confirmation"].get("size") else float("nan") for s in summaries]
    adjusted = holm([float("nan") if p is None else p for p in raw])
    rows = []
    for folder, s, p, q in zip(folders, summaries, raw, adjusted):
        claim, reasons = verdict(s["confirmation"], q, s["confirmation"]["alpha"])
        s.update({"p_adjusted": q, "family_size": sum(x == x for x in adjusted), "verdict": claim, "reasons": reasons})
        write_json(folder / "summary.json", s)
        if s["size"]:
            result_set = _weight_set_from_folder(run, folder, s)
            write_set_file(folder / "set.json", result_set)
        rows.append({"group": s["group"], "size": s["size"], "effect": s["confirmation"]["effect"], "p_value": p,
                     "p_adjusted": q, "verdict": claim, "reasons": "; ".join(reasons)})
    table = pd.DataFrame(rows)
    _write_csv(run.path / CRITICAL_DIR / "tests.csv", table)
    return table


def _weight_set_from_folder(run: RunDir, folder: Path, summary: dict) -> WeightSet:
    from safetensors.torch import load_file

    indices = {k: v.long() for k, v in load_file(str(folder / "indices.safetensors")).items()}
    splits = {name: Split.from_dict(name, d) for name, d in summary["splits"].items()}
    return WeightSet(kind="bias", model=str(run.config().get("model", "")), meaning=summary["meaning"],
                     method="saliency prefix (target_fit)", sweep={"selectors": summary["config"]["selectors"]},
                     window={"kind": "dense"}, weights=indices,
                     shapes={n: tuple(summary["shapes"][n]) for n in indices}, splits=splits, metric=summary["probe"],
                     evidence={"search": summary["search"], "confirmation": summary["confirmation"],
                               "p_adjusted": summary["p_adjusted"], "family_size": summary["family_size"]},
                     verdict=summary["verdict"],
                     extra={"probe": summary["probe"], "group": summary["group"], "target": summary["target"],
                            "reasons": summary["reasons"]})
