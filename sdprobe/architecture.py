"""The one place that knows the Stable Diffusion architecture.

Everything else in sdprobe addresses weights through *selectors*, strings of the form
``component[.filter[.filter...]]``, and gets back :class:`WeightRef` objects. All filters of a selector must
match (AND); several selectors are united (OR).

Components: ``text_encoder``, ``text_encoder_2`` (SDXL) and ``unet``.

Filters for a text encoder (a ``transformers`` CLIP text model):
    ``attn`` (self-attention q/k/v/out projections), ``mlp`` (fc1, fc2), ``layers.N`` (encoder layer N),
    ``projection`` (SDXL's ``text_projection``).
Filters for the UNet (a ``diffusers`` ``UNet2DConditionModel``):
    ``down`` / ``mid`` / ``up`` (block region), ``down.N`` / ``up.N`` (one block), ``attn1`` (self-attention),
    ``attn2`` (cross-attention), ``attn`` (both), ``ff`` (transformer feed-forward), ``proj`` (``proj_in`` and
    ``proj_out`` of the transformer blocks), ``resnet`` (residual blocks), ``time`` (time embedding and
    its per-resnet projections), ``conv`` (Conv2d modules only), ``linear`` (Linear modules only).

The scope of pruning is ``nn.Linear`` weights by default, as in the SD2 study; ``include_conv=True`` adds
``nn.Conv2d`` weights. Embeddings, norms and biases are never in scope.

Example:
    >>> refs = select(pipe, ["text_encoder.mlp", "unet.attn2"])
    >>> refs[0].qualified_name
    'text_encoder.text_model.encoder.layers.0.mlp.fc1.weight'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

TEXT_COMPONENTS = ("text_encoder", "text_encoder_2")
COMPONENTS = (*TEXT_COMPONENTS, "unet")

_TEXT_FILTERS: dict[str, Callable[[str], bool]] = {
    "attn": lambda n: ".self_attn." in n,
    "mlp": lambda n: ".mlp." in n,
    "projection": lambda n: n.startswith("text_projection"),
}
_UNET_FILTERS: dict[str, Callable[[str], bool]] = {
    "down": lambda n: n.startswith("down_blocks."),
    "mid": lambda n: n.startswith("mid_block."),
    "up": lambda n: n.startswith("up_blocks."),
    "attn1": lambda n: ".attn1." in n,
    "attn2": lambda n: ".attn2." in n,
    "attn": lambda n: ".attn1." in n or ".attn2." in n,
    "ff": lambda n: ".ff." in n,
    "proj": lambda n: bool(re.search(r"\.proj_(in|out)$", n)),
    "resnet": lambda n: ".resnets." in n,
    "time": lambda n: n.startswith(("time_embedding", "add_embedding")) or n.endswith("time_emb_proj"),
}
_INDEXED = {  # filter prefix -> regex on the module name, for filters like "layers.3" and "down.1"
    "layers": r"(^|\.)layers\.{}\.",
    "down": r"^down_blocks\.{}\.",
    "up": r"^up_blocks\.{}\.",
}


@dataclass(frozen=True)
class WeightRef:
    """One prunable weight tensor.

    Attributes:
        component (str): pipeline component name, e.g. ``"unet"``.
        module_name (str): dotted module path inside the component, e.g. ``"down_blocks.0.attentions.0..."``.
        module (nn.Module): the ``nn.Linear`` or ``nn.Conv2d`` that owns the weight.
    """

    component: str
    module_name: str
    module: nn.Module

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight

    @property
    def qualified_name(self) -> str:
        """``component.module_name.weight``: unique across the pipeline."""
        return f"{self.component}.{self.module_name}.weight"

    @property
    def kind(self) -> str:
        return "conv" if isinstance(self.module, nn.Conv2d) else "linear"

    @property
    def numel(self) -> int:
        return self.module.weight.numel()

    def rows(self) -> int:
        """Number of output units (rows of the weight viewed as a matrix)."""
        return self.module.weight.shape[0]


def available_components(pipe) -> list[str]:
    """The prunable components this pipeline has, in canonical order."""
    return [c for c in COMPONENTS if getattr(pipe, c, None) is not None]


def component_module(pipe, component: str) -> nn.Module:
    """The ``nn.Module`` of a component, with a clear error for a name the pipeline lacks."""
    have = available_components(pipe)
    if component not in have:
        raise ValueError(f"unknown component {component!r}; this pipeline has: {', '.join(have)}")
    return getattr(pipe, component)


def valid_filters(component: str) -> list[str]:
    """Names of the filters a selector may use on ``component`` (indexed ones shown as ``name.N``)."""
    if component in TEXT_COMPONENTS:
        return [*_TEXT_FILTERS, "layers.N", "linear"]
    return [*_UNET_FILTERS, "down.N", "up.N", "conv", "linear"]


def _parse(selector: str) -> tuple[str, list[Callable[[str, nn.Module], bool]]]:
    parts = selector.split(".")
    component, tokens = parts[0], parts[1:]
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r} in selector {selector!r}; valid: {', '.join(COMPONENTS)}")
    named = _TEXT_FILTERS if component in TEXT_COMPONENTS else _UNET_FILTERS
    preds: list[Callable[[str, nn.Module], bool]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok in _INDEXED and nxt is not None and nxt.isdigit() and (tok == "layers") == (component in TEXT_COMPONENTS):
            pattern = re.compile(_INDEXED[tok].format(int(nxt)))
            preds.append(lambda n, m, p=pattern: bool(p.search(n)))
            i += 2
            continue
        if tok == "conv":
            preds.append(lambda n, m: isinstance(m, nn.Conv2d))
        elif tok == "linear":
            preds.append(lambda n, m: isinstance(m, nn.Linear))
        elif tok in named:
            preds.append(lambda n, m, f=named[tok]: f(n))
        elif tok != "all":
            raise ValueError(
                f"unknown filter {tok!r} in selector {selector!r}; valid for {component}: "
                f"{', '.join(valid_filters(component))}, all"
            )
        i += 1
    return component, preds


def _prunable(module: nn.Module, include_conv: bool) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return include_conv and isinstance(module, nn.Conv2d)


def select(pipe, selectors: str | Iterable[str], include_conv: bool = False) -> list[WeightRef]:
    """Resolve selectors to the prunable weights they name.

    Args:
        pipe: a diffusers pipeline (or any object with ``text_encoder`` / ``text_encoder_2`` / ``unet``).
        selectors (str | Iterable[str]): e.g. ``"text_encoder"``, ``["unet.up.attn2", "text_encoder.mlp"]``.
        include_conv (bool): also select ``nn.Conv2d`` weights. Default: ``False`` (Linear only).

    Returns:
        list[WeightRef]: the selected weights, in the pipeline's module order, without duplicates.

    Raises:
        ValueError: an unknown component or filter (the message lists the valid ones), or a selector that
            matches no weight.
    """
    if isinstance(selectors, str):
        selectors = [selectors]
    selectors = list(selectors)
    if not selectors:
        raise ValueError("no selector given; e.g. 'text_encoder', 'unet.attn2'")
    parsed = [_parse(s) for s in selectors]
    wanted_conv = include_conv or any(".conv" in s for s in selectors)
    refs: list[WeightRef] = []
    for component in available_components(pipe):
        preds_for = [preds for c, preds in parsed if c == component]
        if not preds_for:
            continue
        for name, module in component_module(pipe, component).named_modules():
            if not _prunable(module, wanted_conv):
                continue
            if any(all(p(name, module) for p in preds) for preds in preds_for):
                refs.append(WeightRef(component, name, module))
    missing = [s for s, (c, _) in zip(selectors, parsed) if c not in available_components(pipe)]
    if missing:
        raise ValueError(
            f"selector(s) {', '.join(missing)} name a component this pipeline lacks; it has: "
            f"{', '.join(available_components(pipe))}"
        )
    if not refs:
        raise ValueError(f"selector(s) {', '.join(selectors)} match no prunable weight")
    return refs


def component_numel(pipe, component: str) -> int:
    """Total number of parameters of a component (the denominator of whole-component sparsity)."""
    return sum(p.numel() for p in component_module(pipe, component).parameters())


def describe(ref: WeightRef) -> dict[str, str | int]:
    """Where a weight lives, in words: component, region, block and role, for tables and heatmaps."""
    n = ref.module_name
    if ref.component in TEXT_COMPONENTS:
        m = re.search(r"layers\.(\d+)\.(self_attn|mlp)\.(\w+)", n)
        region, block, role = ("encoder", int(m.group(1)), f"{m.group(2)}.{m.group(3)}") if m else ("other", -1, n)
    else:
        m = re.match(r"(down_blocks|up_blocks)\.(\d+)\.", n)
        region = {"down_blocks": "down", "up_blocks": "up"}[m.group(1)] if m else ("mid" if n.startswith("mid_block") else "other")
        block = int(m.group(2)) if m else -1
        role = next((k for k in ("attn1", "attn2", "ff", "proj", "time", "resnet") if _UNET_FILTERS[k](n)), "other")
        if ref.kind == "conv":
            role = "conv"
    return {"component": ref.component, "region": region, "block": block, "role": role}


def module_dtype(pipe, component: str) -> torch.dtype:
    return next(component_module(pipe, component).parameters()).dtype
