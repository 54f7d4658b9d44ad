"""Differentiable meaning scores: one scalar per image for an (attribute, value) pair.

A score chains the short sampler (:class:`~sdprobe.attribution.trajectory.Trajectory`) with a *head* that
classifies the final latents: the :class:`~sdprobe.attribution.probe_classifier.LatentProbe` for the organism,
or :class:`~sdprobe.attribution.clip_head.ClipHead` (CLIP zero-shot similarity) for real models. Any object
with ``attributes`` (attribute -> class names) and ``logits(latents) -> {attribute: (N, K)}`` is a head.

Score kinds:
    ``log_prob``: log-softmax of the value's logit, log p(value).
    ``log_odds``: log p(value) - log(1 - p(value)), e.g. red-vs-rest for bias.
    ``prob``: p(value), bounded in [0, 1], so an over-confident head cannot inflate attributions (IG
    attributions then sum to a change of probability, at most 1 in size).
    ``target_fit``: ``sum_k q_k log p_k`` for a target distribution ``q`` over all values (the negative cross
    entropy): highest when the head's distribution matches ``q``, so it rewards balance rather than the loss of
    one value (the value index is ignored).

Example:
    >>> score = MeaningScore(Trajectory(pipe), load_probe(vae=pipe.vae), "color")
    >>> ids = score.trajectory.tokenize(["a red circle"])
    >>> score(ids, score.trajectory.noise([0]), score.value_index(["red"]))  # (1,), differentiable
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import nn

from sdprobe.attribution.trajectory import Trajectory

SCORE_KINDS = ("log_prob", "log_odds", "prob", "target_fit")


class Head(Protocol):
    attributes: dict[str, tuple[str, ...]]

    def logits(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        ...


class MeaningScore(nn.Module):
    """Token ids + initial noise + target value index -> score (N,).

    Args:
        trajectory (Trajectory): the differentiable sampler.
        head (Head): classifier of final latents.
        attribute (str): which attribute to score; one of ``head.attributes``.
        kind (str): one of ``SCORE_KINDS``. Default: ``"log_prob"``.
        target (Sequence[float] | None): the distribution over the attribute's values of ``"target_fit"``.
    """

    def __init__(self, trajectory: Trajectory, head: Head, attribute: str, kind: str = "log_prob",
                 target: Sequence[float] | None = None):
        super().__init__()
        if attribute not in head.attributes:
            raise ValueError(f"unknown target {attribute!r}; valid: {', '.join(head.attributes)}")
        if kind not in SCORE_KINDS:
            raise ValueError(f"unknown score kind {kind!r}; valid: {', '.join(SCORE_KINDS)}")
        n_values = len(head.attributes[attribute])
        if (kind == "target_fit") != (target is not None):
            raise ValueError("a target distribution goes with kind 'target_fit', and only with it")
        if target is not None and (len(target) != n_values or abs(sum(target) - 1) > 1e-6 or min(target) < 0):
            raise ValueError(f"target must be {n_values} non-negative shares summing to 1, got {list(target)}")
        self.trajectory = trajectory
        self.head = head
        self.attribute = attribute
        self.kind = kind
        self.target = None if target is None else torch.tensor(list(target), dtype=torch.float32)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.head.attributes[self.attribute])

    def value_index(self, values: Sequence[str]) -> torch.Tensor:
        """Class indices (N,) of ``values``; an unknown value names the valid ones."""
        bad = [v for v in values if v not in self.classes]
        if bad:
            raise ValueError(f"unknown {self.attribute} value(s) {bad}; valid: {', '.join(self.classes)}")
        return torch.tensor([self.classes.index(v) for v in values], device=self.trajectory.device)

    def from_latents(self, latents: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Score (N,) of final latents (N, C, h, w) for class indices ``values`` (N,)."""
        logp = torch.log_softmax(self.head.logits(latents)[self.attribute].float(), dim=-1)  # (N, K)
        if self.kind == "target_fit":
            return (logp * self.target.to(logp.device)).sum(1)  # (N,)
        chosen = logp.gather(1, values.long().view(-1, 1)).squeeze(1)  # (N,)
        if self.kind == "log_odds":
            # log(1 - p) computed stably from the other classes: logsumexp over k != value
            others = logp.scatter(1, values.long().view(-1, 1), float("-inf")).logsumexp(1)
            return chosen - others
        if self.kind == "prob":
            return chosen.exp()
        return chosen

    def forward(self, ids: torch.Tensor, noise: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Score (N,) of prompts ``ids`` (N, T) for class indices ``values`` (N,).

        ``noise`` is (N, C, h, w), one initial noise per prompt, or (N, K, C, h, w): K noises per prompt, whose
        scores are averaged. The average scores the prompt rather than one sample of it, so an attribution does
        not depend on what a single noise happens to draw without the prompt's words. The prompts are encoded
        once and repeated after the text encoder, so hooks on text-encoder layers see N rows.
        """
        context = self.trajectory.encode(ids)  # (N, T, D)
        if noise.dim() == 5:
            n, k = noise.shape[:2]
            latents = self.trajectory.denoise(context.repeat_interleave(k, dim=0), noise.flatten(0, 1))
            return self.from_latents(latents, values.repeat_interleave(k)).view(n, k).mean(dim=1)
        return self.from_latents(self.trajectory.denoise(context, noise), values)

    @torch.no_grad()
    def predict(self, ids: torch.Tensor, noise: torch.Tensor) -> list[str]:
        """The head's most likely value for each prompt (what the model draws, as the head reads it); with K noises
        per prompt (N, K, C, h, w), the value of the summed probabilities over the K samples."""
        if noise.dim() == 5:
            n, k = noise.shape[:2]
            latents = self.trajectory(ids.repeat_interleave(k, dim=0), noise.flatten(0, 1))
            probs = torch.softmax(self.head.logits(latents)[self.attribute].float(), dim=-1).view(n, k, -1).sum(1)
        else:
            probs = self.head.logits(self.trajectory(ids, noise))[self.attribute]
        return [self.classes[i] for i in probs.argmax(1).tolist()]
