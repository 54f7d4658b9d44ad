"""Contrastive training of the tiny-shapes CLIP (``builtin:tiny-shapes-clip``) from a fixed seed, on the CPU.

The CLIP sees only the world's renders, never the organism's outputs and never the oracle: it learns what a caption
means from the procedural world, as a real CLIP learns from captioned photos, and its agreement with the oracle is
then measured on images the organism generates (:func:`sdprobe.metrics.agreement.oracle_agreement`).

Each training image is a render degraded the way generated images are (blur, noise, a brightness change). Its
caption states a random non-empty subset of the scene's attributes (``"a red shape"``, ``"a small circle at the
top left"``), so single-attribute descriptions, which zero-shot reading uses, are seen as often as full ones. A
caption is a positive for every image in the batch whose scene it describes truly, so the loss is CLIP's symmetric
cross-entropy with the probability spread over all true pairs (duplicates in a batch are not false negatives).

Example:
    >>> train_clip(Path("tiny-shapes-clip"), ClipTrainConfig(steps=3000))
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdprobe.metrics.clip_model import CLIP_MEAN, CLIP_STD, preprocess
from sdprobe.organism import components
from sdprobe.organism.tokenizer import save_tokenizer
from sdprobe.world import ATTRIBUTES, PromptSpec, format_prompt, render_batch
from sdprobe.world.attributes import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipTrainConfig:
    seed: int = 0  # seeds torch and numpy; the whole run is determined by it
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    warmup: int = 200  # linear warm-up steps, then a cosine to 5%
    weight_decay: float = 0.1
    max_blur: float = 0.8  # Gaussian blur sigma drawn uniformly in [0, max_blur] pixels per image
    max_noise: float = 0.04  # pixel noise sigma drawn uniformly in [0, max_noise] per image
    brightness: float = 0.15  # per-image gain drawn uniformly in [1 - brightness, 1 + brightness / 2]
    threads: int = 2  # torch CPU threads


def sample_scenes(n: int, rng: np.random.Generator) -> list[Scene]:
    """``n`` scenes with every attribute uniform (the CLIP must not learn the planted bias as a prior)."""
    return [Scene(**{a: str(rng.choice(values)) for a, values in ATTRIBUTES.items()}) for _ in range(n)]


def captions(scenes: list[Scene], rng: np.random.Generator) -> list[PromptSpec]:
    """One caption per scene, stating a random non-empty subset of its attributes (each size equally likely)."""
    out = []
    for scene in scenes:
        k = int(rng.integers(1, len(ATTRIBUTES) + 1))
        kept = rng.choice(list(ATTRIBUTES), size=k, replace=False)
        out.append(PromptSpec(**{a: getattr(scene, a) for a in kept}))
    return out


def true_pairs(scenes: list[Scene], specs: list[PromptSpec]) -> torch.Tensor:
    """(N images, M captions) boolean: caption j describes scene i truly (every attribute it states matches)."""
    match = np.ones((len(scenes), len(specs)), dtype=bool)
    for a in ATTRIBUTES:
        scene_values = np.array([getattr(s, a) for s in scenes])
        stated = np.array([getattr(p, a) or "" for p in specs])
        match &= (stated[None, :] == "") | (scene_values[:, None] == stated[None, :])
    return torch.from_numpy(match)


def degrade(images: np.ndarray, rng: np.random.Generator, cfg: ClipTrainConfig) -> np.ndarray:
    """Blur, noise and a brightness change per image (N, H, W, 3) in [0, 1]; the result is clipped to [0, 1]."""
    from scipy.ndimage import gaussian_filter

    out = np.empty_like(images)
    for i, image in enumerate(images):
        sigma = rng.uniform(0.0, cfg.max_blur)
        blurred = gaussian_filter(image, sigma=(sigma, sigma, 0)) if sigma > 0.05 else image
        gain = rng.uniform(1.0 - cfg.brightness, 1.0 + cfg.brightness / 2)
        out[i] = blurred * gain + rng.normal(0.0, rng.uniform(0.0, cfg.max_noise), image.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor,
                     positives: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of the scaled cosine similarities, with the target spread over all true pairs."""
    logits = scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T  # (N, M)
    target = positives.float()
    per_image = -(target / target.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    per_text = -(target / target.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return (per_image + per_text) / 2


def _lr_factor(cfg: ClipTrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup)
    return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))


def save_clip(out: Path, model, tokenizer_dir: Path, cfg: ClipTrainConfig) -> None:
    """Write a stock ``CLIPModel`` folder (safetensors, tokenizer, image processor), replacing ``out`` atomically."""
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    side = components.RESOLUTION
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                           image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)),
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir))
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    (tmp / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def train_clip(out: Path, cfg: ClipTrainConfig = ClipTrainConfig()) -> Path:
    """Train the tiny-shapes CLIP and write it to ``out`` (a folder ``CLIPModel.from_pretrained`` reads).

    Returns:
        Path: ``out``.
    """
    from transformers import CLIPTokenizer

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tokenizer_dir = out.with_name(out.name + ".tokenizer")
    save_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    model = components.clip(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(cfg, s))
    model.train()
    t0 = time.time()
    for step in range(cfg.steps):
        scenes = sample_scenes(cfg.batch_size, rng)
        specs = captions(scenes, rng)
        images = degrade(render_batch(scenes, rng), rng, cfg)
        ids = tokenizer([format_prompt(s) for s in specs], padding=True, return_tensors="pt")
        image_emb = model.get_image_features(pixel_values=preprocess(model, torch.from_numpy(images).permute(0, 3, 1, 2)))
        text_emb = model.get_text_features(**ids)
        image_emb = image_emb if isinstance(image_emb, torch.Tensor) else image_emb.pooler_output
        text_emb = text_emb if isinstance(text_emb, torch.Tensor) else text_emb.pooler_output
        loss = contrastive_loss(image_emb, text_emb, model.logit_scale.exp(), true_pairs(scenes, specs))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
        if step % 100 == 0 or step == cfg.steps - 1:
            rate = (time.time() - t0) / (step + 1)
            log.info("clip step %d loss %.4f  %.2fs/step  eta %.1f min", step, loss.item(), rate,
                     rate * (cfg.steps - step - 1) / 60)
    model.eval()
    save_clip(out, model, tokenizer_dir, cfg)
    shutil.rmtree(tokenizer_dir)
    return out
