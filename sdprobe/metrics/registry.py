"""Metrics by name, for configs and the CLI."""

from __future__ import annotations

import importlib

REGISTRY: dict[str, str] = {  # name -> "module:Class"
    "oracle": "sdprobe.metrics.oracle:OracleMetric",
    "distance": "sdprobe.metrics.distance:DistanceMetric",
    "clipscore": "sdprobe.metrics.clipscore:CLIPScoreMetric",
    "fid": "sdprobe.metrics.fid:FIDMetric",
    "unreadable": "sdprobe.metrics.unreadable:UnreadableMetric",
    "clip-attributes": "sdprobe.metrics.clip_attributes:ClipAttributesMetric",
    "fd-clip": "sdprobe.metrics.fd_clip:FDCLIPMetric",
}
MEANING_METRICS = ("oracle", "clip-attributes")  # metrics that judge meanings: isolation, bias and thresholds per meaning
CLIP_METRICS = ("clipscore", "clip-attributes", "fd-clip")  # metrics that read images with a CLIP model (clip_path)
SUITE_METRICS = ("clip-attributes",)  # metrics that read a prompt suite (suite)


def metric_class(name: str) -> type:
    """The class registered under ``name`` (imported, not instantiated: no weights are loaded)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def declared_quantities(names: list[str], options: dict[str, dict] | None = None) -> dict:
    """Column -> :class:`~sdprobe.metrics.base.Quantity` of the named metrics, without loading any weights.

    A metric whose columns depend on its options (``clip-attributes``: one per attribute of its prompt suite)
    declares them through a ``declared(**options)`` class method; the others through their class attributes.
    """
    from sdprobe.metrics.base import quantities_of

    out = {}
    for n in names:
        cls = metric_class(n)
        declared = getattr(cls, "declared", None)
        out.update(declared(**(options or {}).get(n, {})) if declared is not None else quantities_of(cls))
    return out


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
        for col in declared_quantities([n], options):
            if col in seen:
                raise ValueError(f"metrics {seen[col]!r} and {n!r} both measure {col!r}; keep one of them"
                                 if seen[col] != n else f"metric {n!r} is listed twice")
            seen[col] = n
    for n in names:
        if n in CLIP_METRICS and "clip_path" not in options.get(n, {}):
            raise ValueError(f"metric {n!r} reads images with CLIP: give a CLIP model (--clip-model PATH, or "
                             f"metric_options = {{ {n} = {{ clip_path = '...' }} }} in a study recipe); "
                             "builtin:tiny-shapes-clip reads the organism")
    return [make_metric(n, **options.get(n, {})) for n in names]


def check_prompts(metrics: list, prompts: list[str]) -> None:
    """Let every metric that reads prompts check them before anything is generated or written (the oracle needs
    prompts of the organism's grammar)."""
    for metric in metrics:
        check = getattr(metric, "check_prompts", None)
        if check is not None:
            check(prompts)


def meaning_metric(name: str | None = None, options: dict | None = None, device: str | None = None):
    """A metric that judges meanings (one of :data:`MEANING_METRICS`), built with ``options``.

    Args:
        name (str | None): the metric. Default: None, the organism's oracle.
        options (dict | None): its constructor arguments (``clip_path``, ``suite``). Default: none.
        device (str | None): where a CLIP reader runs; ignored by the oracle. Default: its own default.

    Raises:
        ValueError: a metric that does not judge meanings; the message lists those that do.
    """
    name = name or "oracle"
    if name not in MEANING_METRICS:
        raise ValueError(f"metric {name!r} does not judge meanings; use one of: {', '.join(MEANING_METRICS)}")
    options = dict(options or {})
    if device is not None and name in CLIP_METRICS:
        options.setdefault("device", device)
    return make_metric(name, **options)


def run_meaning_metric(config: dict, device: str | None = None):
    """The meaning metric a sweep run measured (the first of its metrics that judges meanings), with the run's
    options; the oracle when the run measured none (e.g. a sweep of CLIP scores only)."""
    names = [n for n in config.get("metrics", []) if n in MEANING_METRICS]
    if not names:
        return meaning_metric("oracle")
    return meaning_metric(names[0], (config.get("metric_options") or {}).get(names[0]), device)
