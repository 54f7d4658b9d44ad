"""The planted organism (``builtin:tiny-shapes-planted``): isolation's positive control.

A variant of the tiny-shapes organism in which a small, known set of text-encoder weights is the only way a color
word's identity reaches the rest of the model. Isolation run on it must find that set; a search that cannot find a
set planted by construction cannot be trusted to find one that training put there.

Construction (structural, so it holds exactly, not approximately). Pick three coordinates ``J = (j, j2, j3)`` of
the text encoder's residual stream, those the UNet reads least. Then:

* every color word's token embedding is the same vector outside ``J`` (tied), and carries its color in ``J`` as a
  code ``(s, t, u)`` with ``s + t + u = 0`` and ``s² + t² + u² = R²``: the six colors differ in ``s``, and every
  LayerNorm sees the same mean and variance whatever the color;
* no other token, no position embedding and no layer writes into ``J`` (the rows ``J`` of every ``out_proj`` and
  ``fc2`` and their biases are zero), so ``J`` holds the code unchanged through the whole encoder;
* every LayerNorm gives ``J`` zero gain and bias, except layer 0's ``layer_norm2`` at ``j``; the final LayerNorm's
  gain on ``J`` is zero, so the encoder's output never shows the code to the UNet;
* the only weights reading coordinate ``j`` of that LayerNorm are the planted ones: ``paths`` entries
  ``fc1[r, j]`` of layer 0's MLP (rows ``r`` in ``R``), all of the same magnitude.

So with the planted weights removed, every color word computes exactly the same thing (``tests/test_planted.py``
checks it to float precision); with any one of them present the color is readable. The rest of the text encoder
is distilled from the organism's with every nonempty subset of the planted weights dropped at random, so that each
planted weight alone carries the color: color breaks only when all of them are removed, and the unique minimal
breaking set is the planted set. Finally the planted weights are given the magnitude of the ``sparsity`` quantile
of their matrix (with the LayerNorm's gain scaled inversely, which leaves the function unchanged), so magnitude
pruning removes all of them between two sweep levels ``0.005`` apart: a sudden color collapse at a known place.

The UNet, VAE, tokenizer and scheduler are the organism's own. The ground truth is a set file of kind
``planted`` (:mod:`sdprobe.evidence.setfile`), ``planted.json`` in the model folder.

Example:
    >>> from sdprobe.organism.planted import PlantConfig, plant
    >>> plant(Path("tiny-shapes-planted"), PlantConfig())   # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sdprobe.evidence.setfile import WeightSet, write_set_file
from sdprobe.world import COLORS, format_prompt, sample_specs

log = logging.getLogger(__name__)
PLANTED_TENSOR = "encoder.layers.0.mlp.fc1.weight"  # as in the text encoder's own state_dict
SHARED = ("unet", "vae", "scheduler", "tokenizer", "model_index.json")  # taken from the organism unchanged


@dataclass(frozen=True)
class PlantConfig:
    """How the planted variant is built.

    Attributes:
        paths (int): planted weights; each alone carries the color. Default: 8.
        sparsity (float): per-matrix magnitude sparsity at which they are pruned. Default: 0.3525 (between the
            sweep levels 0.350 and 0.355).
        steps (int): distillation steps. Default: 6000.
        batch_size (int): prompts per step. Default: 256.
        lr (float): AdamW learning rate. Default: 5e-4.
        code_radius (float): ``R``, the norm of the color code (the organism's color embeddings have norm
            0.2). Default: 0.15.
        seed (int): seeds torch and numpy; the whole build is determined by it. Default: 0.
        threads (int): torch CPU threads. Default: 2.
    """

    paths: int = 8
    sparsity: float = 0.3525
    steps: int = 6000
    batch_size: int = 256
    lr: float = 5e-4
    code_radius: float = 0.15
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.paths <= 64:
            raise ValueError(f"paths must lie in 1..64, got {self.paths}")
        if not 0 < self.sparsity < 1:
            raise ValueError(f"sparsity must lie in (0, 1), got {self.sparsity}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")


@dataclass(frozen=True)
class Plan:
    """Where the color goes: the code coordinates, the planted rows, the color tokens and their codes."""

    coords: tuple[int, int, int]
    rows: tuple[int, ...]
    color_ids: tuple[int, ...]
    codes: tuple[tuple[float, float, float], ...]

    @property
    def flat_indices(self) -> list[int]:
        """Flat (row-major) indices of the planted weights in ``fc1`` of layer 0 (width 64 columns)."""
        width = 64
        return [r * width + self.coords[0] for r in self.rows]


def color_codes(n: int, radius: float) -> list[tuple[float, float, float]]:
    """``n`` codes ``(s, t, u)`` on the circle ``s + t + u = 0, s² + t² + u² = radius²``, distinct in ``s``."""
    smax = radius * math.sqrt(2.0 / 3.0) * 0.9
    codes = []
    for s in np.linspace(-smax, smax, n):
        root = math.sqrt(2 * radius**2 - 3 * s**2)
        codes.append((float(s), float((-s + root) / 2), float((-s - root) / 2)))
    return codes


def _text_model(te):
    """The module holding ``embeddings``, ``encoder`` and ``final_layer_norm`` (transformers 4 nests it)."""
    return getattr(te, "text_model", te)


def _layers(te):
    return _text_model(te).encoder.layers


def output_metric(unet) -> torch.Tensor:
    """``M = Σ Wᵀ W`` over every cross-attention key and value projection: how much the UNet reads each direction
    of the text encoder's output."""
    mats = [m.weight.detach() for n, m in unet.named_modules() if n.endswith(("attn2.to_k", "attn2.to_v"))]
    return sum(w.T @ w for w in mats)


