"""CLIP zero-shot similarity as a differentiable meaning score for real models.

Each attribute value is described by a text (e.g. color ``red`` -> ``"a photo of something red"``); the logit of
a value is CLIP's scaled cosine similarity between the image and that text. For latents, the pipeline's VAE
decodes them first, so gradients reach the sampler. The CLIP model is read from a local folder only
(:mod:`sdprobe.metrics.clip_model`).

Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
https://arxiv.org/abs/2103.00020

Memory: the CLIP model (about 600 MB for ViT-B/32 in fp32) plus the activations of one image batch at CLIP's
input size.

Example:
    >>> head = ClipHead(load_clip("/models/clip-vit-base-patch32"), {"color": {"red": "a red object"}}, vae=pipe.vae)
    >>> head.logits(latents)["color"].shape
    torch.Size([N, 1])
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from sdprobe.metrics.clip_model import image_embeddings, load_clip, text_embeddings

__all__ = ["ClipHead", "TEMPLATE", "load_clip"]

TEMPLATE = "a photo of {}"  # default text of a value without its own description


class ClipHead(nn.Module):
    """Zero-shot CLIP classifier of images or latents.

    Args:
        clip (tuple): ``(CLIPModel, CLIPTokenizer)`` from :func:`load_clip`.
        classes (Mapping[str, Mapping[str, str] | Sequence[str]]): attribute -> {value: description} (or a list
            of values, described with ``template``).
        vae (AutoencoderKL, optional): decodes latents for :meth:`logits`. Default: none (images only).
        template (str): description of a value given without one. Default: ``"a photo of {}"``.
    """

    def __init__(self, clip, classes: Mapping, vae=None, template: str = TEMPLATE):
        super().__init__()
        self.model, self.tokenizer = clip
        self.vae = vae
        self.attributes: dict[str, tuple[str, ...]] = {}
        self._text: dict[str, torch.Tensor] = {}
        for attribute, values in classes.items():
            described = dict(values) if isinstance(values, Mapping) else {v: template.format(v) for v in values}
            if len(described) < 2:
                raise ValueError(f"attribute {attribute!r} needs at least 2 values, got {list(described)}")
            self.attributes[attribute] = tuple(described)
            self._text[attribute] = text_embeddings(self.model, self.tokenizer, list(described.values()))  # (K, E)

    def image_logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute ``{attribute: (N, K)}`` of images (N, 3, H, W) in [0, 1] (differentiable)."""
        emb = image_embeddings(self.model, images)  # (N, E)
        scale = self.model.logit_scale.exp().float()
        return {a: scale * emb @ t.T for a, t in self._text.items()}

    def logits(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute of latents, decoded by the pipeline's VAE."""
        if self.vae is None:
            raise ValueError("ClipHead was built without a VAE; pass vae=pipe.vae to score latents")
        images = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return self.image_logits((images / 2 + 0.5).clamp(0, 1))

    @torch.no_grad()
    def classify(self, images: np.ndarray, attribute: str, batch: int = 32) -> list[str]:
        """Most similar value of ``attribute`` for each image (N, H, W, 3) in [0, 1]."""
        if attribute not in self.attributes:
            raise ValueError(f"unknown attribute {attribute!r}; valid: {', '.join(self.attributes)}")
        out = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.nan_to_num(images[i : i + batch])).permute(0, 3, 1, 2).to(self.model.device)
            out += [self.attributes[attribute][j] for j in self.image_logits(x)[attribute].argmax(1).tolist()]
        return out
