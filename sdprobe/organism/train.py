"""Training of the tiny-shapes organism from a fixed seed, on the CPU.

Two stages on images rendered on the fly: the VAE first (reconstruction + a small KL term), then the UNet
and the text encoder together (v-prediction on a zero-terminal-SNR schedule, an EMA of the weights).
Prompts leave each attribute out with probability ``p_omit`` and the whole prompt with ``p_uncond``
(classifier-free guidance); an omitted color is drawn from the skewed world distribution, which plants
the bias. A checkpoint is written every ``save_every`` steps, and a killed run resumes from it.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

from sdprobe.organism import components
from sdprobe.organism.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from sdprobe.organism.tokenizer import save_tokenizer
from sdprobe.world import format_prompt, render_batch, sample_specs

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    seed: int = 0  # seeds torch and numpy; the whole run is determined by it
    batch_size: int = 64
    vae_steps: int = 600  # VAE training steps
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6  # weight of the KL term (Stable Diffusion's VAE uses a tiny one too)
    decoder_steps: int = 900  # decoder-only refinement after the VAE stage (the latent space stays fixed)
    decoder_lr: float = 1e-3
    polish_steps: int = 1000  # a second decoder-only pass at a lower rate, which sharpens small shapes
    polish_lr: float = 3e-4
    unet_steps: int = 3500  # UNet + text-encoder training steps
    unet_lr: float = 4e-4
    warmup: int = 200  # linear warm-up steps of the UNet stage
    finetune_steps: int = 1500  # further UNet + text-encoder steps at a lower rate (same optimiser and EMA)
    finetune_lr: float = 1e-4
    p_omit: float = 0.3  # probability of leaving out each attribute of a training prompt
    p_uncond: float = 0.1  # probability of an empty prompt, for classifier-free guidance
    min_snr_gamma: float | None = None  # min-SNR loss weighting (Hang et al., 2023); None: plain v-prediction MSE
    ema_decay: float = 0.999
    save_every: int = 500  # steps between checkpoints (and pipeline snapshots)
    threads: int = 2  # torch CPU threads


def _images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).mul(2).sub(1)  # (B, 3, H, W) in [-1, 1]


def _batch(rng: np.random.Generator, n: int, p_omit: float, p_uncond: float) -> tuple[list[str], torch.Tensor]:
    specs = sample_specs(n, rng, p_omit=p_omit)
    scenes = [s.complete(rng) for s in specs]
    prompts = ["" if rng.random() < p_uncond else format_prompt(s) for s in specs]
    return prompts, _images_to_tensor(render_batch(scenes, rng))


def _train_vae(cfg: TrainConfig, rng: np.random.Generator, vae) -> None:
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.vae_steps, eta_min=cfg.vae_lr * 0.05)
    vae.train()
    for step in range(cfg.vae_steps):
        _, x = _batch(rng, cfg.batch_size, 0.0, 0.0)
        post = vae.encode(x).latent_dist
        recon = vae.decode(post.sample()).sample
        loss = torch.nn.functional.mse_loss(recon, x) + cfg.vae_kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log.info("vae step %d loss %.5f", step, loss.item())
    vae.eval()
    with torch.no_grad():
        _, x = _batch(rng, 512, 0.0, 0.0)
        std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    log.info("vae latent std %.4f -> scaling factor %.4f", std, 1.0 / std)


def refine_decoder(cfg: TrainConfig, vae) -> None:
    """Train the decoder alone on fresh images, with the encoder frozen, so the latent space does not move.

    Small shapes span about two latent pixels; the joint VAE stage keeps them separable in the latents (a probe
    reads square vs circle from them) but decodes small squares with rounded corners. Two decoder-only passes
    sharpen the decoder without changing what the UNet learns to produce: ``decoder_steps`` at ``decoder_lr``,
    then ``polish_steps`` at ``polish_lr``. Each draws from its own generator (``seed + 1``, ``seed + 2``), so
    neither changes the data the other stages see.
    """
    _train_decoder(vae, cfg.decoder_steps, cfg.decoder_lr, cfg.batch_size, np.random.default_rng(cfg.seed + 1))
    polish_decoder(cfg, vae)


def polish_decoder(cfg: TrainConfig, vae) -> None:
    """The second decoder-only pass of :func:`refine_decoder` (``polish_steps`` at ``polish_lr``, seed + 2)."""
    _train_decoder(vae, cfg.polish_steps, cfg.polish_lr, cfg.batch_size, np.random.default_rng(cfg.seed + 2))


def _train_decoder(vae, steps: int, lr: float, batch_size: int, rng: np.random.Generator) -> None:
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1), eta_min=lr * 0.05)
    vae.train()
    for step in range(steps):
        _, x = _batch(rng, batch_size, 0.0, 0.0)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        recon = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(recon, x) + torch.nn.functional.l1_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log.info("decoder step %d loss %.5f", step, loss.item())
    vae.eval()


STORED_DTYPE = torch.float16  # UNet and VAE weights are stored in half precision; diffusers loads them as float32


def save_pipeline(out: Path, tokenizer, text_encoder, vae, unet) -> None:
    """Write the organism as a stock ``StableDiffusionPipeline`` folder, replacing ``out`` atomically.

    The UNet and VAE are stored in :data:`STORED_DTYPE` to keep the package small; diffusers loads them as float32.
    The text encoder stays float32 because transformers keeps the stored dtype (0.7 MB).
    """
    import shutil

    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).to(STORED_DTYPE),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=copy.deepcopy(unet).to(STORED_DTYPE),
        scheduler=components.sample_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp, safe_serialization=True)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def _lr_factor(cfg: TrainConfig, step: int) -> float:
    """Learning rate of the UNet stage over ``unet_lr``: warm-up, then a cosine to 10%; in the fine-tuning steps
    that follow, a cosine from ``finetune_lr`` to 10% of it."""
    if step < cfg.unet_steps:
        warm = min(1.0, (step + 1) / cfg.warmup)
        return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.unet_steps)))
    t = (step - cfg.unet_steps) / max(cfg.finetune_steps, 1)
    return cfg.finetune_lr / cfg.unet_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train(out: Path, work: Path, cfg: TrainConfig = TrainConfig(), vae_checkpoint: Path | None = None) -> Path:
    """Train the organism and write a ``StableDiffusionPipeline`` folder to ``out``.

    Args:
        out (Path): destination pipeline folder (replaced atomically at every snapshot).
        work (Path): folder for resumable checkpoints.
        cfg (TrainConfig): hyper-parameters. Default: :class:`TrainConfig`.
        vae_checkpoint (Path | None): a ``checkpoint.safetensors`` of an earlier run whose VAE (and latent scaling)
            is reused instead of training the VAE stage again. Default: None.

    Raises:
        CheckpointError: a checkpoint that is not an sdprobe safetensors checkpoint (nothing is unpickled).

    Returns:
        Path: ``out``.
    """
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    work.mkdir(parents=True, exist_ok=True)
    save_tokenizer(work / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    text_encoder = components.text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    vae, unet = components.vae(), components.unet()
    rng = np.random.default_rng(cfg.seed)

    ckpt = work / CHECKPOINT
    state = load_checkpoint(ckpt) if ckpt.exists() else None
    if state is None and vae_checkpoint is not None:
        reused = load_checkpoint(vae_checkpoint, models=("vae",))
        vae.load_state_dict(reused["vae"])
        vae.register_to_config(scaling_factor=reused["scaling_factor"])
        start = 0
        log.info("reusing the VAE of %s", vae_checkpoint)
    elif state is None:
        _train_vae(cfg, rng, vae)
        start = 0
    if state is None:
        refine_decoder(cfg, vae)
    else:
        vae.load_state_dict(state["vae"])
        vae.register_to_config(scaling_factor=state["scaling_factor"])
        start = state["step"]
        log.info("resuming at step %d", start)
    vae.eval().requires_grad_(False)

    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(cfg, s))
    ema_unet, ema_te = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    if state is not None:
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_te.load_state_dict(state["ema_te"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
    noise_sched = components.train_scheduler()
    alphas = noise_sched.alphas_cumprod  # (T,)
    snr = alphas / (1 - alphas).clamp(min=1e-12)  # zero at the last timestep (zero terminal SNR)
    ema_params = list(ema_unet.parameters()) + list(ema_te.parameters())

    unet.train()
    text_encoder.train()
    t0 = time.time()
    total = cfg.unet_steps + cfg.finetune_steps
    for step in range(start, total):
        prompts, x = _batch(rng, cfg.batch_size, cfg.p_omit, cfg.p_uncond)
        with torch.no_grad():
            latents = vae.encode(x).latent_dist.sample() * vae.config.scaling_factor  # (B, 4, 8, 8)
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (latents.shape[0],))
        noisy = noise_sched.add_noise(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=text_encoder(ids).last_hidden_state).sample
        target = noise_sched.get_velocity(latents, noise, t)  # v-prediction
        per_sample = (pred - target).pow(2).mean(dim=(1, 2, 3))  # (B,)
        if cfg.min_snr_gamma is not None:
            per_sample = per_sample * torch.clamp(snr[t], max=cfg.min_snr_gamma) / (snr[t] + 1)
        loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - cfg.ema_decay)
        done = step + 1
        if step % 50 == 0:
            rate = (time.time() - t0) / (done - start)
            log.info("unet step %d loss %.4f  %.2fs/step  eta %.1f min", step, loss.item(), rate,
                     rate * (total - done) / 60)
        if done % cfg.save_every == 0 or done == total:
            state = dict(vae=vae.state_dict(), scaling_factor=vae.config.scaling_factor, step=done,
                         unet=unet.state_dict(), text_encoder=text_encoder.state_dict(),
                         ema_unet=ema_unet.state_dict(), ema_te=ema_te.state_dict(), opt=opt.state_dict(),
                         sched=sched.state_dict(), rng=rng.bit_generator.state, torch_rng=torch.get_rng_state())
            save_checkpoint(ckpt, state)
            save_pipeline(out, tokenizer, ema_te, vae, ema_unet)
            (work / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
            log.info("checkpoint at step %d -> %s", done, out)
    return out
