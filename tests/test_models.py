"""Loading pipelines from folders (safetensors only, clear errors) and seeded generation on tiny SD families."""

from __future__ import annotations

import json

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DModel

from sdprobe.generate import GenerationConfig, generate
from sdprobe.models import ModelLoadError, load_pipeline
from sdprobe.zoo import build_pipeline

FAST = GenerationConfig(steps=2, guidance=4.0, batch_size=2)


@pytest.fixture(scope="module")
def pipes():
    return {f: build_pipeline(f, "tiny", seed=0) for f in ("sd15", "sd2", "sdxl")}


@pytest.mark.parametrize(("family", "cls"), [("sd15", StableDiffusionPipeline), ("sdxl", StableDiffusionXLPipeline)])
def test_load_saved_tiny_pipeline(pipes, tmp_path, family, cls):
    pipe = pipes[family]
    pipe.save_pretrained(tmp_path, safe_serialization=True)
    assert list(tmp_path.glob("unet/*.safetensors"))
    loaded = load_pipeline(str(tmp_path))
    assert type(loaded) is cls
    for name in ("unet", "vae", "text_encoder"):
        saved, back = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == back.keys()
        assert all(torch.equal(saved[k], back[k]) for k in saved), name
    assert loaded.tokenizer("a red circle").input_ids == pipe.tokenizer("a red circle").input_ids
    assert type(loaded.scheduler) is type(pipe.scheduler)
    prompts, seeds = ["a red circle", "a small blue square"], [3, 4]
    np.testing.assert_array_equal(generate(loaded, prompts, seeds, FAST), generate(pipe, prompts, seeds, FAST))


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (tmp_path / "unet").mkdir()
    torch.save({"w": torch.zeros(1)}, tmp_path / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"only pickle weights.*diffusion_pytorch_model\.bin.*safetensors"):
        load_pipeline(str(tmp_path))


def test_unknown_builtin_lists_builtins():
    with pytest.raises(ModelLoadError, match="unknown built-in model 'builtin:nope'.*builtin:tiny-shapes"):
        load_pipeline("builtin:nope")


def test_missing_path(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelLoadError, match="not found.*Built-ins"):
        load_pipeline(str(missing))


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        load_pipeline(str(tmp_path))


def test_hub_id_offline_says_how_to_proceed(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import time
    with pytest.raises(ModelLoadError, match="needs network access.*local folder to --model"):
        load_pipeline("someone/not-a-model")


def test_unsupported_pipeline_class_is_named(tmp_path):
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(32, 32),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(ModelLoadError, match="unsupported pipeline class DDPMPipeline.*StableDiffusionPipeline"):
        load_pipeline(str(tmp_path))


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
def test_generation_is_deterministic(pipes, family):
    pipe = pipes[family]
    prompts = ["a red circle", "a red circle", "a big green triangle at the top"]
    seeds = [0, 1, 0]
    first = generate(pipe, prompts, seeds, FAST)
    second = generate(pipe, prompts, seeds, FAST)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    assert first.shape == (3, side, side, 3) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, second)
    assert np.abs(first[0] - first[1]).max() > 1e-4  # another seed, another image
    assert np.abs(first[0] - first[2]).max() > 1e-6  # another prompt, another image
    alone = generate(pipe, prompts[2:], seeds[2:], FAST)  # an image does not depend on its batch
    np.testing.assert_allclose(alone[0], first[2], atol=1e-5)
