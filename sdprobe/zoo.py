"""Stable Diffusion families (SD1.5, SD2, SDXL) built from their published configs, with random weights.

No weights are downloaded: every component is constructed from the values of the models' published
``config.json`` files (``size="full"``), or from a *tiny* variant that keeps each family's block types and
topology with tiny widths (``size="tiny"``), so pipelines run in about a second on a CPU. Use them to develop
and test probes against the real architectures; load trained weights with :func:`sdprobe.models.load_pipeline`.

The tokenizers are small CLIP BPE tokenizers built in-process (the tiny-shapes words are single tokens, any
other text falls back to characters): the real 49,408-token vocabulary would need a download. The full-size
text encoders keep the published ``vocab_size`` so their parameter counts match the real models.

Papers:
    SD1.5 / SD2 (latent diffusion): https://arxiv.org/abs/2112.10752
    SDXL: https://arxiv.org/abs/2307.01952

Example:
    >>> pipe = build_pipeline("sdxl", "tiny", seed=0)
    >>> type(pipe).__name__
    'StableDiffusionXLPipeline'
    >>> with torch.device("meta"):  # count parameters without allocating them
    ...     unet = build_components("sd2", "full")["unet"]
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import torch

from sdprobe.organism.tokenizer import BOS, EOS, build_vocab_and_merges
from sdprobe.world import vocabulary

log = logging.getLogger(__name__)

FAMILIES = ("sd15", "sd2", "sdxl")
SIZES = ("tiny", "full")
MAX_LENGTH = 77  # CLIP's context length, in tokens, in every family
TINY_TEXT_WIDTH = 32  # hidden size of the tiny text encoders
TINY_TEXT_LAYERS = 2
TINY_TEXT_HEADS = 4
TINY_SAMPLE_SIZE = 8  # latent side of the tiny UNets; the tiny VAE up-samples 2x, so images are 16x16

_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

# --- text encoders (transformers CLIPTextConfig keyword arguments) ---------------------------------------------
_CLIP_VIT_L = dict(  # openai/clip-vit-large-patch14 text tower: SD1.5's encoder and SDXL's first encoder
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=MAX_LENGTH, hidden_act="quick_gelu", projection_dim=768, layer_norm_eps=1e-5,
)
_OPENCLIP_H = dict(  # OpenCLIP ViT-H/14 text tower without its last layer, as SD2 ships it (CLIPTextModel)
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=MAX_LENGTH, hidden_act="gelu", layer_norm_eps=1e-5,
    projection_dim=512,  # the published value; CLIPTextModel has no projection, so it holds no weights
)
_OPENCLIP_BIGG = dict(  # OpenCLIP ViT-bigG/14 text tower: SDXL's second encoder (CLIPTextModelWithProjection)
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=MAX_LENGTH, hidden_act="gelu", projection_dim=1280, layer_norm_eps=1e-5,
)


def _tiny_text(act: str) -> dict:
    return dict(hidden_size=TINY_TEXT_WIDTH, intermediate_size=4 * TINY_TEXT_WIDTH, num_hidden_layers=TINY_TEXT_LAYERS,
                num_attention_heads=TINY_TEXT_HEADS, max_position_embeddings=MAX_LENGTH, hidden_act=act,
                projection_dim=TINY_TEXT_WIDTH, layer_norm_eps=1e-5)


# --- UNets (diffusers UNet2DConditionModel keyword arguments) ----------------------------------------------------
_SD_UNET = dict(  # shared by SD1.5 and SD2
    in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
    center_input_sample=False, mid_block_scale_factor=1,
)
_UNETS = {
    ("sd15", "full"): dict(_SD_UNET, sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    ("sd2", "full"): dict(_SD_UNET, sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                          use_linear_projection=True, upcast_attention=True),
    ("sdxl", "full"): dict(
        in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280), sample_size=128,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,  # text_encoder_2 projection (1280) + 6 size/crop ids x 256
        act_fn="silu", norm_num_groups=32, norm_eps=1e-5, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
    ),
    ("sd15", "tiny"): dict(
        in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64), sample_size=TINY_SAMPLE_SIZE,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH, attention_head_dim=8, norm_num_groups=32,
    ),
    ("sd2", "tiny"): dict(
        in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64), sample_size=TINY_SAMPLE_SIZE,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_TEXT_WIDTH, attention_head_dim=(2, 4), use_linear_projection=True,
        upcast_attention=True, norm_num_groups=32,
    ),
    ("sdxl", "tiny"): dict(
        in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64), sample_size=TINY_SAMPLE_SIZE,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), cross_attention_dim=2 * TINY_TEXT_WIDTH,
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=TINY_TEXT_WIDTH + 6 * 8, norm_num_groups=32,
    ),
}

# --- VAEs (diffusers AutoencoderKL keyword arguments) ------------------------------------------------------------
_SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32,
)
_TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
    sample_size=2 * TINY_SAMPLE_SIZE,
)
_VAES = {
    ("sd15", "full"): dict(_SD_VAE, sample_size=512, scaling_factor=0.18215),
    ("sd2", "full"): dict(_SD_VAE, sample_size=768, scaling_factor=0.18215),
    ("sdxl", "full"): dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
    ("sd15", "tiny"): dict(_TINY_VAE, scaling_factor=0.18215),
    ("sd2", "tiny"): dict(_TINY_VAE, scaling_factor=0.18215),
    ("sdxl", "tiny"): dict(_TINY_VAE, scaling_factor=0.13025, force_upcast=True),
}

# --- schedulers: (class name, keyword arguments) -----------------------------------------------------------------
_SCHEDULERS = {
    "sd15": ("PNDMScheduler", dict(_BETAS, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)),
    "sd2": ("DDIMScheduler", dict(_BETAS, set_alpha_to_one=False, steps_offset=1, clip_sample=False,
                                  prediction_type="v_prediction")),
    "sdxl": ("EulerDiscreteScheduler", dict(_BETAS, interpolation_type="linear", prediction_type="epsilon",
                                            steps_offset=1, timestep_spacing="leading", use_karras_sigmas=False)),
}


def _check(family: str, size: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid: {', '.join(SIZES)}")


def configs(family: str, size: str = "tiny") -> dict[str, dict]:
    """The constructor arguments of each model component of a family.

    Args:
        family (str): ``"sd15"``, ``"sd2"`` or ``"sdxl"``.
        size (str): ``"tiny"`` or ``"full"``. Default: ``"tiny"``.

    Returns:
        dict[str, dict]: ``unet``, ``vae``, ``text_encoder`` (and ``text_encoder_2`` for SDXL) -> keyword
        arguments of ``UNet2DConditionModel``, ``AutoencoderKL`` and ``CLIPTextConfig``; ``scheduler`` ->
        ``{"class": name, **kwargs}``. The text configs leave out the token ids, which come from the tokenizer.

    Example:
        >>> configs("sd2", "full")["unet"]["cross_attention_dim"]
        1024
    """
    _check(family, size)
    tiny = size == "tiny"
    text = {
        "sd15": {"text_encoder": _tiny_text("quick_gelu") if tiny else dict(_CLIP_VIT_L)},
        "sd2": {"text_encoder": _tiny_text("gelu") if tiny else dict(_OPENCLIP_H)},
        "sdxl": {"text_encoder": _tiny_text("quick_gelu") if tiny else dict(_CLIP_VIT_L),
                 "text_encoder_2": _tiny_text("gelu") if tiny else dict(_OPENCLIP_BIGG)},
    }[family]
    scheduler_class, scheduler_kwargs = _SCHEDULERS[family]
    return {
        "unet": dict(_UNETS[family, size]),
        "vae": dict(_VAES[family, size]),
        **text,
        "scheduler": {"class": scheduler_class, **scheduler_kwargs},
    }


def build_tokenizer(pad_token: str = EOS, words: list[str] | None = None, max_length: int = MAX_LENGTH):
    """A small CLIP BPE tokenizer built in-process (no download).

    Args:
        pad_token (str): the padding token; SD pads with ``<|endoftext|>``, SDXL's second tokenizer with ``"!"``.
            Default: ``"<|endoftext|>"``.
        words (list[str] | None): words that become single tokens. Default: the tiny-shapes vocabulary.
        max_length (int): ``model_max_length``. Default: 77.

    Returns:
        CLIPTokenizer: any text tokenizes; unknown words split into characters.

    Example:
        >>> build_tokenizer()("a red circle").input_ids[:2]  # doctest: +SKIP
    """
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_and_merges(vocabulary() if words is None else list(words))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    with tempfile.TemporaryDirectory() as tmp:  # from_pretrained reads the standard files in every transformers
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": max_length, "do_lower_case": True, **special}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        (folder / "special_tokens_map.json").write_text(json.dumps(special))
        return CLIPTokenizer.from_pretrained(folder)


def _text_encoder(kwargs: dict, tokenizer, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if "vocab_size" not in kwargs:  # tiny encoders: embeddings as large as the in-process vocabulary
        kwargs = dict(kwargs, vocab_size=len(tokenizer))
    config = CLIPTextConfig(**kwargs, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()


def build_components(family: str, size: str = "tiny", seed: int = 0) -> dict:
    """Construct the components of a Stable Diffusion family with random weights.

    Args:
        family (str): ``"sd15"``, ``"sd2"`` or ``"sdxl"``.
        size (str): ``"tiny"`` (same topology, tiny widths; runs in a second on a CPU) or ``"full"`` (the
            published configs: ~1B parameters for SD1.5/SD2, ~3.5B for SDXL). Default: ``"tiny"``.
        seed (int): seeds the random weights; the global torch RNG is left untouched. Default: 0.

    Returns:
        dict: ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``; for SDXL also ``text_encoder_2``
        (``CLIPTextModelWithProjection``) and ``tokenizer_2``. Build under ``with torch.device("meta"):`` to count
        parameters without allocating them.

    Raises:
        ValueError: an unknown family or size (the message lists the valid ones).

    Example:
        >>> parts = build_components("sd15")
        >>> parts["unet"].config.cross_attention_dim
        32
    """
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cfg = configs(family, size)
    log.info("building %s (%s) with random weights, seed %d", family, size, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_tokenizer()
        parts: dict = {"tokenizer": tokenizer}
        parts["text_encoder"] = _text_encoder(cfg["text_encoder"], tokenizer, with_projection=False)
        if family == "sdxl":
            tokenizer_2 = build_tokenizer(pad_token="!")
            parts["tokenizer_2"] = tokenizer_2
            parts["text_encoder_2"] = _text_encoder(cfg["text_encoder_2"], tokenizer_2, with_projection=True)
        parts["unet"] = UNet2DConditionModel(**cfg["unet"]).eval()
        parts["vae"] = AutoencoderKL(**cfg["vae"]).eval()
    scheduler_kwargs = dict(cfg["scheduler"])
    with torch.device("cpu"):  # schedulers keep their tables on the CPU, also under a meta-device context
        parts["scheduler"] = getattr(diffusers, scheduler_kwargs.pop("class"))(**scheduler_kwargs)
    return parts


def build_pipeline(family: str, size: str = "tiny", seed: int = 0):
    """A ready-to-run pipeline of a family with random weights (no safety checker, progress bars off).

    Args:
        family (str): ``"sd15"``, ``"sd2"`` or ``"sdxl"``.
        size (str): ``"tiny"`` or ``"full"``. Default: ``"tiny"``.
        seed (int): seeds the random weights. Default: 0.

    Returns:
        StableDiffusionPipeline | StableDiffusionXLPipeline: on the CPU in float32.

    Example:
        >>> pipe = build_pipeline("sd2")
        >>> pipe.scheduler.config.prediction_type
        'v_prediction'
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    parts = build_components(family, size, seed)
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(**parts, force_zeros_for_empty_prompt=True)
    else:
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


TINY_CLIP_SIDE = 32  # image side of the tiny random CLIP


def save_tiny_clip(folder: Path, words: list[str] | None = None, seed: int = 0) -> Path:
    """Write a tiny ``CLIPModel`` with random weights, its tokenizer and its image processor to ``folder``.

    It stands in for a user's CLIP (e.g. ViT-B/32) in tests of the CLIP readers: it loads with stock
    ``CLIPModel.from_pretrained`` / ``CLIPProcessor.from_pretrained`` and reads anything, meaninglessly.

    Args:
        folder (Path): where to write (created).
        words (list[str] | None): words that become single tokens. Default: the tiny-shapes vocabulary.
        seed (int): seeds the weights. Default: 0.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok = build_tokenizer(words=words)
    width = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(width, vocab_size=len(tok), max_position_embeddings=MAX_LENGTH, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(width, image_size=TINY_CLIP_SIDE, patch_size=8),
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    side = TINY_CLIP_SIDE
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    CLIPProcessor(image_processor=processor, tokenizer=tok).save_pretrained(folder)
    return folder
