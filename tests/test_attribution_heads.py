"""Heads of meaning scores: the latent probe (training, saving, VAE check) and the CLIP zero-shot head."""

from __future__ import annotations

import pytest
import torch

from sdprobe.attribution import ClipHead, ProbeTrainConfig, load_clip, load_probe, save_probe, train_probe
from sdprobe.attribution.heads import make_head
from sdprobe.errors import SdprobeError

TINY_TRAIN = ProbeTrainConfig(n_train=128, n_valid=32, steps=5, batch_size=32)


def test_probe_trains_saves_and_checks_its_vae(tiny_organism, tmp_path):
    probe, report = train_probe(tiny_organism, TINY_TRAIN, progress=False)
    assert set(report["valid_accuracy"]) == {"color", "shape", "position", "size"}
    path = tmp_path / "probe.safetensors"
    save_probe(probe, path)
    assert path.stat().st_size < 1_000_000
    again = load_probe(path, vae=tiny_organism.vae)
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        for a, v in probe.logits(x).items():
            torch.testing.assert_close(again.logits(x)[a], v)
    assert make_head(tiny_organism, probe=path).vae_fingerprint == probe.vae_fingerprint
    from sdprobe.organism import components

    torch.manual_seed(123)
    other = components.vae()
    with pytest.raises(SdprobeError, match="trained for another VAE"):
        load_probe(path, vae=other)
    with pytest.raises(SdprobeError, match="train one with"):
        load_probe(tmp_path / "missing.safetensors")


def test_probe_learns_rendered_colors(tiny_organism):
    """Even through an untrained VAE, latents keep enough of the image for color to be learnt quickly."""
    _, report = train_probe(tiny_organism, ProbeTrainConfig(n_train=768, n_valid=128, steps=150, batch_size=128,
                                                            latent_noise=0.0), progress=False)
    assert report["valid_accuracy"]["color"] > 2 / 6  # twice chance (1/6)


def test_clip_head_scores_latents_differentiably(tiny_organism, tiny_clip):
    head = ClipHead(load_clip(tiny_clip), {"color": ["red", "blue", "green"]}, vae=tiny_organism.vae)
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    logits = head.logits(latents)["color"]
    assert logits.shape == (2, 3)
    logits[:, 0].sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    assert len(head.classify(torch.rand(3, 32, 32, 3).numpy(), "color")) == 3


def test_clip_needs_a_path(tmp_path):
    with pytest.raises(SdprobeError, match="--clip-model"):
        load_clip(None)
    with pytest.raises(SdprobeError, match="--clip-model PATH"):
        load_clip(tmp_path)


def test_fingerprint_survives_half_precision_storage(tiny_organism):
    import copy

    from sdprobe.attribution import vae_fingerprint

    stored = copy.deepcopy(tiny_organism.vae).to(torch.float16).to(torch.float32)
    assert vae_fingerprint(stored) == vae_fingerprint(tiny_organism.vae)
    changed = copy.deepcopy(tiny_organism.vae)
    with torch.no_grad():
        next(changed.encoder.parameters()).add_(0.1)
    assert vae_fingerprint(changed) != vae_fingerprint(tiny_organism.vae)
