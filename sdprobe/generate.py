"""Seeded, batched image generation through a stock diffusers pipeline.

Each image's initial noise is drawn from its own CPU generator seeded with its seed, so an image depends only
on (prompt, seed) and never on the batch it was generated in, the device, or the pruning level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from tqdm.auto import tqdm

from sdprobe import checks

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GenerationConfig:
    """Sampler settings. ``None`` means the pipeline's own default."""

    steps: int = 10  # denoising steps (the organism's images and pruning curves match 20 steps; see its model card)
    guidance: float = 2.0  # classifier-free guidance scale (the organism's; Stable Diffusion is usually run at 7.5)
    batch_size: int = 64  # images per pipeline call
    height: int | None = None  # pixels; None: the UNet's native size
    width: int | None = None

    def __post_init__(self) -> None:
        checks.positive_int("steps", self.steps)
        checks.non_negative("guidance", self.guidance)
        checks.positive_int("batch_size", self.batch_size)
        for name in ("height", "width"):
            if getattr(self, name) is not None:
                checks.positive_int(name, getattr(self, name))

    def to_dict(self) -> dict:
        return asdict(self)


def native_size(pipe) -> tuple[int, int]:
    """(height, width) in pixels at which the pipeline's UNet was trained."""
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return side, side


def initial_latents(pipe, seeds: Sequence[int], height: int, width: int) -> torch.Tensor:
    """The initial noise for each seed, (N, C, h, w), drawn on the CPU and moved to the pipeline's device."""
    import torch  # imported on use, so the CLI's --help (which reads GenerationConfig) never loads torch

    c = pipe.unet.config.in_channels
    shape = (1, c, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.cat(noise).to(device=pipe.device, dtype=pipe.unet.dtype)


def _check(prompts: Sequence[str], seeds: Sequence[int]) -> None:
    if len(prompts) == 0:
        raise ValueError("no prompts given; pass at least one prompt")
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt")


def generate(pipe, prompts: Sequence[str], seeds: Sequence[int], config: GenerationConfig = GenerationConfig(),
             progress: bool = False) -> np.ndarray:
    """Generate one image per (prompt, seed).

    Args:
        pipe: a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``.
        prompts (Sequence[str]): N prompts.
        seeds (Sequence[int]): N seeds, one per prompt.
        config (GenerationConfig): sampler settings. Default: 10 steps, guidance 2.0.
        progress (bool): show a bar over the images, with an ETA. Default: False.

    Returns:
        np.ndarray: float32 images, shape (N, H, W, 3), values in [0, 1] (NaN where the model produced NaN).

    Example:
        >>> images = generate(pipe, ["a red circle"] * 2, [0, 1])
        >>> images.shape
        (2, 32, 32, 3)
    """
    _check(prompts, seeds)
    default_h, default_w = native_size(pipe)
    height, width = config.height or default_h, config.width or default_w
    out = []
    bar = tqdm(total=len(prompts), desc="generate", unit="image", disable=not progress)
    for start in range(0, len(prompts), config.batch_size):
        batch_prompts = list(prompts[start : start + config.batch_size])
        latents = initial_latents(pipe, seeds[start : start + config.batch_size], height, width)
        images = pipe(
            prompt=batch_prompts,
            latents=latents,
            num_inference_steps=config.steps,
            guidance_scale=config.guidance,
            height=height,
            width=width,
            output_type="np",
        ).images  # (B, H, W, 3)
        out.append(np.asarray(images, dtype=np.float32))
        bar.update(len(batch_prompts))
    bar.close()
    return np.concatenate(out)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [0, 1] (NaN allowed) to uint8 for saving; NaN becomes 0."""
    return (np.nan_to_num(images, nan=0.0).clip(0, 1) * 255).round().astype(np.uint8)
