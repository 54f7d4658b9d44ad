"""Attribute classifiers of bias probes: the exact oracle (tiny-shapes) or CLIP zero-shot (real models).

A classifier maps images (N, H, W, 3) in [0, 1] to one value per image, or ``None`` where the image cannot be
read (the oracle's unreadable images); such images are left out of the distribution and counted.

Example:
    >>> make_classifier(load_bias_probe("default-color"))(images)
    ['red', 'red', None, 'blue']
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from sdprobe.bias.probes import BiasProbe
from sdprobe.world import read_batch

Classifier = Callable[[np.ndarray], list]


def oracle_classifier(attribute: str) -> Classifier:
    """The tiny-shapes oracle's reading of ``attribute`` (None for unreadable images)."""
    def classify(images: np.ndarray) -> list[str | None]:
        return [r.attributes[attribute] if r.readable else None for r in read_batch(images)]

    return classify


def clip_classifier(probe: BiasProbe, clip_model: str | Path | None, device: str = "cpu") -> Classifier:
    """CLIP zero-shot choice among the probe's class descriptions.

    Raises:
        SdprobeError: no CLIP model given; the message says how to pass one (``--clip-model PATH``).
    """
    from sdprobe.attribution.clip_head import ClipHead, load_clip

    head = ClipHead(load_clip(clip_model, device), {probe.attribute: probe.classes})

    def classify(images: np.ndarray) -> list[str]:
        return head.classify(images, probe.attribute)

    return classify


def make_classifier(probe: BiasProbe, clip_model: str | Path | None = None, device: str = "cpu") -> Classifier:
    """The classifier a probe asks for."""
    if probe.classifier == "oracle":
        return oracle_classifier(probe.attribute)
    return clip_classifier(probe, clip_model, device)
