"""Progressive pruning sweeps: prune in fine steps without reloading, generate, score, refine, resume.

Scores are computed once per component and sorted once (:class:`sdprobe.prune.ProgressiveMask`), so moving from
one level to the next touches only the weights that change. Every level uses the same prompts, seeds and initial
noise. Each finished level is written atomically to the run directory before the next starts, so a killed sweep
started again with the same command resumes without losing or repeating a row.

Under ``accelerate launch`` or ``torchrun`` every process prunes to the same level and generates its share of the
prompts; the main process gathers the images, scores them and alone writes the run directory, and the levels to
evaluate are decided there and broadcast (see :mod:`sdprobe.distributed`). A single process takes the same path
without any communication.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sdprobe import provenance
from sdprobe.architecture import select
from sdprobe.checks import MAX_SEED
from sdprobe.distributed import Processes, current
from sdprobe.errors import RunError
from sdprobe.generate import generate
from sdprobe.io import save_image_grid, write_json
from sdprobe.metrics import make_metrics, set_quantities
from sdprobe.metrics.registry import check_prompts
from sdprobe.prune import ProgressiveMask, make_scorer, mask_from_scorer
from sdprobe.runs import SAMPLES, RunDir
from sdprobe.sweep.config import GRID_DECIMALS, SweepConfig
from sdprobe.thresholds import next_levels
from sdprobe.thresholds.curve import MIN_LEVELS
from sdprobe.thresholds.run import run_quantities, run_tables
from sdprobe.world import format_prompt, sample_specs

log = logging.getLogger(__name__)
SAMPLE_SCALE = 2  # sample strips are enlarged this many times (nearest neighbour) for the report


def sweep_prompts(config: SweepConfig) -> tuple[list[str], list[int]]:
    """The fixed prompts and seeds of a sweep (drawn from the organism's grammar unless given)."""
    rng = np.random.default_rng(config.seed)
    prompts = list(config.prompts) if config.prompts else [format_prompt(s) for s in sample_specs(config.n_prompts, rng)]
    seeds = rng.integers(0, 2**31 - 1, size=len(prompts)).tolist()
    return prompts, seeds


def calibration_prompts(config: SweepConfig, prompts: list[str]) -> list[str]:
    """Calibration prompts for activation-aware methods: drawn independently of the evaluation prompts."""
    if config.prompts:
        return prompts[: config.n_calibration]
    rng = np.random.default_rng(config.seed + 1)
    return [format_prompt(s) for s in sample_specs(config.n_calibration, rng, p_omit=0.3)]


def scope_refs(pipe, config: SweepConfig) -> dict[str, list]:
    """The weights each component's selectors name (``WeightRef`` lists), checked to lie in that component.

    Raises:
        ValueError: an unknown selector (the message lists the valid ones), or selectors of another component.
    """
    scope = {}
    for component, plan in config.components.items():
        refs = select(pipe, plan.selectors, include_conv=config.include_conv)
        wrong = sorted({r.component for r in refs} - {component})
        if wrong:
            raise ValueError(f"selectors {plan.selectors} of component {component!r} select weights of {wrong}")
        scope[component] = refs
    return scope


@contextlib.contextmanager
def progressive_masks(pipe, config: SweepConfig, calibration: list[str], store: str = "auto",
                      moves: str = "auto") -> Iterator[dict[str, ProgressiveMask]]:
    """One :class:`ProgressiveMask` per pruned component; all weights are restored exactly on exit.

    ``store`` says where the masks keep originals and positions (see :mod:`sdprobe.prune.storage`); the default
    keeps them off the weights' device (host memory for CUDA, a temporary file for the CPU), so the model plus
    the masks stay near the model's own memory. ``moves`` says how they move between levels (see
    :mod:`sdprobe.prune.flat`); the default batches the moves of CUDA weights.
    """
    with contextlib.ExitStack() as stack:
        masks = {}
        for component, refs in scope_refs(pipe, config).items():
            scorer = make_scorer(config.method, pipe, calibration_prompts=calibration, seed=config.seed,
                                 generation=config.generation)
            mask = mask_from_scorer(refs, scorer, group=config.group, max_sparsity=config.max_sparsity(component),
                                    store=store, moves=moves)
            masks[component] = stack.enter_context(mask)
        yield masks


def _set_level(masks: dict[str, ProgressiveMask], config: SweepConfig, level: float) -> None:
    for component, mask in masks.items():
        mask.set_sparsity(config.components[component].sparsity(level))


def _generate_all(pipe, config: SweepConfig, prompts, seeds, processes: Processes) -> np.ndarray | None:
    """Images of all prompts on the main process (``None`` on the others); each process generates its share."""
    return processes.gather_shares(lambda part: generate(pipe, prompts[part], seeds[part], config.generation),
                                   len(prompts))


REFERENCE_SEED_OFFSET = 1_000_003  # set metrics' reference: the dense model's images of these other seeds


class DenseImages:
    """The dense model's images, generated once per (prompts, seeds, sampler) and shared.

    A sweep needs them twice (the reference of per-image metrics, and its dense level), and the sweeps of a study
    use the same prompts and seeds, so a study hands one ``DenseImages`` to all its sweeps. It holds images of one
    pipeline in its unpruned state: ask only while no weight is pruned (before the masks prune anything, or at a
    level where every component is at sparsity 0). Under several processes every process asks in the same order,
    so all agree on what is cached; the images live on the main process (``None`` elsewhere).
    """

    def __init__(self) -> None:
        self._images: dict[tuple, np.ndarray | None] = {}
        self.generated = 0  # images made (the rest were reused)

    def get(self, pipe, config: SweepConfig, prompts: list[str], seeds: list[int], procs: Processes) -> np.ndarray | None:
        key = (tuple(prompts), tuple(int(s) for s in seeds), tuple(sorted(config.generation.to_dict().items())))
        if key not in self._images:
            self._images[key] = _generate_all(pipe, config, prompts, seeds, procs)
            self.generated += len(prompts)
        return self._images[key]


def _is_dense(config: SweepConfig, level: float) -> bool:
    return all(plan.sparsity(level) == 0 for plan in config.components.values())


def _references(pipe, config, prompts, seeds, procs, metrics,
                dense: DenseImages) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The unpruned images the metrics compare with, generated once: ``(paired, independent)``.

    Per-image metrics (``distance``) compare each image with the dense image of the same prompt and seed. Set
    metrics (FID, fd-clip without real images) compare with the dense images of the same prompts and *other*
    seeds: an independent sample of the dense model, so the dense level measures the sampling floor instead of a
    distance of exactly zero between a set and itself.
    """
    wanted = [m for m in metrics if getattr(m, "needs_reference", False)]
    paired = any(not set_quantities(m) for m in wanted)
    independent = any(set_quantities(m) for m in wanted)
    other = [(s + REFERENCE_SEED_OFFSET) % (MAX_SEED + 1) for s in seeds]
    return (dense.get(pipe, config, prompts, seeds, procs) if paired else None,
            dense.get(pipe, config, prompts, other, procs) if independent else None)


def _score_level(pipe, config, masks, level, prompts, seeds, images, reference, metrics):
    """Score one level's images against ``reference`` (see :func:`_references`); returns (image rows, per-tensor
    sparsity table, per-set values)."""
    paired, independent = reference
    table = pd.DataFrame({"level": level, "prompt": prompts, "seed": seeds, "index": np.arange(len(prompts))})
    sets: dict[str, float] = {}
    for metric in metrics:
        if set_quantities(metric):
            sets.update(metric.score_set(images, independent))
        else:
            table = pd.concat([table, metric.score(prompts, images, paired)], axis=1)
    stats, layers = {}, []
    scope_zero = scope_numel = 0
    for component, mask in masks.items():
        s = mask.stats(pipe)
        stats[f"sparsity_{component}"] = s["component_sparsity"][component]
        stats[f"sparsity_scope_{component}"] = s["scope_by_component"][component]
        scope_zero += s["scope_sparsity"] * s["scope_numel"]
        scope_numel += s["scope_numel"]
        layers.append(mask.layer_table(mask.sparsity))
    table.insert(1, "sparsity_scope", scope_zero / max(scope_numel, 1))
    for k, v in stats.items():
        table[k] = v
    return table, pd.concat(layers, ignore_index=True), sets


def _write_level(run: RunDir, pipe, config, masks, level, prompts, seeds, images, reference, metrics,
                 n_samples: int) -> None:
    """Score one level and write it to the run directory (main process only)."""
    rows, layers, sets = _score_level(pipe, config, masks, level, prompts, seeds, images, reference, metrics)
    if n_samples:
        save_image_grid(images[:n_samples], run.sample_image(level), columns=n_samples, scale=SAMPLE_SCALE)
    run.write_level(level, rows, layers, sets)


def _open_run(out, config: SweepConfig, higher: dict[str, bool], samples: dict) -> RunDir:
    run = RunDir.open_or_create(out, {**config.to_dict(), "higher_is_better": higher})
    write_json(run.path / SAMPLES, samples)
    return run


def _refinement_round(run: RunDir, config: SweepConfig, known: set[float]) -> tuple[list[float], list[float]]:
    """The levels one refinement round proposes from the rows of the ``known`` levels, and those not yet done.

    Every metric is refined with its declared direction, floor and scale, except ``distance``, which measures
    change rather than meaning."""
    quantities = {m: q for m, q in run_quantities(run).items() if m != "distance"}
    proposals: set[float] = set()
    for per, table in run_tables(run).items():
        names = [m for m, q in quantities.items() if q.per == per and m in table.columns and table[m].notna().any()]
        table = table[table["level"].round(GRID_DECIMALS).isin(known)]
        if names and table["level"].nunique() >= MIN_LEVELS:
            proposals.update(next_levels(
                table, names, resolution=config.refine, seed_col="seed" if per == "image" else None,
                higher_is_better={m: quantities[m].higher_is_better for m in names},
                floor={m: quantities[m].floor for m in names}, scale={m: quantities[m].scale for m in names}))
    new = sorted({round(p, GRID_DECIMALS) for p in proposals} - known)
    new = [lv for lv in new if config.start <= lv <= config.stop]
    return new, [lv for lv in new if not run.has_level(lv)]


def run_sweep(pipe, config: SweepConfig, out, progress: bool = True, processes: Processes | None = None,
              store: str = "auto", dense: DenseImages | None = None) -> RunDir:
    """Run (or resume) a progressive sweep and write its run directory.

    Args:
        pipe: the loaded pipeline (see :func:`sdprobe.models.load_pipeline`).
        config (SweepConfig): what to prune, how, at which levels, with which prompts and metrics.
        out (Path): the run directory; resumed when it holds a run with the same config.
        progress (bool): show a progress bar with ETA (on the main process). Default: True.
        processes (Processes | None): the processes sharing the work; ``None``: those the launcher started
            (:func:`sdprobe.distributed.current`: one process without a launcher). Default: ``None``.
        store (str): where the masks keep originals: ``"auto"``, ``"memory"``, ``"cpu"`` or ``"disk"`` (see
            :func:`sdprobe.prune.storage.resolve_store`). It changes memory and speed, never results, so it is not
            part of the config. Default: ``"auto"``.
        dense (DenseImages | None): the unpruned images already made with this pipeline (a study shares one
            between its sweeps); the sweep's reference and its dense level come from it. Default: a fresh one.

    Returns:
        RunDir: the finished run.

    Raises:
        RunError: ``out`` holds a run with a different config (the message says what differs).

    Example:
        >>> run = run_sweep(pipe, SweepConfig(components={"text_encoder": ComponentPlan(["text_encoder"])}), "runs/te")
        >>> run.results().groupby("level")["color"].mean()
    """
    metrics = make_metrics(config.metrics, config.metric_options)
    higher = {col: hib for m in metrics for col, hib in m.higher_is_better.items()}
    scope_refs(pipe, config)  # bad selectors fail before the run directory is created
    procs = processes or current(pipe.device)
    prompts, seeds = sweep_prompts(config)
    check_prompts(metrics, prompts)  # a metric that cannot read these prompts fails before the run folder exists
    provenance.check_source(pipe, config.model)
    n_samples = min(config.n_samples, len(prompts))
    samples = {"prompts": prompts[:n_samples], "seeds": seeds[:n_samples]}
    run = procs.on_main(functools.partial(_open_run, out, config, higher, samples))
    procs.on_main(functools.partial(provenance.record, run.path, pipe, config.model))
    dense = DenseImages() if dense is None else dense
    reference = _references(pipe, config, prompts, seeds, procs, metrics, dense)

    with progressive_masks(pipe, config, calibration_prompts(config, prompts), store) as masks:
        todo = procs.on_main(lambda: [lv for lv in config.grid() if not run.has_level(lv)])
        bar = tqdm(total=len(config.grid()), initial=len(config.grid()) - len(todo), desc="sweep", unit="level",
                   disable=not (progress and procs.is_main))
        # Each refinement round proposes levels from the levels of the earlier rounds only (``known``), never from
        # levels a killed run finished ahead of their round, so a resumed sweep replays the same rounds.
        known, rounds = set(config.grid()), 0
        while True:
            for level in todo:
                bar.set_postfix(level=f"{level:.4f}")
                _set_level(masks, config, level)
                images = (dense.get(pipe, config, prompts, seeds, procs) if _is_dense(config, level)
                          else _generate_all(pipe, config, prompts, seeds, procs))
                procs.on_main(functools.partial(_write_level, run, pipe, config, masks, level, prompts, seeds, images,
                                                reference, metrics, n_samples))
                bar.update(1)
            if config.refine is None or rounds >= config.max_refine_rounds:
                break
            new, todo = procs.on_main(functools.partial(_refinement_round, run, config, known))
            if not new:
                break
            known.update(new)
            bar.total += len(new)
            bar.update(len(new) - len(todo))
            rounds += 1
        bar.close()
    procs.on_main(lambda: run.finish() is None)  # every process returns once the run is consolidated
    log.info("sweep finished: %d levels in %s", len(run.done_levels()), run.path)
    return run


def load_config(run: RunDir) -> SweepConfig:
    """The :class:`SweepConfig` a run was made with."""
    cfg = run.config()
    if cfg.get("kind") != "sweep":
        raise RunError(f"{run.path} is not a sweep run")
    return SweepConfig.from_dict(cfg)


__all__ = ["DenseImages", "run_sweep", "sweep_prompts", "progressive_masks", "load_config"]
