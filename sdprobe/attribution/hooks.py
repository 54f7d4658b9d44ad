"""Forward hooks used by attribution, each inside a context manager that removes it even on errors.

In the spirit of baukit's ``TraceDict``: a hook lives exactly as long as its ``with`` block.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from torch import nn


@contextlib.contextmanager
def hooked(modules: Sequence[nn.Module], hook: Callable[[int, nn.Module, tuple, torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """Register ``hook(i, module, inputs, output)`` as a forward hook on each of ``modules``; removed on exit.

    Example:
        >>> with hooked([layer], lambda i, m, inp, out: out * 0):
        ...     y = model(x)  # layer's output is zeroed only inside the block
    """
    handles = []
    try:
        for i, module in enumerate(modules):
            handles.append(module.register_forward_hook(lambda m, inp, out, i=i: hook(i, m, inp, out)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def injected_output(module: nn.Module, value: Callable[[], torch.Tensor]) -> Iterator[None]:
    """Replace ``module``'s output by ``value()`` (same shape) for every call inside the block.

    Used to feed interpolated token embeddings into a text encoder that only accepts token ids.
    """
    def hook(i, m, inp, out):
        new = value()
        if new.shape != out.shape:
            raise ValueError(f"injected tensor has shape {tuple(new.shape)}, the module outputs {tuple(out.shape)}")
        return new.to(out.dtype)

    with hooked([module], hook):
        yield


def hook_count(model: nn.Module) -> int:
    """Number of forward, forward-pre and backward hooks registered anywhere in ``model`` (0 when clean)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())
