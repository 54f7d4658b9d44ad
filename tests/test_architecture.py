"""Selectors on the organism and on tiny SD1.5 / SD2 / SDXL pipelines, checked against counts derived by hand
from each component's config (never by calling ``select`` a second time)."""

from __future__ import annotations

import pytest
from torch import nn

from sdprobe.architecture import available_components, component_numel, describe, select
from sdprobe.zoo import build_pipeline

TEXT_LINEARS_PER_LAYER = 6  # q, k, v, out projections + fc1, fc2
TEXT_MLP_PER_LAYER = 2
ATTN_LINEARS = 4  # to_q, to_k, to_v, to_out.0
FF_LINEARS = 2  # GEGLU projection, output projection
TIME_EMBEDDING_LINEARS = 2  # time_embedding.linear_1, linear_2 (and the same pair in SDXL's add_embedding)


# --- counting by hand from a UNet config ------------------------------------------------------------------------
def _per_block(value, n: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _layout(cfg: dict) -> dict:
    """Per region: resnets, transformer blocks, resnet (in, out) channels and samplers, as diffusers wires them."""
    ch = list(cfg["block_out_channels"])
    n, lpb = len(ch), cfg["layers_per_block"]
    tl = _per_block(cfg.get("transformer_layers_per_block", 1), n)
    down, up = [], []
    for i, kind in enumerate(cfg["down_block_types"]):
        ins = [ch[max(i - 1, 0)]] + [ch[i]] * (lpb - 1)
        down.append(dict(resnets=[(c, ch[i]) for c in ins], transformers=[tl[i]] * lpb if "CrossAttn" in kind else [],
                         sampler=i < n - 1))
    rch, rtl = ch[::-1], tl[::-1]
    for i, kind in enumerate(cfg["up_block_types"]):
        prev, out, skip_in = rch[max(i - 1, 0)], rch[i], rch[min(i + 1, n - 1)]
        res = [((prev if j == 0 else out) + (skip_in if j == lpb else out), out) for j in range(lpb + 1)]
        up.append(dict(resnets=res, transformers=[rtl[i]] * (lpb + 1) if "CrossAttn" in kind else [], sampler=i < n - 1))
    mid = dict(resnets=[(ch[-1], ch[-1])] * 2, transformers=[tl[-1]], sampler=False)
    return {"down": down, "mid": [mid], "up": up}


def _blocks(cfg: dict, region: str | None = None, index: int | None = None) -> list[dict]:
    lay = _layout(cfg)
    regions = [region] if region else ["down", "mid", "up"]
    out = [b for r in regions for b in lay[r]]
    return [out[index]] if index is not None else out


def _transformer_blocks(cfg, region=None, index=None) -> int:
    return sum(sum(b["transformers"]) for b in _blocks(cfg, region, index))


def _linears(cfg, region=None, index=None) -> int:
    blocks = _blocks(cfg, region, index)
    per_transformer = 2 * ATTN_LINEARS + FF_LINEARS
    proj = 2 * len([t for b in blocks for t in b["transformers"]]) if cfg.get("use_linear_projection") else 0
    time_proj = sum(len(b["resnets"]) for b in blocks)  # one time_emb_proj per resnet
    return per_transformer * _transformer_blocks(cfg, region, index) + proj + time_proj


def _convs(cfg) -> int:
    blocks = _blocks(cfg)
    resnet_convs = sum(2 + (cin != cout) for b in blocks for cin, cout in b["resnets"])  # conv1, conv2, shortcut
    proj = 0 if cfg.get("use_linear_projection") else 2 * len([t for b in blocks for t in b["transformers"]])
    return 2 + resnet_convs + proj + sum(b["sampler"] for b in blocks)  # conv_in, conv_out


# --- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipes():
    return {f: build_pipeline(f, "tiny") for f in ("sd15", "sd2", "sdxl")}


def _count(pipe, selector, include_conv=False) -> int:
    return len(select(pipe, selector, include_conv=include_conv))


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
def test_text_encoder_counts(pipes, family):
    pipe = pipes[family]
    layers = pipe.text_encoder.config.num_hidden_layers
    assert _count(pipe, "text_encoder") == TEXT_LINEARS_PER_LAYER * layers
    assert _count(pipe, "text_encoder.mlp") == TEXT_MLP_PER_LAYER * layers
    assert _count(pipe, "text_encoder.attn") == ATTN_LINEARS * layers
    refs = select(pipe, "text_encoder.layers.0")
    assert len(refs) == TEXT_LINEARS_PER_LAYER
    assert all(".layers.0." in r.qualified_name for r in refs)


@pytest.mark.parametrize("family", ["sd15", "sd2", "sdxl"])
def test_unet_counts(pipes, family):
    pipe = pipes[family]
    cfg = dict(pipe.unet.config)
    assert _count(pipe, "unet.attn2") == ATTN_LINEARS * _transformer_blocks(cfg)
    assert _count(pipe, "unet.attn1") == ATTN_LINEARS * _transformer_blocks(cfg)
    assert _count(pipe, "unet.up.attn1") == ATTN_LINEARS * _transformer_blocks(cfg, "up")
    assert _count(pipe, "unet.ff") == FF_LINEARS * _transformer_blocks(cfg)
    assert _count(pipe, "unet.down.0") == _linears(cfg, "down", 0)
    assert _count(pipe, "unet.down.1") == _linears(cfg, "down", 1)
    assert _count(pipe, "unet.mid") == _linears(cfg, "mid")
    add_embedding = TIME_EMBEDDING_LINEARS if cfg.get("addition_embed_type") == "text_time" else 0
    n_linear = _linears(cfg) + TIME_EMBEDDING_LINEARS + add_embedding
    assert _count(pipe, "unet") == n_linear
    convs = select(pipe, "unet.conv")
    assert len(convs) == _convs(cfg)
    assert all(isinstance(r.module, nn.Conv2d) and r.kind == "conv" for r in convs)
    assert _count(pipe, "unet", include_conv=True) == n_linear + _convs(cfg)


def test_linear_projection_moves_proj_between_conv_and_linear(pipes):
    sd15_proj = select(pipes["sd15"], "unet.proj", include_conv=True)
    sd2_proj = select(pipes["sd2"], "unet.proj")
    transformers_15 = len([t for b in _blocks(dict(pipes["sd15"].unet.config)) for t in b["transformers"]])
    assert len(sd15_proj) == 2 * transformers_15 and {r.kind for r in sd15_proj} == {"conv"}
    assert {r.kind for r in sd2_proj} == {"linear"}
    with pytest.raises(ValueError, match="match no prunable weight"):
        select(pipes["sd15"], "unet.proj")  # SD1.5's proj_in/out are 1x1 convolutions


def test_sdxl_second_text_encoder(pipes):
    pipe = pipes["sdxl"]
    layers = pipe.text_encoder_2.config.num_hidden_layers
    assert available_components(pipe) == ["text_encoder", "text_encoder_2", "unet"]
    refs = select(pipe, "text_encoder_2")
    assert len(refs) == TEXT_LINEARS_PER_LAYER * layers + 1  # + text_projection
    assert all(r.qualified_name.startswith("text_encoder_2.") for r in refs)
    assert [r.module_name for r in select(pipe, "text_encoder_2.projection")] == ["text_projection"]
    assert len(select(pipe, ["text_encoder", "text_encoder_2"])) == TEXT_LINEARS_PER_LAYER * (
        pipe.text_encoder.config.num_hidden_layers + layers) + 1
    assert _count(pipe, "unet.time") == TIME_EMBEDDING_LINEARS * 2 + sum(
        len(b["resnets"]) for b in _blocks(dict(pipe.unet.config)))


def test_organism_counts(tiny_organism):
    cfg = dict(tiny_organism.unet.config)
    assert _count(tiny_organism, "text_encoder") == TEXT_LINEARS_PER_LAYER * 3  # the organism's 3 layers
    assert _count(tiny_organism, "text_encoder.layers.2.mlp") == TEXT_MLP_PER_LAYER
    assert _transformer_blocks(cfg) == 7  # down 2 x 1, mid 1, up 2 x 2
    assert _count(tiny_organism, "unet.attn2") == ATTN_LINEARS * 7
    assert _count(tiny_organism, "unet.conv") == _convs(cfg)
    assert _count(tiny_organism, ["unet.attn2", "unet.up.attn2"]) == ATTN_LINEARS * 7  # union, no duplicates
    assert available_components(tiny_organism) == ["text_encoder", "unet"]


def test_selection_and_descriptions_name_real_modules(pipes):
    pipe = pipes["sd15"]
    ref = select(pipe, "unet.up.1.attn2")[0]
    assert ref.qualified_name == f"unet.{ref.module_name}.weight"
    assert ref.weight is dict(pipe.unet.named_modules())[ref.module_name].weight
    assert describe(ref) == {"component": "unet", "region": "up", "block": 1, "role": "attn2"}
    text_ref = select(pipe, "text_encoder.layers.1.mlp")[0]
    assert describe(text_ref) == {"component": "text_encoder", "region": "encoder", "block": 1, "role": "mlp.fc1"}
    assert component_numel(pipe, "text_encoder") == sum(p.numel() for p in pipe.text_encoder.parameters())


def test_unknown_component_lists_valid_ones(pipes):
    with pytest.raises(ValueError, match="unknown component 'vae'.*text_encoder, text_encoder_2, unet"):
        select(pipes["sd15"], "vae.conv")


def test_unknown_filter_lists_valid_ones(pipes):
    with pytest.raises(ValueError, match="unknown filter 'mlp'.*attn1.*down.N"):
        select(pipes["sd15"], "unet.mlp")
    with pytest.raises(ValueError, match="unknown filter 'ff'.*mlp.*layers.N"):
        select(pipes["sd15"], "text_encoder.ff")


def test_component_the_pipeline_lacks(pipes):
    with pytest.raises(ValueError, match="text_encoder_2.*it has: text_encoder, unet"):
        select(pipes["sd15"], ["unet.attn2", "text_encoder_2"])


def test_empty_and_unmatched_selectors(pipes):
    with pytest.raises(ValueError, match="no selector"):
        select(pipes["sd15"], [])
    with pytest.raises(ValueError, match="match no prunable weight"):
        select(pipes["sd15"], "unet.down.7")
