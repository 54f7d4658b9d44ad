"""Attribute classifiers of bias probes: the exact oracle (tiny-shapes) or CLIP zero-shot (real models).

A classifier maps images (N, H, W, 3) in [0, 1] to one value per image, or ``None`` where the image cannot be
read (the oracle's unreadable images); such images are left out of the distribution and counted.

Example:
    >>> make_classifier(load_bias_probe("default-color"))(images)
    ['red', 'red', None, 'blue']
"""

from __future__ import annotations

from dataclasses import replace
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


def suite_classes(probe: BiasProbe, suite) -> dict[str, str]:
    """Descriptions of the probe's values from a prompt suite's template for its attribute (``"a red shape"``).

    Raises:
        SdprobeError: the suite does not label the attribute, or its template needs fields of a prompt.
    """
    from sdprobe.errors import SdprobeError
    from sdprobe.suites import load_suite

    suite = load_suite(suite)
    described = suite.standalone().get(probe.attribute)
    if described is None or not set(probe.values) <= set(described):
        raise SdprobeError(f"prompt suite {suite.name!r} cannot describe every {probe.attribute!r} of probe "
                           f"{probe.name!r} on its own (no such attribute, or its template needs fields of a prompt); "
                           "use a probe with classifier = 'clip' and its own [classes]")
    return {v: described[v] for v in probe.values}


def make_classifier(probe: BiasProbe, clip_model: str | Path | None = None, device: str = "cpu",
                    metric: str | None = None, suite: str | Path = "builtin:tiny-shapes") -> Classifier:
    """The classifier a probe asks for, or the one ``metric`` names instead.

    Args:
        probe (BiasProbe): the probe.
        clip_model (str | Path | None): the CLIP of CLIP classifiers. Default: None.
        device (str): where CLIP runs. Default: ``"cpu"``.
        metric (str | None): ``"oracle"`` or ``"clip-attributes"`` to classify with that meaning metric whatever
            the probe says (an oracle probe read by CLIP takes its descriptions from ``suite``). Default: None,
            the probe's own classifier.
        suite (str | Path): the prompt suite describing the values for ``metric="clip-attributes"``. Default:
            the organism's grammar.
    """
    if metric is None:
        metric = "oracle" if probe.classifier == "oracle" else "clip-attributes"
    if metric == "oracle":
        if probe.classifier != "oracle":
            raise ValueError(f"probe {probe.name!r} reads {probe.attribute!r} with CLIP; the oracle reads only the "
                             "organism's attributes")
        return oracle_classifier(probe.attribute)
    if metric != "clip-attributes":
        raise ValueError(f"metric {metric!r} cannot classify a bias probe; use oracle or clip-attributes")
    if probe.classifier == "oracle":
        probe = replace(probe, classifier="clip", classes=suite_classes(probe, suite))
    return clip_classifier(probe, clip_model, device)
