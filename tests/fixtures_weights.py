"""The one check that a pipeline's weights are exactly what they were: a test takes ``weights_hash(pipe)`` before
and after the code under test (pruning, sweeps, isolation, attribution, bias searches) and compares them."""

from __future__ import annotations

import hashlib

import torch

COMPONENTS = ("text_encoder", "text_encoder_2", "unet", "vae")


def weights_hash(pipe) -> str:
    """SHA-256 over every tensor (name and bytes) of the pipeline's text encoder(s), UNet and VAE, on any device;
    ``pipe`` may also be a single ``nn.Module``."""
    h = hashlib.sha256()
    modules = [("", pipe)] if isinstance(pipe, torch.nn.Module) else [(c, getattr(pipe, c, None)) for c in COMPONENTS]
    for component, module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            h.update(f"{component}.{name}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
