"""Shared fixtures: tiny, random-weight pipelines in the organism's layout, built in-process in a second."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow; run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def build_tiny_organism(tmp_path_factory=None, seed: int = 0):
    """An untrained pipeline with the organism's exact architecture and tokenizer."""
    import tempfile
    from pathlib import Path

    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

    from sdprobe.organism import components
    from sdprobe.organism.tokenizer import save_tokenizer

    torch.manual_seed(seed)
    tok_dir = Path(tempfile.mkdtemp(prefix="sdprobe-tok-"))
    save_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    pipe = StableDiffusionPipeline(
        vae=components.vae(),
        text_encoder=components.text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id),
        tokenizer=tokenizer,
        unet=components.unet(),
        scheduler=components.sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_organism():
    """A session-wide untrained organism-shaped pipeline. Tests must leave its weights as they found them."""
    return build_tiny_organism()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny CLIP built from a config (random weights), saved as a local model folder."""
    from sdprobe.zoo import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip"))
