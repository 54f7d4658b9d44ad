"""CLIP score: how well each image matches its prompt, by a CLIP model read from a local folder.

Paper: CLIPScore, Hessel et al. 2021, https://arxiv.org/abs/2104.08718 (CLIP: https://arxiv.org/abs/2103.00020).

Two definitions are offered, because studies report different ones:

* ``"cosine"`` (default): the raw cosine similarity of the image and text embeddings, in [-1, 1]. This is the
  definition of the Stable Diffusion 2 pruning study, with OpenAI's ViT-B/32 CLIP.
* ``"torchmetrics"``: ``100 * max(cosine, 0)``, the definition of ``torchmetrics.multimodal.CLIPScore``.

Cost (measured, random-weight ViT-B/32 at 224 px from 512 px images, float32, one busy CPU core): about 140 ms
per image and its prompt, of which the text side is about 15 ms.

Example:
    >>> metric = CLIPScoreMetric("/models/clip-vit-base-patch32")
    >>> metric.score(["a red circle"], images)["clip_score"]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sdprobe.generate import to_uint8
from sdprobe.metrics.base import Quantity, check_pairs, directions
from sdprobe.models import ModelLoadError

log = logging.getLogger(__name__)

DEFINITIONS = {
    "cosine": "cosine similarity of CLIP image and text embeddings, in [-1, 1] (SD2 pruning study, ViT-B/32)",
    "torchmetrics": "100 * max(cosine, 0) of CLIP image and text embeddings, in [0, 100] (torchmetrics CLIPScore)",
}
TORCHMETRICS_SCALE = 100.0  # torchmetrics reports the clamped cosine in percent
DEFAULT_BATCH_SIZE = 32  # images per CLIP forward pass


class CLIPScoreMetric:
    """Per-image CLIP score of each image against its own prompt.

    Args:
        clip_path (str | Path): local folder holding a ``transformers`` CLIP model and its processor (e.g. a copy
            of ``openai/clip-vit-base-patch32`` made where the network is reachable).
        definition (str): ``"cosine"`` or ``"torchmetrics"`` (see the module docs). Default: ``"cosine"``.
        device (str | torch.device): where CLIP runs. Default: ``"cpu"``.
        batch_size (int): images per forward pass. Default: 32.

    Attributes:
        definition (str): the chosen definition; ``description`` says it in words for reports.

    Raises:
        ModelLoadError: the folder is missing or holds no CLIP model (the message says how to point at one).

    Example:
        >>> CLIPScoreMetric(path, definition="torchmetrics").score(prompts, images)["clip_score"].mean()
    """

    name = "clipscore"
    quantities = {"clip_score": Quantity(True)}  # no universal floor: give the score of mismatched pairs
    higher_is_better = directions(quantities)
    cost = "about 140 ms per image and prompt for ViT-B/32 on one CPU core"

    def __init__(self, clip_path: str | Path, definition: str = "cosine", device: str | torch.device = "cpu",
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if definition not in DEFINITIONS:
            raise ValueError(f"unknown CLIP score definition {definition!r}; valid: {', '.join(DEFINITIONS)}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.definition = definition
        self.description = DEFINITIONS[definition]
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model, self.processor = _load(clip_path, self.device)

    @torch.no_grad()
    def cosine(self, prompts: Sequence[str], images: np.ndarray) -> np.ndarray:
        """Raw cosine similarity of each image (N, H, W, 3) in [0, 1] with its prompt; NaN pixels count as 0."""
        pixels = to_uint8(images)  # what a saved image would hold
        out = []
        for start in range(0, len(prompts), self.batch_size):
            batch_prompts = list(prompts[start : start + self.batch_size])
            batch_images = list(pixels[start : start + self.batch_size])
            inputs = self.processor(text=batch_prompts, images=batch_images, return_tensors="pt", padding=True,
                                    truncation=True)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            result = self.model(**inputs)  # image_embeds, text_embeds: (B, D), already unit length
            cos = (result.image_embeds * result.text_embeds).sum(dim=-1)  # (B,)
            out.append(cos.float().cpu().numpy())
        return np.concatenate(out)

    def score(self, prompts: Sequence[str], images: np.ndarray, reference: np.ndarray | None = None) -> pd.DataFrame:
        """One row per image with ``clip_score`` under the chosen definition; ``reference`` is not used."""
        check_pairs(prompts, images)
        cos = self.cosine(prompts, images)
        value = cos if self.definition == "cosine" else TORCHMETRICS_SCALE * np.clip(cos, 0.0, None)
        return pd.DataFrame({"clip_score": value.astype(float)})


def _load(clip_path: str | Path, device: torch.device):
    from transformers import CLIPModel, CLIPProcessor

    from sdprobe.metrics.clip_model import ClipLoadError, resolve_clip

    how = ("download a CLIP model (e.g. openai/clip-vit-base-patch32) where the network is reachable, copy the "
           "folder here and pass it with --clip-model PATH")
    try:
        path = resolve_clip(clip_path)
    except ClipLoadError as exc:
        raise ModelLoadError(str(exc)) from None
    try:
        from sdprobe.models import quiet_loading

        with quiet_loading():
            model = CLIPModel.from_pretrained(path, use_safetensors=True).to(device).eval()
            processor = CLIPProcessor.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path} does not hold a CLIP model with its processor (safetensors): {exc}; {how}") from exc
    log.info("loaded CLIP from %s", path)
    return model, processor
