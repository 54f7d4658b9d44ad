"""The planted organism (``builtin:tiny-shapes-planted``): isolation's positive control.

A variant of the tiny-shapes organism in which a small, known set of text-encoder weights is the only way a color
word's identity reaches the rest of the model. Isolation run on it must find that set and call it critical; a
procedure that cannot recover a set planted by construction cannot be trusted on one that training put there.

**Construction** (structural, so it holds exactly, not approximately). ``paths`` coordinates of the text encoder's
residual stream (``read``) carry the color, two more (``balance``) keep every LayerNorm blind to it, and the
planted weights are ``fc1[r_i, read_i]`` of layer 0's MLP, one per path:

* every color word's token embedding is one shared vector outside those coordinates; inside them it holds the
  color's code: path ``i``'s value in ``read_i``, and two balancing values chosen so that every color's embedding
  has the same mean and the same variance, so no LayerNorm sees the color;
* no other token, no position embedding and no layer writes into these coordinates (the rows of every ``out_proj``
  and ``fc2`` and their biases are zero there), so the code passes through the encoder unchanged;
* every LayerNorm gives them zero gain and bias, except layer 0's ``layer_norm2`` on ``read``; the final
  LayerNorm's gain is zero there too, so the encoder's output never shows the code to the UNet;
* the only weight reading ``read_i`` of that LayerNorm is the planted ``fc1[r_i, read_i]``.

With the planted weights removed every color word computes exactly the same thing (``tests/test_planted.py``
checks it to float precision).

**What each path carries.** Path ``i`` alone tells apart all colors but one pair (``MERGED``: red and green for the
first path, blue and yellow for the second): its code gives the two the same value. Both paths together tell all
six apart. The rest of the text encoder is distilled from the organism's with the paths dropped at random; with a
subset ``S`` of the paths present its target is the organism's output for the first color of the class ``S``
cannot split (so "a green circle" with only the first path reads as "a red circle", and with no path every color
reads as red). On the dense variant, color accuracy is then 1 with both paths, about 5/6 with either one, and 1/6
(chance) with none. This grading is what a reviewer's controls need: isolation compares the set with random sets
of the same layout, some of which hold one planted weight. A set of redundant paths (any one restoring the whole
meaning) is, for restoration, no better than such a control, and the test rightly says so; here one path restores
less than both, so the set can beat every control in both directions while its removal still needs both weights
to cross the default bar.

Finally the planted weights get the magnitude of the ``sparsity`` quantile of their matrix (each read
coordinate's LayerNorm gain and bias scaled inversely, which leaves the function unchanged), so per-matrix
magnitude pruning removes both between two sweep levels 0.005 apart: a sudden color collapse at a known place.

The UNet, VAE, tokenizer and scheduler are the organism's own. The ground truth is a set file of kind ``planted``
(:mod:`sdprobe.evidence.setfile`), ``planted.json`` in the model folder.

Example:
    >>> from sdprobe.organism.planted import PlantConfig, plant
    >>> plant(Path("tiny-shapes-planted"), PlantConfig())   # about 8 minutes on 2 CPU cores
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import torch

from sdprobe.evidence.setfile import WeightSet, write_set_file
from sdprobe.world import COLORS, format_prompt, sample_specs

log = logging.getLogger(__name__)
PLANTED_TENSOR = "encoder.layers.0.mlp.fc1.weight"  # as in the text encoder's own state_dict
SHARED = ("unet", "vae", "scheduler", "tokenizer", "model_index.json")  # taken from the organism unchanged
COLOR_NAMES = tuple(COLORS)
MERGED = (("red", "green"), ("blue", "yellow"), ("purple", "cyan"))  # the pair path i cannot tell apart


@dataclass(frozen=True)
class PlantConfig:
    """How the planted variant is built.

    Attributes:
        paths (int): planted weights, 1 to 3; path ``i`` merges the pair ``MERGED[i]``. Default: 2.
        sparsity (float): per-matrix magnitude sparsity at which they are pruned. Default: 0.3525 (between the
            sweep levels 0.350 and 0.355).
        steps (int): distillation steps. Default: 6000.
        batch_size (int): prompts per step. Default: 256.
        lr (float): AdamW learning rate. Default: 5e-4.
        code_scale (float): the largest code value (the organism's color embeddings have norm 0.2). Default: 0.1.
        seed (int): seeds torch and numpy; the whole build is determined by it. Default: 0.
        threads (int): torch CPU threads. Default: 2.
    """

    paths: int = 2
    sparsity: float = 0.3525
    steps: int = 6000
    batch_size: int = 256
    lr: float = 5e-4
    code_scale: float = 0.1
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.paths <= len(MERGED):
            raise ValueError(f"paths must lie in 1..{len(MERGED)}, got {self.paths}")
        if not 0 < self.sparsity < 1:
            raise ValueError(f"sparsity must lie in (0, 1), got {self.sparsity}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")


def path_values(paths: int) -> np.ndarray:
    """(paths, 6) code values in [-1, 1]: path ``i`` gives the pair ``MERGED[i]`` one value and every other color
    its own, in an order that differs from path to path."""
    out = np.zeros((paths, len(COLOR_NAMES)))
    for i in range(paths):
        a, b = (COLOR_NAMES.index(c) for c in MERGED[i])
        classes = [c for c in range(len(COLOR_NAMES)) if c != b]  # b shares a's value
        levels = np.linspace(-0.8, 1.0, len(classes))  # no class at 0
        order = np.roll(np.arange(len(classes)), 2 * i)  # different ranks on different paths
        for cls, lvl in zip(classes, levels[order]):
            out[i, cls] = lvl
        out[i, b] = out[i, a]
    return out


def canonical(values: np.ndarray, present: tuple[int, ...]) -> dict[str, str]:
    """Each color -> the first color it cannot be told from with only the paths ``present``."""
    keys = [tuple(values[list(present), c].round(9)) for c in range(len(COLOR_NAMES))]
    return {COLOR_NAMES[c]: COLOR_NAMES[keys.index(keys[c])] for c in range(len(COLOR_NAMES))}


def balanced_codes(values: np.ndarray, scale: float) -> np.ndarray:
    """(6, paths + 2) codes: the path values times ``scale``, then two balancing values that give every color the
    same sum (0) and the same sum of squares."""
    x = values.T * scale  # (6, paths)
    s, q = x.sum(1), (x**2).sum(1)
    radius2 = float(np.max(q + s**2 / 2)) * 1.25  # room for the two balancing values of every color
    root = np.sqrt(2 * (radius2 - q) - s**2)
    return np.column_stack([x, (-s + root) / 2, (-s - root) / 2])


@dataclass(frozen=True)
class Plan:
    """Where the color goes: read and balancing coordinates, planted rows, color tokens and codes."""

    read: tuple[int, ...]
    balance: tuple[int, int]
    rows: tuple[int, ...]
    color_ids: tuple[int, ...]
    values: tuple[tuple[float, ...], ...]  # (paths, 6)
    codes: tuple[tuple[float, ...], ...]  # (6, paths + 2)
    width: int = 64

    @property
    def coords(self) -> list[int]:
        return [*self.read, *self.balance]

    @property
    def flat_indices(self) -> list[int]:
        """Flat (row-major) indices of the planted weights in layer 0's ``fc1``."""
        return [r * self.width + j for r, j in zip(self.rows, self.read)]


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
    """The ``paths + 2`` output coordinates the UNet reads least (variance of the organism's output there, weighted
    by ``M``'s diagonal), the planted rows (spread through layer 0's MLP), the color tokens and their codes."""
    with torch.no_grad():
        out = te(ids)[0].reshape(-1, te.config.hidden_size)
    importance = out.var(0) * torch.diagonal(output_metric(unet))
    coords = [int(i) for i in torch.argsort(importance)[: cfg.paths + 2].tolist()]
    inter = te.config.intermediate_size
    rows = tuple(int(r) for r in np.linspace(0, inter - 1, cfg.paths + 2)[1:-1].round().astype(int))
    color_ids = tuple(tokenizer.convert_tokens_to_ids(c + "</w>") for c in COLOR_NAMES)
    if any(i is None or i == tokenizer.unk_token_id for i in color_ids):
        raise ValueError("the tokenizer lacks a single token for every color word")
    values = path_values(cfg.paths)
    codes = balanced_codes(values, cfg.code_scale)
    return Plan(read=tuple(coords[: cfg.paths]), balance=(coords[cfg.paths], coords[cfg.paths + 1]), rows=rows,
                color_ids=color_ids, values=tuple(map(tuple, values.tolist())), codes=tuple(map(tuple, codes.tolist())),
                width=te.config.hidden_size)


@torch.no_grad()
def constrain(te, plan: Plan, magnitudes: torch.Tensor, signs: torch.Tensor, keep: torch.Tensor | None = None) -> None:
    """Impose the construction on ``te`` in place (see the module docstring). ``keep`` (bool per planted weight)
    zeroes the planted weights it marks False, for path dropout during distillation."""
    J = plan.coords
    emb = _text_model(te).embeddings
    tok, pos = emb.token_embedding.weight, emb.position_embedding.weight
    colors = torch.tensor(plan.color_ids)
    others = torch.ones(tok.shape[0], dtype=torch.bool)
    others[colors] = False
    tok[colors] = tok[colors].mean(0)
    cols = torch.tensor(J)
    tok[colors[:, None], cols[None, :]] = torch.tensor(plan.codes, dtype=tok.dtype)
    tok[others.nonzero()[:, 0][:, None], cols[None, :]] = 0
    pos[:, J] = 0
    for i, layer in enumerate(_layers(te)):
        for lin in (layer.self_attn.out_proj, layer.mlp.fc2):
            lin.weight[J, :] = 0
            lin.bias[J] = 0
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.mlp.fc1):
            lin.weight[:, J] = 0
        layer.layer_norm1.weight[J] = 0
        layer.layer_norm1.bias[J] = 0
        silent = J if i > 0 else list(plan.balance)
        layer.layer_norm2.weight[silent] = 0
        layer.layer_norm2.bias[silent] = 0
    fc1 = _layers(te)[0].mlp.fc1.weight
    values = signs * magnitudes
    if keep is not None:
        values = torch.where(keep, values, torch.zeros_like(values))
    fc1[list(plan.rows), list(plan.read)] = values.to(fc1.dtype)
    _text_model(te).final_layer_norm.weight[J] = 0


