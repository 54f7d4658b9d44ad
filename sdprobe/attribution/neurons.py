"""Unit attributions: which text-encoder MLP units or UNet attention / feed-forward units carry a meaning.

Two captum methods, chosen per module:

``conductance``
    :class:`captum.attr.LayerConductance` on the module's output units, with the input path running from the
    baseline prompt's token embeddings to the prompt's. It needs a module that runs once per forward pass,
    which holds for text-encoder modules (the unconditional branch is computed once, outside the path).
    Paper: Dhamdhere, Sundararajan & Yan, "How Important Is a Neuron?", https://arxiv.org/abs/1805.12233
``gate``
    :class:`captum.attr.IntegratedGradients` on multiplicative gates of the units: each unit's output is scaled by
    a gate that runs from 0 (unit removed in every call) to 1 (intact). UNet modules run once per denoising
    step, and captum's layer hooks keep only a module's last call, so layer methods would see one step only;
    gates cover every call. The gates of all selected modules move together, and by IG's completeness the
    attributions sum to score(intact) - score(all selected units removed).
    Paper: Sundararajan, Taly & Yan, https://arxiv.org/abs/1703.01365; Leino et al., "Influence-Directed
    Explanations for Deep Convolutional Networks", https://arxiv.org/abs/1802.03788

Modules are chosen with :func:`sdprobe.architecture.select` selectors (``"text_encoder.mlp"``, ``"unet.attn2"``,
``"unet.ff"``); a unit is an output feature of an ``nn.Linear``.

Memory: as for token attributions (a backward pass through the trajectory per path point), plus one gate
tensor of ``units`` floats per image per module.

Example:
    >>> table = attribute_neurons(score, ["text_encoder.mlp", "unet.attn2"], prompts, seeds)
    >>> table.columns.tolist()
    ['component', 'layer', 'unit', 'target', 'method', 'attribution', 'n_prompts']
"""

from __future__ import annotations

import logging
from typing import Sequence

import pandas as pd
import torch
from captum.attr import IntegratedGradients, LayerConductance
from tqdm.auto import tqdm

from sdprobe.architecture import TEXT_COMPONENTS, WeightRef, select
from sdprobe.attribution.hooks import hooked, injected_output
from sdprobe.attribution.score import MeaningScore
from sdprobe.attribution.tokens import IGConfig, baseline_ids

log = logging.getLogger(__name__)

NEURON_METHODS = ("auto", "conductance", "gate")


