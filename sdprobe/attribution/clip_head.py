"""CLIP zero-shot similarity as a differentiable meaning score for real models.

Each attribute value is described by a text (e.g. color ``red`` -> ``"a photo of something red"``); the logit of
a value is CLIP's scaled cosine similarity between the image and that text. For latents, the pipeline's VAE
decodes them first, so gradients reach the sampler. The CLIP model is read from a local folder only.

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

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdprobe.errors import SdprobeError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's image normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATE = "a photo of {}"  # default text of a value without its own description


def load_clip(path: str | Path | None, device: str | torch.device = "cpu"):
    """Load a ``transformers`` CLIPModel and tokenizer from a local folder.

    Raises:
        SdprobeError: no path, or the folder is not a CLIP model; the message says how to point at one.
    """
    if path is None:
        raise SdprobeError("this needs a CLIP model for real pipelines: pass a local folder with a transformers "
                           "CLIPModel (config.json + model.safetensors), e.g. --clip-model /models/clip-vit-base-patch32")
    path = Path(path).expanduser()
    if not (path / "config.json").exists():
        raise SdprobeError(f"{path} is not a CLIP model folder (no config.json); pass --clip-model PATH pointing at "
                           "a transformers CLIPModel saved with save_pretrained")
    from transformers import CLIPModel, CLIPTokenizer

    from sdprobe.models import quiet_loading

    with quiet_loading():
        model = CLIPModel.from_pretrained(path, use_safetensors=True).to(device).eval().requires_grad_(False)
        return model, CLIPTokenizer.from_pretrained(path)


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
            tokens = self.tokenizer(list(described.values()), padding=True, return_tensors="pt").to(self.model.device)
            with torch.no_grad():
                emb = self.model.get_text_features(**tokens)
            emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
            self._text[attribute] = F.normalize(emb.float(), dim=-1)  # (K, E)

    def image_logits(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute ``{attribute: (N, K)}`` of images (N, 3, H, W) in [0, 1] (differentiable)."""
        size = self.model.config.vision_config.image_size
        x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        emb = self.model.get_image_features(pixel_values=((x - mean) / std).to(self.model.dtype))
        emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
        emb = F.normalize(emb.float(), dim=-1)  # (N, E)
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
