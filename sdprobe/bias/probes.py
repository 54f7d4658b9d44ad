"""Bias probes: neutral prompts (the attribute is left out), an attribute classifier, and expected shares.

A probe is a TOML file (built-ins live in ``sdprobe/probes/``)::

    name = "default-color"
    attribute = "color"            # the attribute whose distribution is measured
    classifier = "oracle"          # "oracle" (tiny-shapes world) or "clip" (zero-shot, needs a CLIP model)
    biased_value = "red"           # optional: the value the probe's bias favours (reported; the search needs it)
    target = "uniform"             # optional: the distribution debiasing aims at, "uniform" or {value = share}
    explicit = ["a green circle"]  # optional: prompts that state the attribute (their accuracy must hold); when
                                   # given, every value needs at least one
    [classes]                      # clip only: value -> description
    man = "a photo of a man"
    [[groups]]                     # one or more groups of neutral prompts
    name = "circle"
    prompts = ["a circle", "a small circle"]
    expected = "world"             # "world" (oracle only), "uniform", or a table {value = share}

Example:
    >>> probe = load_bias_probe("default-color")
    >>> probe.groups[0].expected["red"]
    0.8
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sdprobe.errors import SdprobeError
from sdprobe.world import ATTRIBUTES, color_distribution, parse_prompt

PROBES_DIR = Path(__file__).resolve().parent.parent / "probes"
CLASSIFIERS = ("oracle", "clip")
EXPECTED_TOLERANCE = 1e-6  # expected shares must sum to 1 within this


class ProbeError(SdprobeError):
    """A bias probe is unknown or malformed."""


@dataclass(frozen=True)
class ProbeGroup:
    """Neutral prompts measured together, with the share each value is expected to take (None if unknown)."""

    name: str
    prompts: tuple[str, ...]
    expected: dict[str, float] | None = None


@dataclass(frozen=True)
class BiasProbe:
    """A bias probe (see the module docstring for the file format)."""

    name: str
    attribute: str
    classifier: str
    classes: dict[str, str]  # value -> description (for the oracle, the value itself)
    groups: tuple[ProbeGroup, ...]
    explicit: tuple[str, ...] = ()
    biased_value: str | None = None
    description: str = ""
    target: dict[str, float] | None = None  # what debiasing aims at; None: uniform
    source: str = field(default="", compare=False)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.classes)

    def target_shares(self) -> tuple[float, ...]:
        """The debiasing target as shares in ``values`` order (uniform unless the probe declares one)."""
        if self.target is None:
            return tuple(1.0 / len(self.values) for _ in self.values)
        return tuple(self.target[v] for v in self.values)


def stated_value(probe: BiasProbe, prompt: str) -> str:
    """The attribute value an explicit prompt states (the grammar for the oracle, the class word otherwise).

    Raises:
        ProbeError: the prompt states no value, or (clip probes) more than one.
    """
    if probe.classifier == "oracle":
        value = getattr(parse_prompt(prompt), probe.attribute)
        if value is None:
            raise ProbeError(f"explicit prompt {prompt!r} does not state the {probe.attribute}")
        return value
    words = set(prompt.lower().replace(",", " ").split())
    found = [v for v in probe.values if v.lower() in words]
    if len(found) != 1:
        raise ProbeError(f"explicit prompt {prompt!r} must name exactly one of {', '.join(probe.values)} as a word")
    return found[0]


def explicit_by_value(probe: BiasProbe) -> dict[str, tuple[str, ...]]:
    """Value -> the explicit prompts that state it (every value has at least one when the probe is valid)."""
    out: dict[str, list[str]] = {v: [] for v in probe.values}
    for prompt in probe.explicit:
        out[stated_value(probe, prompt)].append(prompt)
    return {v: tuple(p) for v, p in out.items()}


def builtin_probes() -> list[str]:
    """Names of the probes shipped with sdprobe."""
    return sorted(p.stem for p in PROBES_DIR.glob("*.toml"))


def _world_expected(attribute: str, prompt: str) -> dict[str, float]:
    spec = parse_prompt(prompt)
    if getattr(spec, attribute) is not None:
        raise ProbeError(f"prompt {prompt!r} states the {attribute}; a neutral prompt must leave it out")
    if attribute == "color" and spec.shape is not None:
        return color_distribution(spec.shape)
    if attribute == "color":
        raise ProbeError(f"the world's color distribution depends on the shape; prompt {prompt!r} names none")
    return {v: 1.0 / len(ATTRIBUTES[attribute]) for v in ATTRIBUTES[attribute]}


def _shares(raw: dict, values: tuple[str, ...], what: str) -> dict[str, float]:
    unknown = sorted(set(raw) - set(values))
    if unknown:
        raise ProbeError(f"{what}: shares for unknown value(s) {unknown}; valid: {', '.join(values)}")
    shares = {v: float(raw.get(v, 0.0)) for v in values}
    if any(x < 0 for x in shares.values()):
        raise ProbeError(f"{what}: shares must be non-negative, got {shares}")
    if abs(sum(shares.values()) - 1.0) > EXPECTED_TOLERANCE:
        raise ProbeError(f"{what}: shares sum to {sum(shares.values())}, not 1; make them sum to 1")
    return shares


def _expected(raw, group: str, prompts: tuple[str, ...], probe: BiasProbe) -> dict[str, float] | None:
    values = probe.values
    if raw is None:
        return None
    if raw == "uniform":
        return {v: 1.0 / len(values) for v in values}
    if raw == "world":
        if probe.classifier != "oracle":
            raise ProbeError(f"group {group!r}: expected = 'world' needs the oracle classifier")
        dists = [_world_expected(probe.attribute, p) for p in prompts]
        return {v: sum(d[v] for d in dists) / len(dists) for v in values}
    if isinstance(raw, dict):
        return _shares(raw, values, f"group {group!r}: expected")
    raise ProbeError(f"group {group!r}: expected must be 'world', 'uniform' or a table of shares, got {raw!r}")


def parse_bias_probe(data: dict, source: str = "") -> BiasProbe:
    """Validate a probe definition (the parsed TOML) and build a :class:`BiasProbe`.

    Raises:
        ProbeError: a missing or unknown field, an unknown classifier or attribute, a probe without neutral
            prompts, or expected shares that do not sum to 1. Messages name the valid choices.
    """
    where = f" in {source}" if source else ""
    for key in ("name", "attribute", "classifier", "groups"):
        if key not in data:
            raise ProbeError(f"bias probe{where} lacks {key!r}")
    classifier = data["classifier"]
    if classifier not in CLASSIFIERS:
        raise ProbeError(f"unknown classifier {classifier!r}{where}; valid: {', '.join(CLASSIFIERS)}")
    attribute = data["attribute"]
    if classifier == "oracle":
        if attribute not in ATTRIBUTES:
            raise ProbeError(f"unknown attribute {attribute!r}{where}; the oracle reads: {', '.join(ATTRIBUTES)}")
        if "classes" in data:
            raise ProbeError(f"probe{where}: the oracle's classes are the world's; remove [classes]")
        classes = {v: v for v in ATTRIBUTES[attribute]}
    else:
        classes = {str(k): str(v) for k, v in dict(data.get("classes", {})).items()}
        if len(classes) < 2:
            raise ProbeError(f"probe{where}: a clip probe needs a [classes] table with at least 2 values")
    groups_raw = data["groups"]
    if not groups_raw or not any(g.get("prompts") for g in groups_raw):
        raise ProbeError(f"bias probe {data['name']!r}{where} has no neutral prompts; add [[groups]] with prompts")
    biased = data.get("biased_value")
    if biased is not None and biased not in classes:
        raise ProbeError(f"biased_value {biased!r}{where} is not a class; valid: {', '.join(classes)}")
    raw_target = data.get("target", "uniform")
    if raw_target == "uniform":
        target = None
    elif isinstance(raw_target, dict):
        target = _shares(raw_target, tuple(classes), f"probe{where}: target")
    else:
        raise ProbeError(f"probe{where}: target must be 'uniform' or a table of shares, got {raw_target!r}")
    probe = BiasProbe(name=str(data["name"]), attribute=attribute, classifier=classifier, classes=classes, groups=(),
                      explicit=tuple(data.get("explicit", ())), biased_value=biased,
                      description=str(data.get("description", "")), target=target, source=source)
    groups, seen = [], set()
    for g in groups_raw:
        name, prompts = g.get("name"), tuple(g.get("prompts", ()))
        if not name or not prompts:
            raise ProbeError(f"every group of probe {probe.name!r} needs a name and neutral prompts")
        if name in seen:
            raise ProbeError(f"group {name!r} appears twice in probe {probe.name!r}")
        seen.add(name)
        if classifier == "oracle":
            for p in prompts:
                if getattr(parse_prompt(p), attribute) is not None:
                    raise ProbeError(f"prompt {p!r} of group {name!r} states the {attribute}; neutral prompts leave it out")
        groups.append(ProbeGroup(name, prompts, _expected(g.get("expected"), name, prompts, probe)))
    if probe.explicit:
        missing = [v for v, prompts in explicit_by_value(probe).items() if not prompts]
        if missing:
            raise ProbeError(f"probe {probe.name!r}{where}: no explicit prompt states {', '.join(missing)}; every "
                             f"value needs one (e.g. a prompt naming {missing[0]!r}) so that debiasing can be checked "
                             "not to erase it")
    return BiasProbe(**{**probe.__dict__, "groups": tuple(groups)})


def load_bias_probe(name_or_path: str | Path) -> BiasProbe:
    """A built-in probe by name, or a probe TOML file by path.

    Raises:
        ProbeError: unknown name (lists the built-ins) or a malformed file.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if str(name_or_path) not in builtin_probes():
            raise ProbeError(f"unknown bias probe {str(name_or_path)!r}; built-in probes: {', '.join(builtin_probes())}, "
                             "or pass the path of a .toml probe file")
        path = PROBES_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise ProbeError(f"no probe file at {path}; built-in probes: {', '.join(builtin_probes())}")
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ProbeError(f"{path} is not valid TOML: {exc}") from exc
        except UnicodeDecodeError:
            raise ProbeError(f"{path} is not UTF-8 text, so not a probe file (TOML)") from None
    return parse_bias_probe(data, source=str(path))

