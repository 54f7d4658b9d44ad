"""Choosing the head of a meaning score: the organism's latent probe, or CLIP for any other model."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from sdprobe.attribution.clip_head import ClipHead, load_clip
from sdprobe.attribution.probe_classifier import BUILTIN_PROBE, load_probe, vae_fingerprint
from sdprobe.errors import SdprobeError


def suite_classes(suite: str | Path = "builtin:tiny-shapes") -> dict[str, dict[str, str]]:
    """CLIP classes from a prompt suite: attribute -> {value: its description}, for every attribute whose template
    needs no field of a prompt (``"a {value} shape"``; ``"a photo of a {value} {object}"`` needs one)."""
    from sdprobe.suites import load_suite

    return load_suite(suite).standalone()


def make_head(pipe, probe: Path | None = None, clip_model: Path | None = None,
              classes: Mapping[str, Mapping[str, str] | Sequence[str]] | None = None,
              suite: str | Path = "builtin:tiny-shapes"):
    """The head for ``pipe``.

    Args:
        pipe: the pipeline.
        probe (Path | None): a latent probe file (see :func:`~sdprobe.attribution.train_probe`). Default: the
            built-in probe, when it matches the pipeline's VAE.
        clip_model (Path | None): a local CLIP model folder; used when given. Default: None.
        classes (Mapping | None): CLIP classes, attribute -> values or {value: description}. Default: those of
            ``suite`` (:func:`suite_classes`).
        suite (str | Path): the prompt suite describing values when ``classes`` is None. Default: the organism's
            grammar (``"a red shape"``, ``"a circle"``, ...).

    Raises:
        SdprobeError: no head fits (the message says to pass ``--probe`` or ``--clip-model``).
    """
    if clip_model is not None:
        return ClipHead(load_clip(clip_model, pipe.device), classes or suite_classes(suite), vae=pipe.vae)
    if probe is not None:
        return load_probe(probe, vae=pipe.vae)
    if BUILTIN_PROBE.exists():
        head = load_probe(BUILTIN_PROBE)
        if head.vae_fingerprint == vae_fingerprint(pipe.vae):
            return head
    raise SdprobeError("no meaning score fits this model: the built-in latent probe belongs to builtin:tiny-shapes. "
                       "Pass --clip-model PATH (a local CLIP model folder) for real models, or --latent-probe PATH (a probe "
                       "trained with sdprobe.attribution.train_probe) for another organism")
