import json

import torch
from diffusers import StableDiffusionPipeline

from sdprobe.organism.train import TrainConfig, train


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def test_training_runs_a_few_steps_writes_a_stock_pipeline_and_resumes(tmp_path):
    cfg = TrainConfig(batch_size=4, vae_steps=2, decoder_steps=2, polish_steps=2, unet_steps=4, finetune_steps=2,
                      save_every=2, warmup=2)
    out, work = tmp_path / "pipe", tmp_path / "work"
    train(out, work, cfg)
    pipe = StableDiffusionPipeline.from_pretrained(out)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert json.loads((work / "train_config.json").read_text())["unet_steps"] == 4
    assert torch.load(work / "checkpoint.pt", weights_only=False)["step"] == 6  # 4 steps, then 2 fine-tuning steps
    before = _weights(out)

    # Resuming a finished run does no more steps and leaves the weights as they were.
    train(out, work, cfg)
    after = _weights(out)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_is_reproducible_from_its_seed(tmp_path):
    cfg = TrainConfig(batch_size=4, vae_steps=1, decoder_steps=1, polish_steps=1, unet_steps=2, finetune_steps=1,
                      save_every=2, warmup=1)
    train(tmp_path / "a", tmp_path / "wa", cfg)
    train(tmp_path / "b", tmp_path / "wb", cfg)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
