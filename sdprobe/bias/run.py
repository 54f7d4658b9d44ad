"""Bias runs on disk (``kind: "bias"``): measure a probe dense and under pruning, then its bias-critical weights.

Files (see ``sdprobe/runs.py`` for the run contract): ``labels.csv`` (one row per image and condition),
``distribution.csv``, ``metrics.csv``, ``vs_sparsity.csv``, ``distribution.png``, ``vs_sparsity.png`` and, after
:func:`run_bias_weights`, ``critical/`` (``summary.json``, ``indices.safetensors``, ``search.csv``,
``controls.csv``) plus the ``critical-removed`` condition in the tables.

Example:
    >>> run = run_bias(pipe, load_bias_probe("default-color"), oracle_classifier("color"), BiasRunConfig(), Path("runs/bias"))
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from sdprobe.bias.classify import Classifier
from sdprobe.bias.critical import BiasCriticalResult
from sdprobe.bias.measure import distribution_rows, measure, metric_rows
from sdprobe.bias.plots import plot_distribution, plot_vs_sparsity
from sdprobe.bias.probes import BiasProbe
from sdprobe.bias.sparsity import bias_vs_sparsity, condition_name
from sdprobe.generate import GenerationConfig
from sdprobe.io import atomic_write_bytes, write_json
from sdprobe.runs import RunDir

log = logging.getLogger(__name__)

LABELS, DISTRIBUTION, METRICS, VS_SPARSITY = "labels.csv", "distribution.csv", "metrics.csv", "vs_sparsity.csv"
DENSE, CRITICAL_REMOVED = "dense", "critical-removed"


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
    run = RunDir.open_or_create(Path(out), {**config.to_dict(), "attribute": probe.attribute}, kind="bias")
    labels = measure(pipe, probe, classify, config.n_images, config.generation, config.seed).assign(condition=DENSE)
    dist = [distribution_rows(labels, probe, DENSE, config.n_boot, seed=config.seed)]
    mets = [metric_rows(labels, probe, DENSE, config.n_boot, seed=config.seed)]
    all_labels, vs = [labels], []
    if config.sparsities:
        for component in config.components:
            for method in config.methods:
                table, per_level = bias_vs_sparsity(pipe, probe, classify, component, method, config.sparsities,
                                                    config.n_images, config.generation, config.seed,
                                                    n_boot=config.n_boot, progress=progress)
                vs.append(table)
                for level, lab in per_level.items():
                    cond = condition_name(component, method, level)
                    all_labels.append(lab.assign(condition=cond))
                    dist.append(distribution_rows(lab, probe, cond, config.n_boot, seed=config.seed))
                    mets.append(metric_rows(lab, probe, cond, config.n_boot, seed=config.seed))
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


def write_bias_critical(run: RunDir, probe: BiasProbe, classify: Classifier, result: BiasCriticalResult, pipe,
                        n_images: int, generation: GenerationConfig, seed: int, n_boot: int) -> None:
    """Save a bias-critical set under ``critical/`` and add the ``critical-removed`` condition to the tables."""
    from safetensors.torch import save_file

    from sdprobe.architecture import select
    from sdprobe.prune import ProgressiveMask

    folder = run.path / "critical"
    write_json(folder / "summary.json", result.summary)
    tmp = folder / "indices.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in result.indices.items()}, str(tmp))
    tmp.replace(folder / "indices.safetensors")
    _write_csv(folder / "search.csv", result.search)
    _write_csv(folder / "controls.csv", result.controls)
    refs = [r for r in select(pipe, list(result.summary["config"]["selectors"])) if r.qualified_name in result.indices]
    with ProgressiveMask(refs, {r.qualified_name: r.weight.detach().abs() for r in refs}, max_sparsity=0.0) as mask:
        with mask.override(prune=result.indices):
            labels = measure(pipe, probe, classify, n_images, generation, seed).assign(condition=CRITICAL_REMOVED)
    for name, rows in ((DISTRIBUTION, distribution_rows(labels, probe, CRITICAL_REMOVED, n_boot, seed=seed)),
                       (METRICS, metric_rows(labels, probe, CRITICAL_REMOVED, n_boot, seed=seed)),
                       (LABELS, labels)):
        old = pd.read_csv(run.path / name)
        _write_csv(run.path / name, pd.concat([old[old["condition"] != CRITICAL_REMOVED], rows], ignore_index=True))
    plot_distribution(pd.read_csv(run.path / DISTRIBUTION), run.path / "distribution.png")
