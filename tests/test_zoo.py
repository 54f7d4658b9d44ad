"""The Stable Diffusion families built from configs: parameter counts of the full models, tiny variants."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from sdprobe.world import vocabulary
from sdprobe.zoo import FAMILIES, build_components, build_pipeline, build_tokenizer, configs

MILLION = 1e6


def _millions(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / MILLION, 1)


def _meta_components(family: str) -> dict:
    with torch.device("meta"):  # shapes only: no memory, no random initialisation cost
        return build_components(family, "full")


def test_full_sd2_matches_published_parameter_counts():
    parts = _meta_components("sd2")
    assert all(p.is_meta for p in parts["unet"].parameters())
    assert _millions(parts["unet"]) == 865.9
    assert _millions(parts["text_encoder"]) == 340.4
    assert type(parts["text_encoder"]) is CLIPTextModel
    assert parts["scheduler"].config.prediction_type == "v_prediction"


def test_full_sd15_and_sdxl_match_published_parameter_counts():
    sd15 = _meta_components("sd15")
    assert _millions(sd15["unet"]) == 859.5
    assert _millions(sd15["text_encoder"]) == 123.1
    assert _millions(sd15["vae"]) == 83.7
    sdxl = _meta_components("sdxl")
    assert _millions(sdxl["unet"]) == 2567.5
    assert _millions(sdxl["text_encoder_2"]) == 694.7
    assert type(sdxl["text_encoder_2"]) is CLIPTextModelWithProjection


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_keeps_the_block_types_of_the_full_model(family):
    tiny, full = configs(family, "tiny")["unet"], configs(family, "full")["unet"]
    assert set(tiny["down_block_types"]) == set(full["down_block_types"])
    assert set(tiny["up_block_types"]) == set(full["up_block_types"])
    assert tiny.get("use_linear_projection", False) == full.get("use_linear_projection", False)
    assert tiny.get("addition_embed_type") == full.get("addition_embed_type")
    text_tiny, text_full = configs(family, "tiny")["text_encoder"], configs(family, "full")["text_encoder"]
    assert text_tiny["hidden_act"] == text_full["hidden_act"]


def test_sdxl_conditioning_widths_are_consistent():
    for size in ("tiny", "full"):
        cfg = configs("sdxl", size)
        te1, te2, unet = cfg["text_encoder"], cfg["text_encoder_2"], cfg["unet"]
        assert unet["cross_attention_dim"] == te1["hidden_size"] + te2["hidden_size"]
        # the pooled text embedding plus six size/crop numbers, each embedded with addition_time_embed_dim
        assert unet["projection_class_embeddings_input_dim"] == te2["projection_dim"] + 6 * unet["addition_time_embed_dim"]


def test_tiny_pipelines_have_the_right_classes():
    sd15, sd2, sdxl = (build_pipeline(f) for f in FAMILIES)
    assert type(sd15) is StableDiffusionPipeline and sd15.safety_checker is None
    assert type(sd2) is StableDiffusionPipeline and sd2.scheduler.config.prediction_type == "v_prediction"
    assert type(sdxl) is StableDiffusionXLPipeline
    assert type(sdxl.text_encoder_2) is CLIPTextModelWithProjection
    assert sdxl.tokenizer_2.pad_token == "!" and sdxl.tokenizer.pad_token == "<|endoftext|>"
    assert sum(p.numel() for p in sdxl.unet.parameters()) < 5 * MILLION


def test_seed_fixes_the_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_components("sd15", seed=1)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_components("sd15", seed=1)
    c = build_components("sd15", seed=2)
    wa, wb, wc = (p["unet"].conv_in.weight for p in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_tokenizer_makes_grammar_words_single_tokens():
    tok = build_tokenizer()
    for word in vocabulary():
        assert len(tok(word).input_ids) == 3, word  # BOS, the word, EOS
    assert tok.model_max_length == 77
    assert len(tok("zebra!").input_ids) > 3  # other text falls back to characters


@pytest.mark.parametrize(("family", "size", "message"), [
    ("sd3", "tiny", "unknown family 'sd3'; valid: sd15, sd2, sdxl"),
    ("sd15", "huge", "unknown size 'huge'; valid: tiny, full"),
])
def test_unknown_family_or_size_lists_the_valid_ones(family, size, message):
    with pytest.raises(ValueError, match=message):
        build_components(family, size)
    with pytest.raises(ValueError, match=message):
        build_pipeline(family, size)
