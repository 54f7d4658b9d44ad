"""Metrics by name, for configs and the CLI."""

from __future__ import annotations

import importlib

REGISTRY: dict[str, str] = {  # name -> "module:Class"
    "oracle": "sdprobe.metrics.oracle:OracleMetric",
    "distance": "sdprobe.metrics.distance:DistanceMetric",
    "clipscore": "sdprobe.metrics.clipscore:CLIPScoreMetric",
    "fid": "sdprobe.metrics.fid:FIDMetric",
    "unreadable": "sdprobe.metrics.unreadable:UnreadableMetric",
}


def metric_class(name: str) -> type:
    """The class registered under ``name`` (imported, not instantiated: no weights are loaded)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def declared_quantities(names: list[str]) -> dict:
    """Column -> :class:`~sdprobe.metrics.base.Quantity` of the named metrics, from their class declarations."""
    from sdprobe.metrics.base import quantities_of

    return {col: q for n in names for col, q in quantities_of(metric_class(n)).items()}


def make_metric(name: str, **kwargs):
    """Build a metric by name; ``kwargs`` go to its constructor (e.g. ``clip_path`` for CLIPScore)."""
    return metric_class(name)(**kwargs)


def make_metrics(names: list[str], options: dict[str, dict] | None = None) -> list:
    """Build several metrics; ``options`` maps a metric name to its constructor arguments."""
    if not names:
        raise ValueError(f"no metric given; valid: {', '.join(REGISTRY)}")
    options = options or {}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options given for metric(s) {unknown}, which are not among the metrics {names}")
    seen: dict[str, str] = {}
    for n in names:
        for col in declared_quantities([n]):
            if col in seen:
                raise ValueError(f"metrics {seen[col]!r} and {n!r} both measure {col!r}; keep one of them"
                                 if seen[col] != n else f"metric {n!r} is listed twice")
            seen[col] = n
    return [make_metric(n, **options.get(n, {})) for n in names]


def check_prompts(metrics: list, prompts: list[str]) -> None:
    """Let every metric that reads prompts check them before anything is generated or written (the oracle needs
    prompts of the organism's grammar)."""
    for metric in metrics:
        check = getattr(metric, "check_prompts", None)
        if check is not None:
            check(prompts)
