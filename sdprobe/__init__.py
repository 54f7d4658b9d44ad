"""sdprobe: find the critical weights of text-to-image diffusion models by pruning them.

The public API, one verb per module:

- load: :func:`load_pipeline` (``"builtin:tiny-shapes"``, a local diffusers folder, or a hub id)
- generate: :func:`sdprobe.generate.generate` with :class:`GenerationConfig` (seeded, batched, deterministic on CPU)
- select weights: :func:`select` (architecture selectors such as ``"text_encoder.mlp"`` or ``"unet.attn2"``)
- prune: :func:`sdprobe.prune.prune`, :func:`make_scorer`, :class:`ProgressiveMask` (exactly-restoring masks)
- sweep: :func:`run_sweep` with :class:`SweepConfig` / :class:`ComponentPlan`
- find thresholds: :func:`detect`, :func:`run_thresholds`, :func:`thresholds_table`
- isolate: :func:`sdprobe.isolate.isolate`, :func:`isolate_all`, :func:`load_critical_set`
- explain and probe bias: :mod:`sdprobe.attribution`, :mod:`sdprobe.bias`
- report: :func:`make_report`; everything at once: :func:`run_study`
- judge meanings: :func:`meaning_metric` (the organism's oracle, or ``clip-attributes`` for any model, reading a
  prompt suite from :func:`load_suite`)
- the organism's world and oracle: :mod:`sdprobe.world`

Heavy modules are imported on first use, so ``import sdprobe`` stays fast. ``generate``, ``prune`` and ``isolate``
share their names with their modules, so import them from there (``from sdprobe.generate import generate``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sdprobe")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

_EXPORTS = {
    "load_pipeline": "sdprobe.models",
    "ModelLoadError": "sdprobe.models",
    "GenerationConfig": "sdprobe.generate",
    "select": "sdprobe.architecture",
    "describe": "sdprobe.architecture",
    "make_scorer": "sdprobe.prune",
    "ProgressiveMask": "sdprobe.prune",
    "run_sweep": "sdprobe.sweep",
    "SweepConfig": "sdprobe.sweep",
    "ComponentPlan": "sdprobe.sweep",
    "detect": "sdprobe.thresholds",
    "run_thresholds": "sdprobe.thresholds",
    "thresholds_table": "sdprobe.thresholds",
    "isolate_all": "sdprobe.isolate",
    "load_critical_set": "sdprobe.isolate",
    "make_report": "sdprobe.report",
    "run_study": "sdprobe.study",
    "StudyConfig": "sdprobe.study",
    "load_study_config": "sdprobe.study",
    "RunDir": "sdprobe.runs",
    "OracleMetric": "sdprobe.metrics",
    "meaning_metric": "sdprobe.metrics",
    "load_suite": "sdprobe.suites",
    "evaluate_organism": "sdprobe.evaluate",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sdprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
