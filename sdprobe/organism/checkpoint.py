"""Training checkpoints as one safetensors file: tensors, plus the JSON-able rest in the file's metadata.

Nothing is unpickled when a checkpoint is read, so a crafted file cannot run code: safetensors stores raw tensor
bytes and a JSON header, and everything else (the step, the latent scaling, optimizer hyper-parameters, the
learning-rate schedule and the numpy generator's state) is JSON in that header. The file is written to a temporary
name and renamed, so a killed run keeps its previous checkpoint whole.

Layout: ``<model>.<name>`` for the weights of ``vae``, ``unet``, ``text_encoder``, ``ema_unet`` and ``ema_te``;
``opt.<param index>.<key>`` for the optimizer's per-parameter state; ``torch_rng`` for torch's generator state;
metadata key ``sdprobe`` for the rest.

Example:
    >>> save_checkpoint(work / CHECKPOINT, state)
    >>> load_checkpoint(work / CHECKPOINT)["step"]
    500
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sdprobe.errors import SdprobeError

CHECKPOINT = "checkpoint.safetensors"
MODELS = ("vae", "unet", "text_encoder", "ema_unet", "ema_te")
META_KEY = "sdprobe"


class CheckpointError(SdprobeError):
    """A training checkpoint is missing, not a safetensors file, or incomplete."""


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` (the keys of :data:`MODELS` as state dicts, ``opt`` and ``sched`` state dicts, ``rng`` (numpy
    bit-generator state), ``torch_rng``, ``step`` and ``scaling_factor``) atomically to ``path``."""
    from safetensors.torch import save_file

    tensors = {f"{m}.{k}": v.detach().contiguous() for m in MODELS for k, v in state[m].items()}
    for index, per_param in state["opt"]["state"].items():
        for key, value in per_param.items():
            tensors[f"opt.{index}.{key}"] = torch.as_tensor(value).contiguous()
    tensors["torch_rng"] = state["torch_rng"].contiguous()
    meta = {"step": state["step"], "scaling_factor": state["scaling_factor"],
            "opt_param_groups": state["opt"]["param_groups"], "sched": state["sched"], "rng": state["rng"]}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    tmp.replace(path)


def load_checkpoint(path: Path, models: tuple[str, ...] = MODELS) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (only ``models``' weights, plus everything else).

    Raises:
        CheckpointError: the file is missing, is not safetensors (a pickle ``.pt`` is refused unread), or lacks
            the sdprobe metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(META_KEY)
            if meta is None:
                raise CheckpointError(f"{path} is a safetensors file but not an sdprobe training checkpoint")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a safetensors training checkpoint ({exc}); sdprobe never unpickles "
                              "files, so .pt/.ckpt checkpoints cannot be read") from None
    meta = json.loads(meta)
    state = {m: {k[len(m) + 1:]: v for k, v in tensors.items() if k.startswith(m + ".")} for m in models}
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    return {**state, "opt": {"state": opt_state, "param_groups": meta["opt_param_groups"]}, "sched": meta["sched"],
            "rng": meta["rng"], "torch_rng": tensors["torch_rng"], "step": meta["step"],
            "scaling_factor": meta["scaling_factor"]}
