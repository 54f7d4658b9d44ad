"""A short, differentiable denoising trajectory: prompt token ids -> final denoised latents.

Attribution needs gradients of a meaning score with respect to the text embeddings and the weights, so the
sampler runs here without ``torch.no_grad``. It repeats what ``StableDiffusionPipeline.__call__`` does (same
scheduler, initial noise from :func:`sdprobe.generate.initial_latents`, classifier-free guidance), so with the
same steps and guidance its latents decode to the images :func:`sdprobe.generate.generate` makes.

Memory: autograd keeps every UNet activation of every step, about 90 MB per image on the tiny-shapes organism
at 8 steps with guidance; with ``gradient_checkpointing`` only the step inputs are kept (under 1 MB per image)
and each UNet call is recomputed during the backward pass (about 1.3x the compute).

Example:
    >>> traj = Trajectory(pipe, TrajectoryConfig(steps=8))
    >>> ids = traj.tokenize(["a red circle"])
    >>> latents = traj(ids, traj.noise([0]))  # (1, 4, 8, 8), differentiable
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from sdprobe.generate import GenerationConfig, initial_latents, native_size

SUPPORTED = ("StableDiffusionPipeline",)


@dataclass(frozen=True)
class TrajectoryConfig:
    """Settings of the differentiable sampler."""

    steps: int = 8  # denoising steps; few keep the backward pass cheap
    guidance: float = GenerationConfig.guidance  # classifier-free guidance (<= 1 disables the unconditional branch)
    gradient_checkpointing: bool = False  # recompute each UNet call in the backward pass to save memory

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_pipeline(pipe) -> None:
    """Refuse pipelines the trajectory does not reproduce (SDXL's two text encoders and added conditions)."""
    name = type(pipe).__name__
    if name not in SUPPORTED and getattr(pipe, "text_encoder_2", None) is not None:
        raise ValueError(f"attribution supports {', '.join(SUPPORTED)} (one text encoder); got {name}")


class Trajectory(nn.Module):
    """Token ids and initial noise -> final latents, differentiably.

    Args:
        pipe: a ``StableDiffusionPipeline`` (weights are used, never changed).
        config (TrajectoryConfig): sampler settings. Default: 8 steps, the generation default guidance.
    """

    def __init__(self, pipe, config: TrajectoryConfig = TrajectoryConfig()):
        super().__init__()
        check_pipeline(pipe)
        self.pipe = pipe
        self.config = config
        self._uncond: torch.Tensor | None = None

    # -- text ------------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids (N, T), padded to the tokenizer's maximum length as the pipeline pads them."""
        tok = self.pipe.tokenizer
        ids = tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        return ids.to(self.device)

    def token_embedding(self) -> nn.Module:
        """The text encoder's token-embedding module (input of token attributions)."""
        return self.pipe.text_encoder.get_input_embeddings()

    def encode(self, ids: torch.Tensor) -> torch.Tensor:
        """Text-encoder hidden states (N, T, D) used as the UNet's cross-attention context."""
        return self.pipe.text_encoder(ids)[0]

    def unconditional(self) -> torch.Tensor:
        """Embeddings (1, T, D) of the empty prompt, computed once without gradient."""
        if self._uncond is None:
            with torch.no_grad():
                self._uncond = self.encode(self.tokenize([""]))
        return self._uncond

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """Initial latents (N, C, h, w) for ``seeds``, identical to those of :func:`sdprobe.generate.generate`."""
        h, w = native_size(self.pipe)
        return initial_latents(self.pipe, list(seeds), h, w)

    # -- sampling --------------------------------------------------------------------------------------------
    def _unet(self, latents: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.pipe.unet(latents, t, encoder_hidden_states=context, return_dict=False)[0]

    def denoise(self, context: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Run the sampler from ``noise`` (N, C, h, w) conditioned on ``context`` (N, T, D); returns (N, C, h, w)."""
        cfg = self.config
        scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)  # fresh state per call
        scheduler.set_timesteps(cfg.steps, device=noise.device)
        latents = noise * scheduler.init_noise_sigma
        guided = cfg.guidance > 1.0
        if guided:
            context = torch.cat([self.unconditional().expand(len(noise), -1, -1), context])  # (2N, T, D)
        for t in scheduler.timesteps:
            inp = torch.cat([latents, latents]) if guided else latents
            inp = scheduler.scale_model_input(inp, t)
            if cfg.gradient_checkpointing and torch.is_grad_enabled():
                eps = checkpoint(self._unet, inp, t, context, use_reentrant=False)
            else:
                eps = self._unet(inp, t, context)
            if guided:
                eps_uncond, eps_text = eps.chunk(2)
                eps = eps_uncond + cfg.guidance * (eps_text - eps_uncond)
            latents = scheduler.step(eps, t, latents, return_dict=False)[0]
        return latents

    def forward(self, ids: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Final latents (N, C, h, w) for token ids (N, T) and initial noise (N, C, h, w)."""
        return self.denoise(self.encode(ids), noise)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] from latents, as the pipeline decodes them."""
        vae = self.pipe.vae
        images = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
        return (images / 2 + 0.5).clamp(0, 1)
