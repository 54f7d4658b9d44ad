"""Loading pipelines: the built-in organism, local diffusers folders and hub ids (safetensors only)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch

from sdprobe.checks import BUILTIN_PREFIX, builtin
from sdprobe.provenance import SOURCE_ATTR

log = logging.getLogger(__name__)

_ORGANISM = Path(__file__).parent / "organism"
BUILTINS: dict[str, Path] = {
    "tiny-shapes": _ORGANISM / "tiny-shapes",
    "tiny-shapes-planted": _ORGANISM / "tiny-shapes-planted",  # isolation's positive control (organism/planted.py)
}
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
_PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


class ModelLoadError(ValueError):
    """The model could not be found or is not acceptable (unknown name, pickle weights, unsupported class)."""


def builtin_names() -> list[str]:
    return [BUILTIN_PREFIX + n for n in BUILTINS]


def resolve(model: str) -> Path | str:
    """Turn a ``--model`` argument into a local folder or a hub id.

    Args:
        model (str): ``builtin:NAME``, a local diffusers folder, or a hub id ``owner/name``.

    Raises:
        ModelLoadError: an unknown built-in, or a path that does not exist.
    """
    name = builtin(model, BUILTINS, "model", ModelLoadError)
    if name:
        path = BUILTINS[name]
        if not (path / "model_index.json").exists():
            raise ModelLoadError(f"built-in {model!r} has no weights at {path}; reinstall sdprobe")
        return path
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "model_index.json").exists():
            raise ModelLoadError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
        return path
    looks_like_hub_id = model.count("/") == 1 and not model.startswith((".", "/", "~"))
    if looks_like_hub_id:
        return model
    raise ModelLoadError(
        f"model {model!r} not found: looked for a local folder at {path.resolve()} and it is not a hub id "
        f"(owner/name). Built-ins: {', '.join(builtin_names())}"
    )


def check_safetensors(path: Path) -> None:
    """Refuse a pipeline folder whose weights are only pickles (``.bin``, ``.ckpt``, ...)."""
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        files = [f.name for f in sub.iterdir()]
        has_pickle = any(f.endswith(_PICKLE_SUFFIXES) for f in files)
        has_safe = any(f.endswith(".safetensors") for f in files)
        if has_pickle and not has_safe:
            raise ModelLoadError(
                f"{sub} holds only pickle weights ({', '.join(f for f in files if f.endswith(_PICKLE_SUFFIXES))}); "
                "sdprobe loads safetensors only. Convert them with save_pretrained(..., safe_serialization=True)"
            )


@contextlib.contextmanager
def quiet_loading():
    """Silence diffusers' and transformers' loading bars, info logs and the ``torch_dtype`` deprecation warning while
    a pipeline loads; their settings are restored afterwards."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    bars = [(m, m.is_progress_bar_enabled()) for m in (dlog, tlog)]
    levels = [(m, m.get_verbosity()) for m in (dlog, tlog)]
    for m, _ in bars:
        m.disable_progress_bar()
    for m, _ in levels:
        m.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            yield
    finally:
        for m, on in bars:
            m.enable_progress_bar() if on else m.disable_progress_bar()
        for m, level in levels:
            m.set_verbosity(level)


def check_device(device: str | torch.device) -> torch.device:
    """The torch device ``device`` names, when this machine has it.

    Raises:
        ValueError: not a device name (e.g. ``"bogus"``), or a CUDA/MPS device this machine lacks.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps): {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                             "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r}: sdprobe runs on cpu, cuda or mps")
    return dev


def load_pipeline(model: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Load a Stable Diffusion pipeline for probing.

    Args:
        model (str): ``builtin:tiny-shapes``, a local diffusers folder, or a hub id.
        device (str | torch.device): where to put it. Default: ``"cpu"``.
        dtype (torch.dtype): weight dtype. Default: ``torch.float32`` (use fp16/bf16 on CUDA only).

    Returns:
        DiffusionPipeline: a ``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` with progress bars off.

    Raises:
        ModelLoadError: unknown name, missing folder, pickle-only weights, unreachable hub, unsupported class.

    Example:
        >>> pipe = load_pipeline("builtin:tiny-shapes")
    """
    from diffusers import DiffusionPipeline
    from safetensors import SafetensorError

    check_device(device)
    where = resolve(model)
    if isinstance(where, Path):
        check_safetensors(where)
    try:
        with quiet_loading():
            pipe = DiffusionPipeline.from_pretrained(where, torch_dtype=dtype, use_safetensors=True)
    except SafetensorError as exc:
        raise ModelLoadError(f"could not load {where}: a safetensors file is corrupt ({exc})") from exc
    except (OSError, EnvironmentError) as exc:
        if isinstance(where, Path):
            raise ModelLoadError(f"could not load {where}: {exc}") from exc
        raise ModelLoadError(
            f"could not fetch hub model {model!r} ({type(exc).__name__}). The hub needs network access; without it, "
            "download the model elsewhere and pass its local folder to --model"
        ) from exc
    name = type(pipe).__name__
    if name not in SUPPORTED_PIPELINES:
        raise ModelLoadError(f"unsupported pipeline class {name}; supported: {', '.join(SUPPORTED_PIPELINES)}")
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    setattr(pipe, SOURCE_ATTR, model)  # runs record it, and refuse a config naming another model
    return pipe