def _embedding_forward(score: MeaningScore, ids: torch.Tensor):
    """``f(token_embeds, noise, values)``: the score with the token-embedding output replaced by ``token_embeds``."""
    traj = score.trajectory

    def forward(embeds: torch.Tensor, noise: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        expanded = ids.repeat(len(embeds) // len(ids), 1)  # captum stacks path points along the batch
        with injected_output(traj.token_embedding(), lambda: embeds):
            return score(expanded, noise, values)

    return forward


def _gate_hook(gates: list[torch.Tensor]):
    def hook(i, module, inputs, out):
        g = gates[0][i]  # (N, units)
        reps = out.shape[0] // g.shape[0]  # 2 with classifier-free guidance (both branches lose the unit)
        g = g.repeat(reps, 1).view(out.shape[0], *([1] * (out.dim() - 2)), out.shape[-1])
        return out * g.to(out.dtype)

    return hook


def _conductance(score, ref: WeightRef, ids, noise, values, config: IGConfig) -> torch.Tensor:
    traj = score.trajectory
    with torch.no_grad():
        embeds = traj.token_embedding()(ids)
        base = traj.token_embedding()(baseline_ids(traj.pipe.tokenizer, ids))
    lc = LayerConductance(_embedding_forward(score, ids), ref.module)
    attr = lc.attribute(embeds, baselines=base, additional_forward_args=(noise, values), n_steps=config.n_steps,
                        internal_batch_size=config.internal_batch_size)  # (B, T, units)
    return attr.reshape(attr.shape[0], -1, attr.shape[-1]).sum(1)  # (B, units)


def _gates(score, refs: list[WeightRef], ids, noise, values, config: IGConfig) -> list[torch.Tensor]:
    holder: list[tuple[torch.Tensor, ...]] = []

    def forward(*args):
        *gates, noise_, values_ = args
        holder[:] = [tuple(gates)]
        expanded = ids.repeat(len(noise_) // len(ids), 1)
        return score(expanded, noise_, values_)

    ones = tuple(torch.ones(len(ids), r.rows(), device=ids.device) for r in refs)
    zeros = tuple(torch.zeros_like(o) for o in ones)
    with hooked([r.module for r in refs], _gate_hook(holder)):
        attr = IntegratedGradients(forward).attribute(ones, baselines=zeros, additional_forward_args=(noise, values),
                                                      n_steps=config.n_steps,
                                                      internal_batch_size=config.internal_batch_size)
    return [a.detach() for a in attr]


def attribute_neurons(score: MeaningScore, selectors: str | Sequence[str], prompts: Sequence[str],
                      seeds: Sequence[int], values: Sequence[str] | None = None, method: str = "auto",
                      config: IGConfig = IGConfig(), progress: bool = True) -> pd.DataFrame:
    """Attribute ``score`` to the output units of the Linear modules ``selectors`` pick.

    Args:
        score (MeaningScore): the meaning score.
        selectors (str | Sequence[str]): architecture selectors, e.g. ``["text_encoder.mlp", "unet.attn2"]``.
        prompts (Sequence[str]): N prompts.
        seeds (Sequence[int]): N seeds.
        values (Sequence[str], optional): N target values. Default: the value the head reads from each output.
        method (str): ``"conductance"``, ``"gate"`` or ``"auto"`` (conductance for text-encoder modules, gates for
            the rest). Default: ``"auto"``.
        config (IGConfig): path steps and batching. Default: :class:`IGConfig`.
        progress (bool): show a progress bar. Default: ``True``.

    Returns:
        pd.DataFrame: ``component, layer, unit, target, method, attribution, n_prompts``; ``attribution`` is the
        mean over prompts.

    Raises:
        ValueError: unknown method, or ``conductance`` asked for a module that runs several times per forward.
    """
    if method not in NEURON_METHODS:
        raise ValueError(f"unknown neuron method {method!r}; valid: {', '.join(NEURON_METHODS)}")
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt")
    traj = score.trajectory
    refs = select(traj.pipe, selectors)
    chosen = {r.qualified_name: ("conductance" if r.component in TEXT_COMPONENTS else "gate") if method == "auto"
              else method for r in refs}
    bad = [n for n, m in chosen.items() if m == "conductance" and not n.startswith(TEXT_COMPONENTS)]
    if bad:
        raise ValueError(f"conductance needs modules that run once per forward pass (text encoder); "
                         f"{bad[0]} runs at every denoising step: use method 'gate' or 'auto'")
    traj.unconditional()  # computed before any hook is placed
    sums = {r.qualified_name: torch.zeros(r.rows()) for r in refs}
    gate_refs = [r for r in refs if chosen[r.qualified_name] == "gate"]
    cond_refs = [r for r in refs if chosen[r.qualified_name] == "conductance"]
    chunks = list(range(0, len(prompts), config.batch_prompts))
    bar = tqdm(total=len(chunks) * (len(cond_refs) + bool(gate_refs)), desc="neurons", disable=not progress)
    with bar:
        for start in chunks:
            ids = traj.tokenize(prompts[start : start + config.batch_prompts])
            noise = config.noise(traj, seeds[start : start + config.batch_prompts])
            v = list(values[start : start + len(ids)]) if values is not None else score.predict(ids, noise)
            vi = score.value_index(v)
            for r in cond_refs:
                sums[r.qualified_name] += _conductance(score, r, ids, noise, vi, config).sum(0).cpu()
                bar.update()
            if gate_refs:
                for r, a in zip(gate_refs, _gates(score, gate_refs, ids, noise, vi, config)):
                    sums[r.qualified_name] += a.sum(0).cpu()
                bar.update()
    rows = []
    for r in refs:
        mean = sums[r.qualified_name] / len(prompts)
        rows += [{"component": r.component, "layer": r.module_name, "unit": u, "target": score.attribute,
                  "method": chosen[r.qualified_name], "attribution": float(a), "n_prompts": len(prompts)}
                 for u, a in enumerate(mean.tolist())]
    return pd.DataFrame(rows)
