"""``fd-clip``: the Fréchet distance of generated images in CLIP image-embedding space, without Inception.

FID's Inception-v3 features were trained on ImageNet classes and are known to miss much of what people see in
generated images; recent evaluation studies recommend richer feature spaces, CLIP's among them (Kynkäänniemi et al.
2023, "The Role of ImageNet Classes in Fréchet Inception Distance", https://arxiv.org/abs/2203.06026; Stein et al.
2023, "Exposing flaws of generative model evaluation metrics", https://arxiv.org/abs/2306.04675). ``fd-clip`` is
the same statistic as FID (:func:`sdprobe.metrics.fid.frechet_distance`, with its bootstrap standard error over the
generated images) on unit-length CLIP image embeddings, from any CLIP folder or ``builtin:tiny-shapes-clip``.

It is a per-set quantity, lower is better, unbounded, so collapse detection reads it on a log scale. Values are not
comparable across CLIP models or image counts; compare levels of one sweep.

Example:
    >>> FDCLIPMetric("builtin:tiny-shapes-clip").score_set(images, reference=unpruned)
    {'fd_clip': 0.012, 'fd_clip_se': 0.001, 'n_images': 64, 'n_real': 64}
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sdprobe.metrics.base import Quantity, directions
from sdprobe.metrics.clip_model import ClipImageFeatures, load_clip
from sdprobe.metrics.fid import DEFAULT_BATCH_SIZE, DEFAULT_FID_BOOT, FIDMetric


class FDCLIPMetric:
    """Fréchet distance in CLIP space of a set of generated images against reference images.

    Args:
        clip_path (str | Path): ``builtin:tiny-shapes-clip`` or a local ``transformers`` CLIP folder.
        real_images: a folder of real images or images in [0, 1]; ``None`` compares with the ``reference`` images
            passed to :meth:`score_set` (in sweeps, the unpruned model's images for the same prompts and other
            seeds, so the dense level shows the sampling floor). Default: ``None``.
        n_boot (int): bootstrap resamples for the standard error. Default: 20.
        seed (int): seeds the bootstrap. Default: 0.
        batch_size (int): images per CLIP call. Default: 64.
        device (str | torch.device): where CLIP runs. Default: ``"cpu"``.
    """

    name = "fd-clip"
    quantities = {"fd_clip": Quantity(False, per="set", scale="log")}
    higher_is_better = directions(quantities)
    cost = "one CLIP image embedding per image, plus a Fréchet distance of E x E covariances per set"

    def __init__(self, clip_path: str | Path, real_images: str | Path | np.ndarray | Sequence[np.ndarray] | None = None,
                 n_boot: int = DEFAULT_FID_BOOT, seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str | torch.device = "cpu") -> None:
        model, _ = load_clip(clip_path, device)
        self._fid = FIDMetric(real_images=real_images, feature_extractor=ClipImageFeatures(model), kid=False,
                              seed=seed, n_boot=n_boot, batch_size=batch_size, device=device)

    def features(self, images: np.ndarray) -> torch.Tensor:
        """(N, E) CLIP image features of images (N, H, W, 3) in [0, 1], as the distance uses them."""
        return self._fid.features(images)

    @property
    def needs_reference(self) -> bool:
        """Whether :meth:`score_set` needs the unpruned images (no real images were given)."""
        return self._fid.needs_reference

    def score_set(self, images: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float]:
        """``fd_clip`` and its bootstrap ``fd_clip_se``, with ``n_images`` and ``n_real``."""
        out = self._fid.score_set(images, reference)
        return {"fd_clip": out["fid"], "fd_clip_se": out["fid_se"], "n_images": out["n_images"],
                "n_real": out["n_real"]}
