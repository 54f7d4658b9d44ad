"""CLIP models read from local folders: resolving ``--clip-model``, loading, and image and text embeddings.

Every CLIP reader of sdprobe (the ``clip-attributes`` and ``fd-clip`` metrics, the bias probes' zero-shot
classifier and the attribution heads) goes through this module, so an image is preprocessed the same way
everywhere: resized bilinearly to the model's input side and normalised with OpenAI CLIP's mean and deviation.

``builtin:tiny-shapes-clip`` names the CLIP shipped with sdprobe, trained on the organism's world
(``sdprobe/organism/tiny-shapes-clip/``, see the organism's model card); any other value is a local folder holding
a ``transformers`` ``CLIPModel`` in safetensors (e.g. a copy of ``openai/clip-vit-base-patch32``).

Example:
    >>> model, tokenizer = load_clip("builtin:tiny-shapes-clip")
    >>> image_embeddings(model, torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 64])
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sdprobe.checks import builtin
from sdprobe.errors import SdprobeError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's image normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BUILTIN_CLIPS: dict[str, Path] = {"tiny-shapes-clip": Path(__file__).parents[1] / "organism" / "tiny-shapes-clip"}
HOW = ("pass --clip-model PATH, a local folder with a transformers CLIPModel (config.json + model.safetensors, e.g. "
       "a copy of openai/clip-vit-base-patch32), or builtin:tiny-shapes-clip for the organism")


class ClipLoadError(SdprobeError):
    """No CLIP model was given, or the folder does not hold one in safetensors."""


def resolve_clip(path: str | Path | None) -> Path:
    """The folder a ``--clip-model`` value names.

    Raises:
        ClipLoadError: no value, an unknown built-in, or a folder without a CLIP ``config.json``.
    """
    if path is None:
        raise ClipLoadError(f"this needs a CLIP model: {HOW}")
    name = builtin(path, BUILTIN_CLIPS, "CLIP", ClipLoadError)
    folder = BUILTIN_CLIPS[name] if name else Path(str(path)).expanduser()
    if not folder.is_dir():
        raise ClipLoadError(f"CLIP model folder {folder} not found; {HOW}")
    if not (folder / "config.json").is_file():
        raise ClipLoadError(f"{folder} is not a CLIP model folder (no config.json); {HOW}")
    return folder


def load_clip(path: str | Path | None, device: str | torch.device = "cpu"):
    """``(CLIPModel, CLIPTokenizer)`` from a local folder or a built-in, in eval mode without gradients.

    Raises:
        ClipLoadError: see :func:`resolve_clip`; also a folder of another model kind, or weights that are not
            safetensors (a pickle is never read).
    """
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from sdprobe.models import quiet_loading

    folder = resolve_clip(path)
    try:
        config = CLIPConfig.from_pretrained(folder)
        if getattr(config, "model_type", None) != "clip":
            raise ClipLoadError(f"{folder} holds a {config.model_type!r} model, not a CLIP model; {HOW}")
        with quiet_loading():
            model = CLIPModel.from_pretrained(folder, use_safetensors=True).to(device).eval().requires_grad_(False)
            tokenizer = CLIPTokenizer.from_pretrained(folder)
    except ClipLoadError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClipLoadError(f"{folder} does not hold a CLIP model with its tokenizer in safetensors ({exc}); "
                            f"{HOW}") from None
    return model, tokenizer


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def preprocess(model, images: torch.Tensor) -> torch.Tensor:
    """CLIP's input for images (N, 3, H, W) in [0, 1]: resized to the model's side, normalised (differentiable)."""
    size = model.config.vision_config.image_size
    x = images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(model.dtype)


def image_embeddings(model, images: torch.Tensor) -> torch.Tensor:
    """Unit-length image embeddings (N, E), float32, of images (N, 3, H, W) in [0, 1] (differentiable)."""
    return F.normalize(_features(model.get_image_features(pixel_values=preprocess(model, images))).float(), dim=-1)


@torch.no_grad()
def text_embeddings(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Unit-length text embeddings (K, E), float32."""
    tokens = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(model.device)
    return F.normalize(_features(model.get_text_features(**tokens)).float(), dim=-1)


class ClipImageFeatures(nn.Module):
    """CLIP image embeddings as a feature extractor (B, 3, H, W) in [0, 1] -> (B, E), for Fréchet distances."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return image_embeddings(self.model, images)
