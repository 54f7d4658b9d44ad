"""Wanda: prune by weights and activations.

Paper: Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models",
https://arxiv.org/abs/2306.11695. The score of ``W[i, j]`` is ``|W[i, j]| * ||X_j||_2``, where ``X_j`` collects
input feature ``j`` of the layer over every calibration token (and, for the UNet, every pixel and denoising
step); scores are compared within each output row.

Input norms are gathered with forward pre-hooks, which are removed on exit even when calibration fails. Text
encoder weights see the calibration prompts through the pipeline's own ``encode_prompt`` (all tokens, padding
included, as the pipeline runs them); UNet weights see a short seeded generation
(:func:`sdprobe.generate.generate`) of the same prompts, classifier-free guidance included. For a Conv2d the
norm is per input channel over spatial positions, broadcast over the kernel.

Scores come from the dense model, once. The paper's sequential variant, which feeds each pruned layer's outputs
forward to calibrate the next, ties the scores to one sparsity level; the nested masks of
:class:`sdprobe.prune.ProgressiveMask` need one ranking valid at every level, so it is not used.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from sdprobe.architecture import TEXT_COMPONENTS, WeightRef
from sdprobe.generate import GenerationConfig, generate
from sdprobe.prune.base import LazyScores, Scorer

log = logging.getLogger(__name__)
DEFAULT_TIMESTEPS = 4  # denoising steps of the UNet calibration run


class InputNorms:
    """Context manager: forward pre-hooks that sum squared inputs per input feature of each module.

    Args:
        refs (list[WeightRef]): ``nn.Linear`` or ungrouped ``nn.Conv2d`` weights.

    Attributes:
        sumsq (dict[str, torch.Tensor]): qualified name -> float32 ``(in_features,)`` or ``(in_channels,)``.

    Example:
        >>> with InputNorms(refs) as norms:
        ...     pipe.encode_prompt(prompt=prompts, device="cpu", num_images_per_prompt=1,
        ...                        do_classifier_free_guidance=False)
        >>> norms.sumsq[refs[0].qualified_name].sqrt()
    """

    def __init__(self, refs: list[WeightRef]) -> None:
        for r in refs:
            if isinstance(r.module, nn.Conv2d) and r.module.groups != 1:
                raise ValueError(f"{r.qualified_name} is a grouped convolution; Wanda supports groups=1 only")
        self.refs = refs
        self.sumsq = {r.qualified_name: torch.zeros(r.weight.shape[1], device=r.weight.device) for r in refs}
        self._handles: list = []

    def _hook(self, name: str, conv: bool):
        def hook(module, args):
            x = args[0].detach().float()
            if conv:
                self.sumsq[name] += x.pow(2).sum(dim=(0, 2, 3))  # (B, C, H, W) -> (C,)
            else:
                self.sumsq[name] += x.pow(2).reshape(-1, x.shape[-1]).sum(0)  # (..., in) -> (in,)
        return hook

    def __enter__(self) -> "InputNorms":
        try:
            for r in self.refs:
                hook = self._hook(r.qualified_name, isinstance(r.module, nn.Conv2d))
                self._handles.append(r.module.register_forward_pre_hook(hook))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class WandaScorer(Scorer):
    """Score = ``|W| * ||X_j||_2``, compared within each output row.

    Args:
        pipe: the pipeline whose weights are scored (diffusers SD/SDXL, or any object with ``encode_prompt``
            and the components in scope).
        calibration_prompts (list[str]): prompts the input norms are gathered on (the paper uses 128).
        timesteps (int): denoising steps of the UNet calibration run. Default: 4.
        seed (int): the first seed of the UNet calibration run (prompt ``i`` uses ``seed + i``). Default: 0.
        generation (GenerationConfig | None): sampler settings of that run (guidance, batch size, size); its
            ``steps`` is replaced by ``timesteps``. Default: ``GenerationConfig()``.

    Raises:
        ValueError: no calibration prompts.

    Example:
        >>> scorer = WandaScorer(pipe, ["a red circle", "a small blue square"], timesteps=4)
        >>> scores = scorer.scores(select(pipe, "text_encoder"))
    """

    name = "wanda"
    group = "row"

    def __init__(self, pipe, calibration_prompts: list[str], timesteps: int = DEFAULT_TIMESTEPS, seed: int = 0,
                 generation: GenerationConfig | None = None) -> None:
        if not calibration_prompts:
            raise ValueError("Wanda needs calibration prompts; pass at least one (the paper uses 128)")
        if timesteps <= 0:
            raise ValueError(f"timesteps must be positive, got {timesteps}")
        self.pipe, self.prompts, self.timesteps, self.seed = pipe, list(calibration_prompts), timesteps, seed
        self.generation = dataclasses.replace(generation or GenerationConfig(), steps=timesteps)

    @torch.no_grad()
    def input_norms(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        """``||X_j||_2`` per input feature of each weight, from the calibration runs."""
        text = [r for r in refs if r.component in TEXT_COMPONENTS]
        other = [r for r in refs if r.component not in TEXT_COMPONENTS]
        sumsq: dict[str, torch.Tensor] = {}
        if text:
            with InputNorms(text) as norms:
                for start in range(0, len(self.prompts), self.generation.batch_size):
                    self.pipe.encode_prompt(prompt=self.prompts[start:start + self.generation.batch_size],
                                            device=self.pipe.device, num_images_per_prompt=1,
                                            do_classifier_free_guidance=False)
            sumsq.update(norms.sumsq)
        if other:
            seeds = [self.seed + i for i in range(len(self.prompts))]
            with InputNorms(other) as norms:
                generate(self.pipe, self.prompts, seeds, self.generation)
            sumsq.update(norms.sumsq)
        silent = [name for name, s in sumsq.items() if not bool((s > 0).any())]
        if silent:
            raise ValueError(f"{len(silent)} weight(s) received no input during calibration, e.g. {silent[0]}; "
                             "they cannot be scored by Wanda")
        return {name: s.sqrt() for name, s in sumsq.items()}

    def scores(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        return dict(self.lazy_scores(refs))

    def lazy_scores(self, refs: list[WeightRef]) -> LazyScores:
        """Input norms are gathered now; each weight's scores are computed when read."""
        norms = self.input_norms(refs)
        log.info("wanda: input norms of %d weights from %d calibration prompts", len(refs), len(self.prompts))

        def score(r: WeightRef) -> torch.Tensor:
            n = norms[r.qualified_name]
            n = n.view(1, -1, 1, 1) if r.weight.dim() == 4 else n.view(1, -1)  # broadcast over rows (and kernel)
            return r.weight.detach().abs().float() * n

        return LazyScores(refs, score)
