"""Architecture of the tiny-shapes organism: Stable Diffusion's components, sized for a 32x32 world."""

from __future__ import annotations

from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sdprobe.organism.tokenizer import MAX_LENGTH

RESOLUTION = 32  # image side in pixels
LATENT_CHANNELS = 4
TEXT_WIDTH = 64  # CLIP text encoder hidden size, also the UNet's cross-attention width

# Stable Diffusion's scaled-linear betas, rescaled to zero terminal SNR, with v-prediction and trailing timesteps
# (Lin et al. 2024, https://arxiv.org/abs/2305.08891). With SD's own schedule the last training step still holds
# 7% of the signal, so a model this small learns to take the shape's position from the leaked low frequencies and
# at sampling time places the shape wherever the initial noise suggests, ignoring "left"/"right" in the prompt.
SCHEDULER_KWARGS = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
)


def text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    """A 3-layer, 64-wide CLIP text encoder."""
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        projection_dim=TEXT_WIDTH,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def vae() -> AutoencoderKL:
    """A small KL autoencoder with 4x down-sampling: 32x32x3 images <-> 8x8x4 latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=RESOLUTION,
    )


def unet() -> UNet2DConditionModel:
    """A two-level UNet with cross-attention at both levels and in the middle block."""
    return UNet2DConditionModel(
        sample_size=RESOLUTION // 4,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 128),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SCHEDULER_KWARGS)


def sample_scheduler() -> DPMSolverMultistepScheduler:
    """The organism's default sampler, saved with the pipeline."""
    return DPMSolverMultistepScheduler(**SCHEDULER_KWARGS, steps_offset=1)  # offset unused by trailing spacing


CLIP_PATCH = 8  # vision patch side: a 4x4 grid of patches over the 32x32 image, two per quadrant side
CLIP_VISION_WIDTH = 96
CLIP_WIDTH = 64  # text width and joint embedding size


def clip(vocab_size: int, bos_id: int, eos_id: int):
    """The tiny-shapes CLIP (``builtin:tiny-shapes-clip``): a 4-layer ViT over 8x8 patches and a 2-layer text tower
    on the organism's tokenizer, joined in a 64-dimensional embedding."""
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=vocab_size, hidden_size=CLIP_WIDTH, intermediate_size=4 * CLIP_WIDTH, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_LENGTH, projection_dim=CLIP_WIDTH,
                bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    vision = dict(image_size=RESOLUTION, patch_size=CLIP_PATCH, hidden_size=CLIP_VISION_WIDTH,
                  intermediate_size=4 * CLIP_VISION_WIDTH, num_hidden_layers=4, num_attention_heads=4,
                  projection_dim=CLIP_WIDTH)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=CLIP_WIDTH))
