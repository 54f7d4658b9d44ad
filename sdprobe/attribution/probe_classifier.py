"""A small CNN that reads the tiny-shapes attributes from the organism's latents (a differentiable oracle).

The exact oracle (:mod:`sdprobe.world.oracle`) thresholds pixels and has no gradient. Attribution needs a
differentiable meaning score, so this probe classifies the final denoised latents (C=4, 8x8) with one linear
head per attribute. It is trained without any generation: scenes of the world are rendered, encoded by the
organism's own VAE (``vae.encode(x).latent_dist.mean * scaling_factor``, x in [-1, 1]) and classified; light
Gaussian noise on the latents makes it tolerant of the imperfect latents a sampler produces. Its agreement
with the oracle on generated images is measured by :func:`sdprobe.attribution.validate.probe_agreement`.

A probe belongs to one VAE: its file stores a fingerprint of the VAE weights, and loading it for another
VAE is refused.

Paper (linear/diagnostic probes): Alain & Bengio, "Understanding intermediate layers using linear classifier
probes", https://arxiv.org/abs/1610.01644

Example:
    >>> probe, report = train_probe(pipe, ProbeTrainConfig(steps=300))
    >>> save_probe(probe, Path("probe.safetensors"))
    >>> probe.logits(latents)["color"].shape  # latents (N, 4, 8, 8)
    torch.Size([N, 6])
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sdprobe.errors import SdprobeError
from sdprobe.world import ATTRIBUTES, render_batch, sample_specs

log = logging.getLogger(__name__)

BUILTIN_PROBE = Path(__file__).resolve().parent.parent / "probes" / "tiny-shapes-latent-probe.safetensors"


@dataclass(frozen=True)
class ProbeTrainConfig:
    """Hyper-parameters of :func:`train_probe` (defaults train in about a minute on 2 CPU cores)."""

    seed: int = 0  # seeds the scenes, the jitter and torch
    n_train: int = 6144  # rendered training scenes (encoded once)
    n_valid: int = 1024  # held-out rendered scenes for the accuracy report
    steps: int = 1500  # optimiser steps
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    latent_noise: float = 0.15  # std of Gaussian noise added to training latents (in scaled-latent units)
    encode_batch: int = 256  # images per VAE call while encoding the data set
    width: int = 32  # channels of the first convolution; the second has twice as many


class LatentProbe(nn.Module):
    """Two convolutions and one linear head per attribute, on (N, C, h, w) latents.

    Args:
        in_channels (int): latent channels. Default: 4.
        side (int): latent height and width. Default: 8.
        width (int): channels of the first convolution. Default: 32.
        attributes (dict[str, tuple[str, ...]]): attribute -> class names. Default: the tiny-shapes world's.
    """

    def __init__(self, in_channels: int = 4, side: int = 8, width: int = 32,
                 attributes: dict[str, tuple[str, ...]] | None = None):
        super().__init__()
        self.attributes = {k: tuple(v) for k, v in (attributes or ATTRIBUTES).items()}
        self.shape_info = {"in_channels": in_channels, "side": side, "width": width}
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),  # (N, 2w, side/2, side/2)
            nn.Flatten(),
        )
        features = 2 * width * ((side + 1) // 2) ** 2
        self.heads = nn.ModuleDict({a: nn.Linear(features, len(v)) for a, v in self.attributes.items()})
        self.vae_fingerprint = ""

    def logits(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class logits per attribute: ``{attribute: (N, K)}``."""
        h = self.body(latents)  # (N, features)
        return {a: head(h) for a, head in self.heads.items()}

    def forward(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.logits(latents)


FINGERPRINT_DTYPE = torch.float16  # weights are hashed at this precision, so half-precision storage keeps the hash


def vae_fingerprint(vae) -> str:
    """A short hash of the VAE's encoder weights and scaling factor (which VAE a probe was trained for).

    Weights are rounded to float16 first: a VAE stored in half precision and loaded as float32 has the same
    fingerprint as the float32 original.
    """
    h = hashlib.sha256()
    for name, p in sorted(vae.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to(FINGERPRINT_DTYPE).cpu().numpy().tobytes())
    h.update(repr(float(vae.config.scaling_factor)).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_images(vae, images: np.ndarray, batch: int) -> torch.Tensor:
    """Scaled latent means (N, C, h, w) of images (N, H, W, 3) in [0, 1]."""
    out = []
    device, dtype = vae.device, vae.dtype
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).mul(2).sub(1)  # (B, 3, H, W) in [-1, 1]
        out.append(vae.encode(x.to(device, dtype)).latent_dist.mean.float().cpu() * vae.config.scaling_factor)
    return torch.cat(out)


def _dataset(vae, n: int, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    scenes = [s.complete(rng) for s in sample_specs(n, rng)]  # every attribute uniform: no prior to learn
    images = render_batch(scenes, rng)  # (N, H, W, 3)
    labels = {a: torch.tensor([v.index(getattr(s, a)) for s in scenes]) for a, v in ATTRIBUTES.items()}
    return encode_images(vae, images, batch), labels


def train_probe(pipe, config: ProbeTrainConfig = ProbeTrainConfig(), progress: bool = True) -> tuple[LatentProbe, dict]:
    """Train a :class:`LatentProbe` on rendered scenes encoded by ``pipe.vae``.

    Args:
        pipe: the organism pipeline (only its VAE is used, and not changed).
        config (ProbeTrainConfig): hyper-parameters. Default: :class:`ProbeTrainConfig`.
        progress (bool): show a progress bar. Default: ``True``.

    Returns:
        tuple[LatentProbe, dict]: the probe (eval mode, on the CPU) and a report with the held-out accuracy per
        attribute on encoded latents, the training time and the configuration.

    Memory: the encoded data set, ``(n_train + n_valid) * C*h*w * 4`` bytes (about 2 MB by default).

    Example:
        >>> probe, report = train_probe(pipe)
        >>> sorted(report["valid_accuracy"])
        ['color', 'position', 'shape', 'size']
    """
    t0 = time.time()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    x_train, y_train = _dataset(pipe.vae, config.n_train, rng, config.encode_batch)
    x_valid, y_valid = _dataset(pipe.vae, config.n_valid, rng, config.encode_batch)
    _, c, side, _ = x_train.shape
    probe = LatentProbe(in_channels=c, side=side, width=config.width)
    opt = torch.optim.AdamW(probe.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    gen = torch.Generator().manual_seed(config.seed)
    loss_fn = nn.CrossEntropyLoss()
    probe.train()
    for _ in tqdm(range(config.steps), desc="probe", disable=not progress):
        idx = torch.randint(0, len(x_train), (config.batch_size,), generator=gen)
        x = x_train[idx] + config.latent_noise * torch.randn(x_train[idx].shape, generator=gen)
        logits = probe.logits(x)
        loss = sum(loss_fn(logits[a], y_train[a][idx]) for a in logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    probe.eval()
    with torch.no_grad():
        logits = probe.logits(x_valid)
    accuracy = {a: float((logits[a].argmax(1) == y_valid[a]).float().mean()) for a in logits}
    probe.vae_fingerprint = vae_fingerprint(pipe.vae)
    report = {"valid_accuracy": accuracy, "seconds": time.time() - t0, "config": asdict(config),
              "vae_fingerprint": probe.vae_fingerprint}
    log.info("probe trained in %.0f s; held-out accuracy %s", report["seconds"], accuracy)
    return probe, report


def save_probe(probe: LatentProbe, path: Path, extra: dict | None = None) -> None:
    """Write the probe's weights and metadata (classes, shape, VAE fingerprint) to a safetensors file."""
    from safetensors.torch import save_file

    meta = {"attributes": json.dumps(probe.attributes), "shape": json.dumps(probe.shape_info),
            "vae_fingerprint": probe.vae_fingerprint, "extra": json.dumps(extra or {}, default=str)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in probe.state_dict().items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def load_probe(path: Path | None = None, vae=None) -> LatentProbe:
    """Load a probe; with ``vae`` given, refuse a probe trained for another VAE.

    Args:
        path (Path, optional): safetensors file. Default: the probe shipped for ``builtin:tiny-shapes``.
        vae (AutoencoderKL, optional): the pipeline's VAE, to check the fingerprint. Default: no check.

    Raises:
        SdprobeError: the file is missing, or was trained for a different VAE.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else BUILTIN_PROBE
    if not path.exists():
        raise SdprobeError(f"no latent probe at {path}; train one with sdprobe.attribution.train_probe(pipe) "
                           "and pass its file (--latent-probe PATH)")
    from safetensors import SafetensorError

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as exc:
        raise SdprobeError(f"{path} is not a safetensors latent probe ({exc}); nothing else is read") from None
    shape = json.loads(meta.get("shape", "{}"))
    attributes = {k: tuple(v) for k, v in json.loads(meta.get("attributes", "{}")).items()} or None
    probe = LatentProbe(attributes=attributes, **shape)
    probe.load_state_dict(load_file(str(path)))
    probe.vae_fingerprint = meta.get("vae_fingerprint", "")
    if vae is not None and probe.vae_fingerprint != vae_fingerprint(vae):
        raise SdprobeError(f"the latent probe {path} was trained for another VAE; train one for this model with "
                           "sdprobe.attribution.train_probe(pipe) and pass it with --latent-probe PATH")
    return probe.eval().requires_grad_(False)