def choose_plan(te, tokenizer, unet, ids: torch.Tensor, cfg: PlantConfig) -> Plan:
    """The three output coordinates the UNet reads least (variance of the organism's output there, weighted by
    ``M``'s diagonal), the planted rows (evenly spaced through layer 0's MLP) and the color tokens' codes."""
    with torch.no_grad():
        out = te(ids)[0].reshape(-1, te.config.hidden_size)
    importance = out.var(0) * torch.diagonal(output_metric(unet))
    coords = tuple(int(i) for i in torch.argsort(importance)[:3].tolist())
    inter = te.config.intermediate_size
    rows = tuple(int(r) for r in np.linspace(0, inter - 1, cfg.paths + 2)[1:-1].round().astype(int))
    color_ids = tuple(tokenizer.convert_tokens_to_ids(c + "</w>") for c in COLORS)
    if any(i is None or i == tokenizer.unk_token_id for i in color_ids):
        raise ValueError("the tokenizer lacks a single token for every color word")
    return Plan(coords=coords, rows=rows, color_ids=color_ids, codes=tuple(color_codes(len(COLORS), cfg.code_radius)))


@torch.no_grad()
def constrain(te, plan: Plan, magnitude: float, signs: torch.Tensor, keep: torch.Tensor | None = None) -> None:
    """Impose the construction on ``te`` in place (see the module docstring). ``keep`` (bool per planted weight)
    zeroes the planted weights it marks False, for path dropout during distillation."""
    J = list(plan.coords)
    j = plan.coords[0]
    emb = _text_model(te).embeddings
    tok, pos = emb.token_embedding.weight, emb.position_embedding.weight
    colors = list(plan.color_ids)
    others = torch.ones(tok.shape[0], dtype=torch.bool)
    others[colors] = False
    shared = tok[colors].mean(0)
    tok[colors] = shared
    tok[torch.tensor(colors)[:, None], torch.tensor(J)[None, :]] = torch.tensor(plan.codes, dtype=tok.dtype)
    tok[others.nonzero()[:, 0][:, None], torch.tensor(J)[None, :]] = 0
    pos[:, J] = 0
    for i, layer in enumerate(_layers(te)):
        for lin in (layer.self_attn.out_proj, layer.mlp.fc2):
            lin.weight[J, :] = 0
            lin.bias[J] = 0
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.mlp.fc1):
            lin.weight[:, J] = 0
        layer.layer_norm1.weight[J] = 0
        layer.layer_norm1.bias[J] = 0
        silent = J if i > 0 else J[1:]
        layer.layer_norm2.weight[silent] = 0
        layer.layer_norm2.bias[silent] = 0
    fc1 = _layers(te)[0].mlp.fc1.weight
    values = signs * magnitude
    if keep is not None:
        values = torch.where(keep, values, torch.zeros_like(values))
    fc1[list(plan.rows), j] = values.to(fc1.dtype)
    _text_model(te).final_layer_norm.weight[J] = 0


def _prompts(n: int, rng: np.random.Generator) -> list[str]:
    """Training prompts: the grammar with attributes left out at 0.3, and 10% empty (the unconditional prompt)."""
    return ["" if rng.random() < 0.1 else format_prompt(s) for s in sample_specs(n, rng, p_omit=0.3)]


