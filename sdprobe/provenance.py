"""Where a run's weights came from, and a check that a model reloaded from the run has the same weights.

A run records ``provenance.json``: the model name it will be reloaded from (``builtin:...``, a folder, a hub id),
the source the pipeline was actually loaded from (or that the caller passed a pipeline of their own), and a SHA-256
of every prunable component's ``state_dict`` (names, dtypes, shapes and bytes). Verbs that reload the model from a
run (isolation, export, replication, the debiasing search) compare the reloaded weights with it and refuse a
mismatch, so a run of a modified copy can never be continued, exported or isolated on the built-in weights.

Example:
    >>> record(run.path, pipe, "builtin:tiny-shapes")
    >>> verify(run.path, load_pipeline("builtin:tiny-shapes"))   # raises RunError if the weights differ
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from sdprobe.errors import RunError
from sdprobe.io import read_json, write_json

log = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
SOURCE_ATTR = "_sdprobe_source"  # set on a pipeline by sdprobe.models.load_pipeline: the name it was loaded from
CALLER = "a pipeline passed by the caller"


def source_of(pipe) -> str | None:
    """The model name ``load_pipeline`` loaded ``pipe`` from, or None for a pipeline built or changed elsewhere."""
    return getattr(pipe, SOURCE_ATTR, None)


def weights_digest(pipe) -> dict[str, str]:
    """SHA-256 of each prunable component's weights (``text_encoder``, ``text_encoder_2``, ``unet``)."""
    import torch

    from sdprobe.architecture import available_components, component_module

    out = {}
    for component in available_components(pipe):
        h = hashlib.sha256()
        for name, tensor in sorted(component_module(pipe, component).state_dict().items()):
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
        out[component] = h.hexdigest()
    return out


def check_source(pipe, model: str) -> None:
    """Refuse a run whose ``model`` names something other than what ``pipe`` was loaded from.

    Raises:
        ValueError: the pipeline came from ``load_pipeline(X)`` with X != ``model``.
    """
    source = source_of(pipe)
    if source is not None and not _same_model(source, model):
        raise ValueError(f"the run's model is {model!r} but the pipeline was loaded from {source!r}; set the model "
                         f"to {source!r} (SweepConfig.model, --model), so that the run names the weights it used")


def _same_model(a: str, b: str) -> bool:
    """Whether two model names are the same model (a folder may be spelled relative or absolute)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def record(path: Path, pipe, model: str) -> dict:
    """Write ``path/provenance.json`` for a new run, or check it against ``pipe`` when the run is resumed.

    Raises:
        RunError: a resumed run was made with other weights.
    """
    path = Path(path)
    digest = weights_digest(pipe)
    if (path / PROVENANCE).exists():
        _compare(path, read_json(path / PROVENANCE), digest, "the pipeline given now")
        return read_json(path / PROVENANCE)
    entry = {"model": model, "source": source_of(pipe) or CALLER, "weights_sha256": digest}
    write_json(path / PROVENANCE, entry)
    return entry


def verify(path: Path, pipe) -> None:
    """Check that ``pipe`` (reloaded from a run's model) has the weights the run was made with.

    A run made before provenance was recorded has no ``provenance.json``; it is accepted with a warning.

    Raises:
        RunError: the weights differ; the message names the components and what to pass instead.
    """
    path = Path(path)
    if not (path / PROVENANCE).exists():
        log.warning("%s records no provenance (made by an older sdprobe); its weights cannot be checked", path)
        return
    _compare(path, read_json(path / PROVENANCE), weights_digest(pipe), f"the model loaded from {source_of(pipe)!r}")


def _compare(path: Path, saved: dict, digest: dict[str, str], what: str) -> None:
    old = saved.get("weights_sha256", {})
    differ = sorted(c for c in set(old) | set(digest) if old.get(c) != digest.get(c))
    if differ:
        where = saved.get("source", "?")
        hashes = ", ".join(f"{c} {old.get(c, '-')[:12]}" for c in differ)
        raise RunError(f"{path} was made with other weights than {what}: {', '.join(differ)} differ (the run used "
                       f"{where!r}, sha256 {hashes}). Pass the model the run was made with (--model PATH)")
