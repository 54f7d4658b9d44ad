"""Scorers by name, and one-shot pruning as a context manager."""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch

from sdprobe.architecture import select
from sdprobe.generate import GenerationConfig
from sdprobe.prune.base import Scorer
from sdprobe.prune.magnitude import MagnitudeScorer
from sdprobe.prune.masks import ProgressiveMask
from sdprobe.prune.nm import DEFAULT_M, NMScorer
from sdprobe.prune.owl import DEFAULT_HYPER_M, DEFAULT_LAMBDA, OwlScorer
from sdprobe.prune.random import RandomScorer
from sdprobe.prune.wanda import DEFAULT_TIMESTEPS, WandaScorer

METHODS = ("magnitude", "magnitude-global", "wanda", "random", "owl-magnitude", "owl-wanda", "nm")


def make_scorer(method: str, pipe=None, *, calibration_prompts: list[str] | None = None, seed: int = 0,
                generation: GenerationConfig | None = None, timesteps: int = DEFAULT_TIMESTEPS,
                hyper_m: float = DEFAULT_HYPER_M, lam: float = DEFAULT_LAMBDA, m: int = DEFAULT_M) -> Scorer:
    """Build the scorer of a method; each method uses only the arguments it needs.

    Args:
        method (str): one of :data:`METHODS`.
        pipe: the pipeline (needed by the activation-aware methods ``wanda`` and ``owl-wanda``).
        calibration_prompts (list[str] | None): Wanda's calibration prompts.
        seed (int): seeds the random scores and Wanda's calibration generation. Default: 0.
        generation (GenerationConfig | None): sampler settings of Wanda's UNet calibration run.
        timesteps (int): denoising steps of that run. Default: 4.
        hyper_m (float): OWL's outlier threshold M. Default: 7.
        lam (float): OWL's lambda. Default: 0.08.
        m (int): the group size of N:M pruning. Default: 4.

    Returns:
        Scorer: with ``name``, ``group`` and ``allocation`` (OWL only, after ``scores``).

    Raises:
        ValueError: an unknown method (the message lists the valid ones), or Wanda without prompts.

    Example:
        >>> make_scorer("owl-wanda", pipe, calibration_prompts=["a red circle"]).group
        'row'
    """
    def wanda() -> WandaScorer:
        if pipe is None:
            raise ValueError(f"method {method!r} runs the pipeline; pass pipe")
        return WandaScorer(pipe, calibration_prompts or [], timesteps=timesteps, seed=seed, generation=generation)

    builders = {
        "magnitude": lambda: MagnitudeScorer("matrix"),
        "magnitude-global": lambda: MagnitudeScorer("global"),
        "wanda": wanda,
        "random": lambda: RandomScorer(seed=seed),
        "owl-magnitude": lambda: OwlScorer(MagnitudeScorer("matrix"), hyper_m=hyper_m, lam=lam),
        "owl-wanda": lambda: OwlScorer(wanda(), hyper_m=hyper_m, lam=lam),
        "nm": lambda: NMScorer(m=m),
    }
    if method not in builders:
        raise ValueError(f"unknown pruning method {method!r}; valid: {', '.join(METHODS)}")
    return builders[method]()


def mask_from_scorer(refs, scorer: Scorer, group: str | None = None, max_sparsity: float = 0.95,
                     store: str | torch.device | None = None, moves: str = "tensor") -> ProgressiveMask:
    """Score ``refs`` and wrap them in a :class:`ProgressiveMask` with the scorer's group and allocation.

    The scores are lazy (:meth:`Scorer.lazy_scores`): each tensor's are computed when the mask is entered and
    dropped once sorted, so enter the mask before changing the weights.

    Args:
        refs (list[WeightRef]): the weights in scope.
        scorer (Scorer): see :func:`make_scorer`.
        group (str | None): comparison group; ``None``: the scorer's. Default: ``None``.
        max_sparsity (float): the highest level the mask reaches. Default: 0.95.
        store (str | torch.device | None): where originals are kept (see :class:`ProgressiveMask`).
        moves (str): ``"tensor"``, ``"batched"`` or ``"auto"`` (see :class:`ProgressiveMask`). Default: ``"tensor"``.

    Returns:
        ProgressiveMask: not yet entered.
    """
    scores = scorer.lazy_scores(refs)
    return ProgressiveMask(refs, scores, group=group or scorer.group, allocation=scorer.allocation,
                           max_sparsity=max_sparsity, store=store, moves=moves)


@contextlib.contextmanager
def prune(pipe, selectors: str | Iterable[str], method: str = "magnitude", sparsity: float = 0.5, *,
          include_conv: bool = False, store: str | torch.device | None = None,
          calibration_prompts: list[str] | None = None, seed: int = 0) -> Iterator[ProgressiveMask]:
    """Prune once, for the duration of a ``with`` block; weights are restored exactly on exit.

    Args:
        pipe: the pipeline.
        selectors (str | Iterable[str]): what to prune, e.g. ``"text_encoder"`` or ``["unet.attn2"]``.
        method (str): one of :data:`METHODS`. Default: ``"magnitude"``.
        sparsity (float): the fraction pruned, in [0, 1). Default: 0.5.
        include_conv (bool): also prune Conv2d weights. Default: False.
        store (str | torch.device | None): where originals are kept. Default: beside the weights.
        calibration_prompts (list[str] | None): for ``wanda`` / ``owl-wanda``.
        seed (int): for ``random`` and Wanda's calibration. Default: 0.

    Yields:
        ProgressiveMask: at ``sparsity`` (its ``max_sparsity``).

    Example:
        >>> with prune(pipe, "text_encoder", "magnitude", 0.475):
        ...     images = generate(pipe, prompts, seeds)
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    refs = select(pipe, selectors, include_conv=include_conv)
    scorer = make_scorer(method, pipe, calibration_prompts=calibration_prompts, seed=seed)
    with mask_from_scorer(refs, scorer, max_sparsity=sparsity, store=store) as mask:
        mask.set_sparsity(sparsity)
        yield mask
