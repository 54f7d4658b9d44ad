import json

import pytest
import torch
from diffusers import StableDiffusionPipeline

from sdprobe.organism.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
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
    state = load_checkpoint(work / CHECKPOINT)
    assert state["step"] == 6  # 4 steps, then 2 fine-tuning steps
    assert state["opt"]["state"] and isinstance(state["rng"], dict) and state["sched"]["last_epoch"] == 6
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


class _Payload:
    """Unpickling this runs a command; a checkpoint reader that unpickles would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_checkpoint_is_refused_unread(tmp_path, capsys):
    import pickle

    from sdprobe.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoint.pt"
    evil.write_bytes(pickle.dumps({"vae": _Payload(marker)}))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(evil)
    work = tmp_path / "work"
    work.mkdir()
    (work / CHECKPOINT).write_bytes(evil.read_bytes())  # a resumable checkpoint replaced by a pickle
    with pytest.raises(CheckpointError):
        train(tmp_path / "pipe", work, TrainConfig(batch_size=2, vae_steps=1, decoder_steps=1, polish_steps=1,
                                                   unet_steps=1, finetune_steps=0, save_every=1, warmup=1))
    assert main(["train-organism", "-o", str(tmp_path / "out"), "--vae-checkpoint", str(evil)]) == 2
    assert "never unpickles" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert not marker.exists()


def test_no_unpickling_anywhere_in_the_package():
    from pathlib import Path

    import sdprobe

    root = Path(sdprobe.__file__).parent
    offenders = [f"{p.relative_to(root)}: {bad}" for p in root.rglob("*.py") for bad in
                 ("torch.load(", "pickle.load", "weights_only=False", "import pickle") if bad in p.read_text()]
    assert not offenders, offenders