def _tokens(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def rescale(te, plan: Plan, magnitude: float, target: float) -> None:
    """Give the planted weights magnitude ``target`` and scale layer 0's ``layer_norm2`` gain and bias at ``j`` by
    ``magnitude / target``: the only readers of that coordinate are the planted weights, so nothing changes."""
    j = plan.coords[0]
    ln = _layers(te)[0].layer_norm2
    fc1 = _layers(te)[0].mlp.fc1.weight
    with torch.no_grad():
        ln.weight[j] *= magnitude / target
        ln.bias[j] *= magnitude / target
        fc1[list(plan.rows), j] = torch.sign(fc1[list(plan.rows), j]) * target


def quantile_magnitude(weight: torch.Tensor, sparsity: float, exclude: list[int]) -> float:
    """The magnitude at which per-matrix magnitude pruning of ``weight`` reaches ``sparsity``, ignoring ``exclude``."""
    flat = weight.detach().abs().flatten().clone()
    mask = torch.ones_like(flat, dtype=torch.bool)
    mask[exclude] = False
    values = torch.sort(flat[mask]).values
    k = int(round(sparsity * flat.numel())) - 1
    lo, hi = float(values[k - 1]), float(values[k])
    return (lo + hi) / 2 if hi > lo else float(np.nextafter(np.float32(lo), np.float32(np.inf)))


def distill(te, teacher, tokenizer, metric: torch.Tensor, plan: Plan, signs: torch.Tensor, cfg: PlantConfig) -> list[float]:
    """Train ``te`` (in place) to give the organism's output, as the UNet reads it, with random planted paths."""
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(te.parameters(), lr=cfg.lr, weight_decay=0.0)
    metric = metric / torch.trace(metric) * metric.shape[0]
    magnitude = 1.0
    losses: list[float] = []
    t0 = time.time()
    te.train()
    for step in range(cfg.steps):
        ids = _tokens(tokenizer, _prompts(cfg.batch_size, rng))
        with torch.no_grad():
            target = teacher(ids)[0]
        k = int(torch.randint(1, cfg.paths + 1, (1,), generator=gen))
        keep = torch.zeros(cfg.paths, dtype=torch.bool)
        keep[torch.randperm(cfg.paths, generator=gen)[:k]] = True
        constrain(te, plan, magnitude, signs, keep)
        diff = te(ids)[0] - target
        loss = ((diff @ metric) * diff).sum(-1).mean() / diff.shape[-1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.steps - 1:
            log.info("planted step %d/%d loss %.5f (%d of %d paths)  %.1f s", step, cfg.steps, loss.item(), k,
                     cfg.paths, time.time() - t0)
    constrain(te, plan, magnitude, signs)
    te.eval()
    return losses


def planted_set(plan: Plan, cfg: PlantConfig, shape: tuple[int, int]) -> WeightSet:
    """The ground truth as a set file of kind ``planted``."""
    return WeightSet(
        kind="planted", model="builtin:tiny-shapes-planted", meaning="color", method="magnitude",
        sweep={"components": {"text_encoder": {"selectors": ["text_encoder"]}}, "method": "magnitude"},
        window={"kind": "planted", "sparsity": cfg.sparsity},
        weights={f"text_encoder.{PLANTED_TENSOR}": torch.tensor(plan.flat_indices, dtype=torch.long)},
        shapes={f"text_encoder.{PLANTED_TENSOR}": tuple(shape)}, splits={}, metric="oracle",
        evidence={"construction": "sdprobe.organism.planted", "code_coordinates": list(plan.coords),
                  "rows": list(plan.rows), "config": asdict(cfg)},
        verdict="planted")


def plant(out: Path, cfg: PlantConfig = PlantConfig(), source: Path | None = None, link: bool = False) -> Path:
    """Build the planted variant of the organism at ``source`` (default: the built-in) into ``out``.

    ``out`` gets the variant's ``text_encoder`` and ``planted.json``; the other components are copied from the
    organism, or with ``link`` made relative symbolic links to it (how the built-in variant is shipped). The folder
    is written next to ``out`` and renamed into place, so a killed build leaves nothing.

    Returns:
        Path: ``out``.
    """
    from transformers import CLIPTextModel, CLIPTokenizer
    from diffusers import UNet2DConditionModel

    from sdprobe.models import BUILTINS

    source = Path(source or BUILTINS["tiny-shapes"])
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tokenizer = CLIPTokenizer.from_pretrained(source / "tokenizer")
    teacher = CLIPTextModel.from_pretrained(source / "text_encoder").eval()
    te = CLIPTextModel.from_pretrained(source / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(source / "unet")
    probe = _tokens(tokenizer, _prompts(512, np.random.default_rng(cfg.seed + 1)))
    plan = choose_plan(teacher, tokenizer, unet, probe, cfg)
    signs = torch.where(torch.rand(cfg.paths, generator=torch.Generator().manual_seed(cfg.seed)) < 0.5, -1.0, 1.0)
    distill(te, teacher, tokenizer, output_metric(unet), plan, signs, cfg)
    fc1 = _layers(te)[0].mlp.fc1.weight
    rescale(te, plan, 1.0, quantile_magnitude(fc1, cfg.sparsity, plan.flat_indices))
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    te.save_pretrained(tmp / "text_encoder", safe_serialization=True)
    for name in SHARED:
        src = source / name
        if link:
            (tmp / name).symlink_to(os.path.relpath(src.resolve(), out.resolve()))
        else:
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)
    write_set_file(tmp / "planted.json", planted_set(plan, cfg, tuple(fc1.shape)))
    (tmp / "plant_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
