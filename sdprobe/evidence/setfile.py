"""Weight-set files: the one on-disk format of a found weight set, critical (isolation) or bias-critical.

A set file is a small JSON document that lets anyone re-test a set without rerunning the study that found it::

    {
      "format": "sdprobe-weight-set", "version": 1,
      "kind": "critical",                      # or "bias", or "planted" (a known answer)
      "model": "builtin:tiny-shapes",          # where the weights came from
      "meaning": "color", "metric": "oracle",  # what the set is claimed to carry, and who judged it
      "method": "magnitude",                   # the pruning order that defines the window
      "sweep": {...},                          # the sweep configuration that rebuilds the masks (components, selectors)
      "window": {"kind": "transition", "s_hold": 0.80, "s_fail": 0.81},
      "weights": [{"component": "text_encoder", "tensor": "text_model.encoder.layers.0.mlp.fc1.weight",
                   "shape": [64, 32], "index": [17, 40]}],   # names as in the component's own state_dict
      "splits": {"search": {"prompts": [...], "seeds": [...]}, "confirmation": {...}},
      "evidence": {...},                       # confirmation effects, CIs, raw and adjusted p, search diagnostics
      "verdict": "critical"                    # or "no replicable critical set", ...
    }

``index`` entries are flat (row-major) indices into the tensor. This module alone reads and writes the format.

Example:
    >>> write_set_file("reports/sets/te-magnitude-color.json", ws)
    >>> ws = read_set_file("reports/sets/te-magnitude-color.json")
    >>> ws.qualified()  # {qualified name: LongTensor}, for ProgressiveMask.override(prune=...)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sdprobe.errors import SdprobeError
from sdprobe.evidence.splits import Split
from sdprobe.io import atomic_write_text

FORMAT, VERSION = "sdprobe-weight-set", 1
KINDS = ("critical", "bias", "planted")  # planted: the ground truth of a known-answer model
REQUIRED = ("format", "version", "kind", "model", "meaning", "method", "sweep", "window", "weights", "splits")


class SetFileError(SdprobeError):
    """A set file is missing, unreadable, of another format, or does not fit the model it is used with."""


@dataclass
class WeightSet:
    """A weight set with where it came from and the evidence for it (see the module docstring for the fields)."""

    kind: str
    model: str
    meaning: str
    method: str
    sweep: dict
    window: dict
    weights: dict[str, torch.Tensor]  # qualified name ("component.tensor") -> flat indices
    shapes: dict[str, tuple[int, ...]]
    splits: dict[str, Split]
    metric: str = "oracle"
    evidence: dict = field(default_factory=dict)
    verdict: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SetFileError(f"unknown set kind {self.kind!r}; valid: {', '.join(KINDS)}")

    @property
    def size(self) -> int:
        return sum(len(i) for i in self.weights.values())

    def qualified(self) -> dict[str, torch.Tensor]:
        """``{qualified name: LongTensor of flat indices}`` for ``ProgressiveMask.override``."""
        return {n: i.clone() for n, i in self.weights.items()}

    def to_dict(self) -> dict:
        weights = [{"component": n.split(".", 1)[0], "tensor": n.split(".", 1)[1], "shape": list(self.shapes[n]),
                    "index": [int(i) for i in idx.tolist()]} for n, idx in self.weights.items()]
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "model": self.model, "meaning": self.meaning,
                "metric": self.metric, "method": self.method, "sweep": self.sweep, "window": self.window,
                "weights": weights, "size": self.size,
                "splits": {name: s.to_dict() for name, s in self.splits.items()},
                "evidence": self.evidence, "verdict": self.verdict, **self.extra}


def _finite(obj):
    """JSON has no NaN: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_set_file(path: Path, ws: WeightSet) -> Path:
    """Write a set file atomically (no half-written file is ever left behind)."""
    atomic_write_text(Path(path), json.dumps(_finite(ws.to_dict()), indent=1, default=str) + "\n")
    return Path(path)


def read_set_file(path: Path) -> WeightSet:
    """Read and check a set file.

    Raises:
        SetFileError: the file is missing, not JSON, of another format or version, or malformed (the message
            names the file and the field).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetFileError(f"set file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SetFileError(f"{path} is not a JSON set file ({exc.__class__.__name__}: {exc})") from None
    except IsADirectoryError:
        raise SetFileError(f"{path} is a folder; give a set file (.json)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SetFileError(f"{path} is not an sdprobe weight-set file (its 'format' is not {FORMAT!r})")
    if data.get("version") != VERSION:
        raise SetFileError(f"{path} has set-file version {data.get('version')!r}; this sdprobe reads {VERSION}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise SetFileError(f"{path} lacks the field(s) {', '.join(missing)}")
    weights, shapes = {}, {}
    try:
        for w in data["weights"]:
            name = f"{w['component']}.{w['tensor']}"
            shape = tuple(int(d) for d in w["shape"])
            idx = torch.tensor([int(i) for i in w["index"]], dtype=torch.long)
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= math.prod(shape)):
                raise SetFileError(f"{path}: an index of {name} falls outside its shape {shape}")
            weights[name], shapes[name] = idx, shape
        splits = {name: Split.from_dict(name, s) for name, s in data["splits"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise SetFileError(f"{path}: malformed 'weights' or 'splits' ({exc.__class__.__name__}: {exc})") from None
    known = set(REQUIRED) | {"metric", "evidence", "verdict", "size"}
    try:
        return WeightSet(kind=data["kind"], model=data["model"], meaning=data["meaning"], method=data["method"],
                         sweep=data["sweep"], window=data["window"], weights=weights, shapes=shapes, splits=splits,
                         metric=data.get("metric", "oracle"), evidence=data.get("evidence") or {},
                         verdict=data.get("verdict", ""), extra={k: v for k, v in data.items() if k not in known})
    except SetFileError as exc:
        raise SetFileError(f"{path}: {exc}") from None


def check_fits(ws: WeightSet, shapes: dict[str, tuple[int, ...]], model: str) -> None:
    """Raise SetFileError unless every tensor of the set exists in ``shapes`` (qualified name -> shape) with the
    same shape; the message names what is missing and the model."""
    missing = sorted(n for n in ws.weights if n not in shapes)
    if missing:
        raise SetFileError(f"the set's tensor(s) {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} are not "
                           f"in {model}'s pruned scope; the set was made on {ws.model}. Use that model, or a set "
                           f"found on {model}")
    wrong = sorted(n for n in ws.weights if tuple(shapes[n]) != tuple(ws.shapes[n]))
    if wrong:
        raise SetFileError(f"tensor {wrong[0]} has shape {tuple(shapes[wrong[0]])} in {model} but "
                           f"{tuple(ws.shapes[wrong[0]])} in the set (made on {ws.model})")