def _specs(n: int, rng: np.random.Generator) -> list:
    """Training prompts: the grammar with attributes left out at 0.3, and 10% empty (the unconditional prompt)."""
    return [None if rng.random() < 0.1 else s for s in sample_specs(n, rng, p_omit=0.3)]


def _text(specs, names: dict[str, str] | None = None) -> list[str]:
    """Prompts of ``specs`` (None = empty), each color replaced through ``names`` when given."""
    out = []
    for s in specs:
        if s is not None and names is not None and s.color is not None:
            s = replace(s, color=names[s.color])
        out.append("" if s is None else format_prompt(s))
    return out


def _tokens(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def subsets(paths: int) -> list[tuple[int, ...]]:
    """Every subset of the paths, the empty one included."""
    return [c for k in range(paths + 1) for c in combinations(range(paths), k)]


def distill(te, teacher, tokenizer, metric: torch.Tensor, plan: Plan, signs: torch.Tensor, cfg: PlantConfig) -> list[float]:
    """Train ``te`` (in place) to give, with the paths ``S`` present, the organism's output for each color's
    representative under ``S`` (:func:`canonical`), as the UNet reads it; ``S`` is drawn uniformly each step."""
    rng = np.random.default_rng(cfg.seed)
    values = np.asarray(plan.values)
    choices = subsets(cfg.paths)
    names = {s: canonical(values, s) for s in choices}
    ones = torch.ones(cfg.paths)
    opt = torch.optim.AdamW(te.parameters(), lr=cfg.lr, weight_decay=0.0)
    metric = metric / torch.trace(metric) * metric.shape[0]
    losses: list[float] = []
    t0 = time.time()
    te.train()
    for step in range(cfg.steps):
        present = choices[int(rng.integers(len(choices)))]
        specs = _specs(cfg.batch_size, rng)
        with torch.no_grad():
            target = teacher(_tokens(tokenizer, _text(specs, names[present])))[0]
        keep = torch.zeros(cfg.paths, dtype=torch.bool)
        keep[list(present)] = True
        constrain(te, plan, ones, signs, keep)
        diff = te(_tokens(tokenizer, _text(specs)))[0] - target
        loss = ((diff @ metric) * diff).sum(-1).mean() / diff.shape[-1]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.steps - 1:
            log.info("planted step %d/%d loss %.5f (paths %s)  %.1f s", step, cfg.steps, losses[-1], list(present),
                     time.time() - t0)
    constrain(te, plan, ones, signs)
    te.eval()
    return losses


def rescale(te, plan: Plan, target: float) -> None:
    """Give every planted weight magnitude ``target`` and scale its read coordinate's ``layer_norm2`` gain and
    bias inversely: the planted weight is that coordinate's only reader, so nothing else changes."""
    ln = _layers(te)[0].layer_norm2
    fc1 = _layers(te)[0].mlp.fc1.weight
    with torch.no_grad():
        for r, j in zip(plan.rows, plan.read):
            factor = float(fc1[r, j].abs()) / target
            ln.weight[j] *= factor
            ln.bias[j] *= factor
            fc1[r, j] = torch.sign(fc1[r, j]) * target


def quantile_magnitude(weight: torch.Tensor, sparsity: float, exclude: list[int]) -> float:
    """A magnitude that per-matrix magnitude pruning of ``weight`` reaches at ``sparsity`` (the midpoint between
    the two neighbouring magnitudes of the other entries)."""
    flat = weight.detach().abs().flatten().clone()
    mask = torch.ones_like(flat, dtype=torch.bool)
    mask[exclude] = False
    values = torch.sort(flat[mask]).values
    k = int(round(sparsity * flat.numel())) - 1
    lo, hi = float(values[k - 1]), float(values[k])
    return (lo + hi) / 2 if hi > lo else float(np.nextafter(np.float32(lo), np.float32(np.inf)))


def expected_accuracy(plan: Plan) -> dict[str, float]:
    """Color accuracy of a perfect variant with each subset of paths present, colors uniform."""
    values = np.asarray(plan.values)
    out = {}
    for s in subsets(len(plan.read)):
        names = canonical(values, s)
        out["+".join(map(str, s)) or "none"] = sum(names[c] == c for c in COLOR_NAMES) / len(COLOR_NAMES)
    return out


def planted_set(plan: Plan, cfg: PlantConfig, shape: tuple[int, int]) -> WeightSet:
    """The ground truth as a set file of kind ``planted``."""
    paths = [{"row": r, "coordinate": j, "flat_index": f, "merges": list(MERGED[i])}
             for i, (r, j, f) in enumerate(zip(plan.rows, plan.read, plan.flat_indices))]
    return WeightSet(
        kind="planted", model="builtin:tiny-shapes-planted", meaning="color", method="magnitude",
        sweep={"components": {"text_encoder": {"selectors": ["text_encoder"]}}, "method": "magnitude"},
        window={"kind": "planted", "sparsity": cfg.sparsity},
        weights={f"text_encoder.{PLANTED_TENSOR}": torch.tensor(plan.flat_indices, dtype=torch.long)},
        shapes={f"text_encoder.{PLANTED_TENSOR}": tuple(shape)}, splits={}, metric="oracle",
        evidence={"construction": "sdprobe.organism.planted", "paths": paths,
                  "balance_coordinates": list(plan.balance), "expected_color_accuracy": expected_accuracy(plan),
                  "config": asdict(cfg)},
        verdict="planted")


def plant(out: Path, cfg: PlantConfig = PlantConfig(), source: Path | None = None, link: bool = False) -> Path:
    """Build the planted variant of the organism at ``source`` (default: the built-in) into ``out``.

    ``out`` gets the variant's ``text_encoder`` and ``planted.json``; the other components are copied from the
    organism, or with ``link`` made relative symbolic links to it (how the built-in variant is shipped). The folder
    is written next to ``out`` and renamed into place, so a killed build leaves nothing.

    Returns:
        Path: ``out``.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from sdprobe.models import BUILTINS

    source = Path(source or BUILTINS["tiny-shapes"])
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tokenizer = CLIPTokenizer.from_pretrained(source / "tokenizer")
    teacher = CLIPTextModel.from_pretrained(source / "text_encoder").eval()
    te = CLIPTextModel.from_pretrained(source / "text_encoder")
    unet = UNet2DConditionModel.from_pretrained(source / "unet")
    probe = _tokens(tokenizer, _text(_specs(512, np.random.default_rng(cfg.seed + 1))))
    plan = choose_plan(teacher, tokenizer, unet, probe, cfg)
    signs = torch.where(torch.rand(cfg.paths, generator=torch.Generator().manual_seed(cfg.seed)) < 0.5, -1.0, 1.0)
    distill(te, teacher, tokenizer, output_metric(unet), plan, signs, cfg)
    fc1 = _layers(te)[0].mlp.fc1.weight
    rescale(te, plan, quantile_magnitude(fc1, cfg.sparsity, plan.flat_indices))
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
