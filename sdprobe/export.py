"""Export a pruned pipeline: redo a sweep run's pruning at one level and save it as a stock diffusers folder.

The run's pipeline is loaded again (``config["model"]``) and scored with the run's own method, selectors, seed
and calibration prompts (the sweep's :func:`~sdprobe.sweep.run.progressive_masks`), so the exported weights are
the ones the run measured at that level. The pruned pipeline is written with ``save_pretrained(...,
safe_serialization=True)`` into a hidden temporary folder beside the output, which is renamed into place only
when complete: a failure leaves no half-written folder. The live pipeline is restored exactly afterwards.

The zero counts of the export are read back from the saved ``.safetensors`` files, not from the live model, and
written with the run's configuration to ``OUT/sdprobe_export.json``.

An optional N:M layout (method "nm": in every group of M consecutive input weights of a row of a Linear weight,
the N of smallest magnitude are zeroed, after the run's pruning, so the run's zeros are kept) makes the Linear
weights acceptable to ``torch.sparse.to_sparse_semi_structured`` (2:4), whose kernels need a CUDA device; on the
CPU the pattern is validated with :func:`check_nm`.

Paper (N:M): Mishra et al. 2021, "Accelerating Sparse Deep Neural Networks", https://arxiv.org/abs/2104.08378

Example:
    >>> result = export_pruned("runs/te-magnitude", 0.35, "pruned/")
    >>> result.zeros["text_encoder"]["sparsity"]
    0.3413
    >>> pipe = DiffusionPipeline.from_pretrained("pruned/")
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sdprobe.errors import RunError
from sdprobe.io import write_json
from sdprobe.provenance import verify
from sdprobe.runs import RunDir, environment, now

log = logging.getLogger(__name__)
EXPORT_INFO = "sdprobe_export.json"  # written into the exported folder
SAFETENSORS_SUFFIX = ".safetensors"
LEVEL_TOLERANCE = 1e-9  # slack when comparing a requested sparsity with the run's covered range


# --- N:M layout ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NMPattern:
    """At most ``m - n`` non-zeros in every group of ``m`` consecutive entries of a row (2:4: ``n=2, m=4``)."""

    n: int
    m: int

    def __post_init__(self) -> None:
        if self.m < 2 or not 0 < self.n < self.m:
            raise ValueError(f"an N:M pattern needs M >= 2 and 0 < N < M, got {self.n}:{self.m}")

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"


def parse_nm(text: str) -> NMPattern:
    """Parse ``"N:M"``, e.g. ``"2:4"`` (N weights of every M are zero)."""
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"expected an N:M pattern such as 2:4, got {text!r}")
    return NMPattern(int(parts[0]), int(parts[1]))


def _groups(weight: torch.Tensor, pattern: NMPattern, name: str) -> torch.Tensor:
    """The weight as ``(rows, row_length // m, m)``; a clear error unless it is a matrix with rows divisible by m."""
    if weight.dim() != 2:
        raise ValueError(f"{name}: an N:M layout applies to Linear (2-D) weights, got shape {tuple(weight.shape)}")
    rows, cols = weight.shape
    if cols % pattern.m:
        raise ValueError(f"{name} has rows of {cols} weights, not a multiple of M={pattern.m}")
    return weight.reshape(rows, cols // pattern.m, pattern.m)


def nm_indices(weight: torch.Tensor, pattern: NMPattern, name: str = "weight") -> torch.Tensor:
    """Flat indices of the ``n`` smallest-magnitude entries of every group of ``m`` (zeros count as smallest).

    Args:
        weight (torch.Tensor): a ``(rows, cols)`` weight, ``cols`` divisible by ``m``.
        pattern (NMPattern): the layout.
        name (str): used in error messages. Default: ``"weight"``.

    Returns:
        torch.Tensor: int64 flat indices, ``rows * cols // m * n`` of them (some may already be zero).

    Example:
        >>> nm_indices(torch.tensor([[4.0, -1.0, 3.0, 0.5]]), NMPattern(2, 4)).tolist()
        [3, 1]
    """
    groups = _groups(weight.detach(), pattern, name)  # (R, G, M)
    order = torch.argsort(groups.abs().float(), dim=-1, stable=True)[..., : pattern.n]  # (R, G, N)
    rows, n_groups, _ = groups.shape
    base = torch.arange(rows * n_groups, device=weight.device).reshape(rows, n_groups, 1) * pattern.m
    return (base + order).reshape(-1)


def nm_violations(weight: torch.Tensor, pattern: NMPattern, name: str = "weight") -> int:
    """Number of groups of ``m`` with more than ``m - n`` non-zeros (0: the weight has the pattern)."""
    nonzero = (_groups(weight.detach(), pattern, name) != 0).sum(dim=-1)  # (R, G)
    return int((nonzero > pattern.m - pattern.n).sum())


def check_nm(weight: torch.Tensor, pattern: NMPattern, name: str = "weight") -> None:
    """Raise ``ValueError`` unless ``weight`` has the N:M pattern (what ``to_sparse_semi_structured`` needs)."""
    bad = nm_violations(weight, pattern, name)
    if bad:
        raise ValueError(f"{name} breaks the {pattern} pattern in {bad} group(s) of {pattern.m}")


# --- what to export -----------------------------------------------------------------------------------------------

def resolve_sparsity(config, done_levels: list[float], sparsity: float | Mapping[str, float]) -> tuple[dict[str, float], float | None]:
    """Per-component sparsity of an export, checked against what the run covered.

    Args:
        config (SweepConfig): the run's configuration.
        done_levels (list[float]): the levels the run evaluated.
        sparsity (float | Mapping[str, float]): a sweep level (each component at ``level + offset``, as in the
            run), or a sparsity for every pruned component, e.g. ``{"text_encoder": 0.475, "unet": 0.35}``.

    Returns:
        tuple[dict[str, float], float | None]: component -> sparsity, and the level (``None`` for a mapping).

    Raises:
        ValueError: a value outside [0, 1) or outside the run's covered range, or components that do not match
            the run's (the message names the valid ones).
        RunError: the run has no evaluated level.
    """
    if not done_levels:
        raise RunError("the run has no evaluated level yet; finish (or resume) its sweep first")
    lo, hi = min(done_levels), max(done_levels)
    plans = config.components
    if isinstance(sparsity, Mapping):
        missing, unknown = sorted(set(plans) - set(sparsity)), sorted(set(sparsity) - set(plans))
        if missing or unknown:
            raise ValueError(f"give one sparsity for each component the run pruned ({', '.join(plans)}); "
                             f"missing: {missing or 'none'}, unknown: {unknown or 'none'}")
        targets, level = {c: float(sparsity[c]) for c in plans}, None
    else:
        level = float(sparsity)
        _check_unit(level, "sparsity")
        if not lo - LEVEL_TOLERANCE <= level <= hi + LEVEL_TOLERANCE:
            raise ValueError(f"level {level} is outside the levels the run covered, [{lo}, {hi}]")
        targets = {c: plan.sparsity(level) for c, plan in plans.items()}
    for c, s in targets.items():
        _check_unit(s, f"{c} sparsity")
        low, high = plans[c].sparsity(lo), plans[c].sparsity(hi)
        if not low - LEVEL_TOLERANCE <= s <= high + LEVEL_TOLERANCE:
            raise ValueError(f"{c} sparsity {s} is outside what the run covered for {c}, [{low}, {high}]")
    return targets, level


def _check_unit(value: float, what: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {value}")


# --- counting and writing -----------------------------------------------------------------------------------------

def count_zeros(folder: Path) -> dict[str, dict[str, float]]:
    """Zeros of the floating-point tensors in a saved pipeline, per component, read from its safetensors files.

    Returns:
        dict: component (sub-folder) -> ``{"zeros": int, "numel": int, "sparsity": zeros / numel}``.
    """
    from safetensors import safe_open

    out: dict[str, dict[str, float]] = {}
    for path in sorted(Path(folder).rglob(f"*{SAFETENSORS_SUFFIX}")):
        component = path.relative_to(folder).parts[0]
        entry = out.setdefault(component, {"zeros": 0, "numel": 0})
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                if tensor.is_floating_point():
                    entry["zeros"] += int((tensor == 0).sum())
                    entry["numel"] += tensor.numel()
    for entry in out.values():
        entry["sparsity"] = entry["zeros"] / entry["numel"] if entry["numel"] else 0.0
    return out


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; choose a folder for the exported pipeline")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another -o or pass --overwrite")


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` folder to ``out``; an existing ``out`` is replaced only with ``overwrite``."""
    _check_out(out, overwrite)
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
        os.replace(out, old / out.name)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)  # onto a missing or empty folder


@dataclass
class ExportResult:
    """What :func:`export_pruned` wrote.

    Attributes:
        path (Path): the exported pipeline folder.
        sparsity (dict[str, float]): component -> requested sparsity.
        level (float | None): the sweep level, when the export was asked for by level.
        nm (str | None): the N:M pattern applied, e.g. ``"2:4"``.
        zeros (dict): component -> ``{"zeros", "numel", "sparsity"}`` counted in the saved files.
    """

    path: Path
    sparsity: dict[str, float]
    level: float | None
    nm: str | None
    zeros: dict[str, dict[str, float]]


def export_pruned(run: RunDir | str | Path, sparsity: float | Mapping[str, float], out: str | Path, *,
                  nm: str | NMPattern | None = None, overwrite: bool = False, pipe=None, device: str | None = None,
                  dtype: str | None = None) -> ExportResult:
    """Save a sweep run's pipeline pruned at one level (or per-component budget) as a diffusers folder.

    Args:
        run (RunDir | str | Path): a sweep run directory.
        sparsity (float | Mapping[str, float]): a level of the run (each component at ``level + offset``), or
            component -> sparsity for every component the run pruned; inside the range the run covered.
        out (str | Path): the output folder; it must be missing or empty unless ``overwrite``.
        nm (str | NMPattern | None): also impose an N:M layout, e.g. ``"2:4"``, on the pruned Linear weights.
            Default: ``None``.
        overwrite (bool): replace a non-empty ``out``. Default: False.
        pipe: the run's pipeline already loaded (restored exactly afterwards); ``None`` loads ``config["model"]``.
        device (str | None): where to load and score; ``None``: the run's device.
        dtype (str | None): weight dtype, e.g. ``"float32"``; ``None``: the run's dtype.

    Returns:
        ExportResult: the folder and the zero counts read back from it.

    Raises:
        ValueError: a sparsity outside [0, 1) or outside the run's range, a bad N:M pattern, a weight whose rows
            do not divide into groups of M. FileExistsError: ``out`` is not empty and not ``overwrite``.
        RunError: ``run`` is not a sweep run or has no evaluated level.

    Example:
        >>> export_pruned("runs/joint", {"text_encoder": 0.475, "unet": 0.35}, "pruned/", nm="2:4")
    """
    from sdprobe.models import load_pipeline
    from sdprobe.sweep.run import (
        calibration_prompts,
        load_config,
        progressive_masks,
        sweep_prompts,
    )

    run = run if isinstance(run, RunDir) else RunDir.open(Path(run), kind="sweep")
    config = load_config(run)
    targets, level = resolve_sparsity(config, run.done_levels(), sparsity)
    pattern = parse_nm(nm) if isinstance(nm, str) else nm
    out = Path(out)
    _check_out(out, overwrite)
    if pipe is None:
        dtype_name = dtype or config.dtype
        if not isinstance(getattr(torch, dtype_name, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype_name!r}; use e.g. float32, float16 or bfloat16")
        pipe = load_pipeline(config.model, device=device or config.device, dtype=getattr(torch, dtype_name))
    if pipe.unet.dtype == getattr(torch, config.dtype):  # a dtype cast changes the bytes, not the model
        verify(run.path, pipe)
    prompts, _ = sweep_prompts(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    # moves weight by weight: the pipeline is saved inside the masks, and batched moves would share storage
    with progressive_masks(pipe, config, calibration_prompts(config, prompts), moves="tensor") as masks, \
            contextlib.ExitStack() as stack:
        for component, mask in masks.items():
            mask.set_sparsity(targets[component])
        if pattern is not None:
            for mask in masks.values():
                stack.enter_context(mask.override(prune=_nm_plan(mask.refs, pattern)))
                for ref in mask.refs:
                    if ref.kind == "linear":
                        check_nm(ref.weight, pattern, ref.qualified_name)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        try:
            pipe.save_pretrained(tmp, safe_serialization=True)
            zeros = count_zeros(tmp)
            write_json(tmp / EXPORT_INFO, {
                "run": str(run.path), "level": level, "sparsity": targets, "nm": None if pattern is None else str(pattern),
                "zeros": zeros, "config": run.config(), "environment": environment(), "created": now(),
            })
            _move_into_place(tmp, out, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    for component, z in zeros.items():
        log.info("%s: %d of %d weights are zero (%.4f)", component, z["zeros"], z["numel"], z["sparsity"])
    return ExportResult(out, targets, level, None if pattern is None else str(pattern), zeros)


def _nm_plan(refs, pattern: NMPattern) -> dict[str, torch.Tensor]:
    """Flat indices that give every Linear weight in ``refs`` the pattern; Conv2d weights are left as they are."""
    linear = [r for r in refs if r.kind == "linear"]
    plan = {r.qualified_name: nm_indices(r.weight, pattern, r.qualified_name) for r in linear}
    skipped = len(refs) - len(linear)
    if skipped:
        log.info("N:M %s applies to Linear weights; %d Conv2d weight(s) keep their unstructured pruning", pattern, skipped)
    return plan


def read_export_info(folder: str | Path) -> dict:
    """The ``sdprobe_export.json`` of an exported folder."""
    from sdprobe.io import read_json

    path = Path(folder) / EXPORT_INFO
    if not path.exists():
        raise RunError(f"{folder} is not an sdprobe export (no {EXPORT_INFO}); make one with `sdprobe export`")
    return read_json(path)


__all__ = ["export_pruned", "ExportResult", "NMPattern", "parse_nm", "nm_indices", "nm_violations", "check_nm",
           "resolve_sparsity", "count_zeros", "read_export_info", "EXPORT_INFO"]
