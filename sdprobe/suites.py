"""Prompt suites: prompts labelled with the attributes they state, for meaning metrics that read images.

A meaning metric must know what each prompt asks for (its *record*: attribute -> stated value) and how to describe
every other value of an attribute, so that a reader can check whether the stated value wins. A suite holds both:

* ``attributes``: for each attribute (meaning), its values and a description ``template`` with ``{value}`` and,
  optionally, fields of the prompt's record (``"a photo of a {value} {object}"``);
* ``records``: for each prompt, the attributes it states plus any context fields its templates use.

Two kinds exist. ``builtin:tiny-shapes`` is the organism's grammar: every prompt of the grammar is labelled by
parsing it. A **suite file** (TOML) lists its prompts; the format:

.. code-block:: toml

    name = "compositional"
    description = "objects x colors x counts x relations"

    [attributes.color]
    values = ["red", "blue", "green"]
    template = "a photo of a {value} {object}"

    [attributes.object]
    values = ["dog", "cat"]
    template = "a photo of a {value}"

    [[prompts]]
    prompt = "a photo of a red dog"
    object = "dog"     # an attribute the prompt states
    color = "red"
    # any other key is a context field, usable in templates (e.g. plural = "dogs")

Every stated value must be among its attribute's values, and every template field a prompt needs must be in its
record; :func:`load_suite` checks both and names the first offending prompt.

Example:
    >>> suite = load_suite("builtin:tiny-shapes")
    >>> suite.stated("a red circle")
    {'color': 'red', 'shape': 'circle'}
    >>> suite.descriptions("a red circle", "color")["blue"]
    'a blue shape'
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from sdprobe.checks import builtin
from sdprobe.errors import SdprobeError

PROMPT_KEY = "prompt"


class SuiteError(SdprobeError):
    """A prompt suite is malformed, or does not label what a metric was asked to read."""


@dataclass(frozen=True)
class Attribute:
    """One attribute a suite labels: its values and how a value is described to a reader."""

    values: tuple[str, ...]
    template: str  # "{value}" plus record fields, e.g. "a photo of a {value} {object}"

    def fields(self) -> set[str]:
        """The record fields the template needs besides ``value``."""
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f and f != "value"}


class PromptSuite:
    """Labelled prompts (see the module docs).

    Args:
        name (str): short identifier, shown in reports.
        attributes (Mapping[str, Attribute]): attribute -> its values and template.
        records (Mapping[str, Mapping[str, str]]): prompt -> record (stated attributes and context fields).
        parse (Callable[[str], dict] | None): labels prompts outside ``records`` (a grammar); raises ``ValueError``
            for a prompt it cannot label. Default: None.
        description (str): one line for reports. Default: "".
    """

    def __init__(self, name: str, attributes: Mapping[str, Attribute], records: Mapping[str, Mapping[str, str]],
                 parse: Callable[[str], dict] | None = None, description: str = "") -> None:
        self.name, self.description = name, description
        self.attributes = dict(attributes)
        self.records = {p: dict(r) for p, r in records.items()}
        self._parse = parse

    @property
    def meanings(self) -> tuple[str, ...]:
        return tuple(self.attributes)

    @property
    def prompts(self) -> list[str]:
        """The suite's listed prompts (a grammar suite lists none: any prompt of its grammar is labelled)."""
        return list(self.records)

    def record(self, prompt: str) -> dict[str, str]:
        """The prompt's record; raises :class:`SuiteError` for a prompt the suite does not label."""
        if prompt in self.records:
            return self.records[prompt]
        if self._parse is not None:
            try:
                return self._parse(prompt)
            except ValueError as exc:
                raise SuiteError(f"prompt suite {self.name!r} cannot label {prompt!r}: {exc}") from None
        raise SuiteError(f"prompt {prompt!r} is not in the prompt suite {self.name!r}; use the suite's prompts "
                         "(sdprobe.suites.load_suite(...).prompts) or add the prompt with its attributes")

    def stated(self, prompt: str) -> dict[str, str]:
        """The attributes the prompt states (attribute -> value)."""
        return {a: v for a, v in self.record(prompt).items() if a in self.attributes}

    def descriptions(self, prompt: str, attribute: str) -> dict[str, str]:
        """Value -> the text describing the prompt's subject with that value of ``attribute``."""
        spec = self.attributes[attribute]
        record = self.record(prompt)
        return {v: spec.template.format(**{**record, "value": v}) for v in spec.values}

    def standalone(self) -> dict[str, dict[str, str]]:
        """Attribute -> {value: description} for every attribute whose template needs no field of a prompt
        (``"a {value} shape"``): the classes of a CLIP reader that sees no prompt (bias probes, attribution heads)."""
        return {a: {v: spec.template.format(value=v) for v in spec.values}
                for a, spec in self.attributes.items() if not spec.fields()}

    def check(self, prompts: Sequence[str], meanings: Sequence[str] | None = None) -> None:
        """Every prompt is labelled and every meaning asked for is an attribute some prompt states.

        Raises:
            SuiteError: naming the first prompt or meaning at fault and what to provide.
        """
        unknown = [m for m in meanings or () if m not in self.attributes]
        if unknown:
            raise SuiteError(f"prompt suite {self.name!r} labels no {', '.join(map(repr, unknown))}; it labels: "
                             f"{', '.join(self.attributes)}. Choose among those or add the attribute to the suite")
        stated: set[str] = set()
        for prompt in prompts:
            record = self.record(prompt)
            for attribute in (a for a in record if a in self.attributes):
                missing = sorted(self.attributes[attribute].fields() - set(record))
                if missing:
                    raise SuiteError(f"prompt {prompt!r} of suite {self.name!r} states {attribute!r} but lacks the "
                                     f"field(s) {missing} its template {self.attributes[attribute].template!r} needs")
            stated.update(a for a in record if a in self.attributes)
        unlabelled = [m for m in meanings or () if m not in stated]
        if prompts and unlabelled:
            raise SuiteError(f"none of the {len(prompts)} prompts states {', '.join(map(repr, unlabelled))}; use "
                             f"prompts of suite {self.name!r} that do, or drop that meaning")


def _grammar_suite() -> PromptSuite:
    from sdprobe.world import ATTRIBUTES, parse_prompt

    templates = {"color": "a {value} shape", "shape": "a {value}", "position": "a shape at the {value}",
                 "size": "a {value} shape"}
    attributes = {a: Attribute(tuple(values), templates[a]) for a, values in ATTRIBUTES.items()}
    return PromptSuite("tiny-shapes", attributes, {}, parse=lambda p: parse_prompt(p).stated(),
                       description="the organism's grammar; each attribute described alone ('a red shape')")


BUILTIN_SUITES: dict[str, Callable[[], PromptSuite]] = {"tiny-shapes": _grammar_suite}


def load_suite(spec: str | Path) -> PromptSuite:
    """A built-in suite (``builtin:tiny-shapes``) or a suite file (TOML, see the module docs).

    Raises:
        SuiteError: an unknown built-in, or a file that is missing or malformed (the message names the entry).
    """
    name = builtin(spec, BUILTIN_SUITES, "prompt suite", SuiteError)
    return BUILTIN_SUITES[name]() if name else _read_suite_file(Path(str(spec)).expanduser())


def read_prompts(path: str | Path, what: str = "prompts file") -> list[str]:
    """The prompts of a file: a suite's listed prompts for ``.toml``, otherwise one prompt per non-empty line.

    Raises:
        SuiteError: a malformed suite. ValueError: a file that holds no prompt (OSError when it cannot be read).
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".toml":
        return load_suite(path).prompts
    from sdprobe.io import read_text

    prompts = [line.strip() for line in read_text(path, what).splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{what} {path} holds no prompt")
    return prompts


def _read_suite_file(path: Path) -> PromptSuite:
    import tomllib

    from sdprobe.io import read_text

    if not path.is_file():
        raise SuiteError(f"prompt suite file {path} not found; give a TOML suite (see sdprobe.suites) or "
                         "builtin:tiny-shapes")
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"prompt suite {path} is not valid TOML: {exc}") from None
    where = f"prompt suite {path}"
    raw_attributes = data.get("attributes")
    if not isinstance(raw_attributes, dict) or not raw_attributes:
        raise SuiteError(f"{where} has no [attributes.NAME] tables (each with values and template)")
    attributes = {}
    for name, entry in raw_attributes.items():
        values = entry.get("values") if isinstance(entry, dict) else None
        template = entry.get("template") if isinstance(entry, dict) else None
        if (not isinstance(values, list) or len(values) < 2 or not all(isinstance(v, str) for v in values)
                or len(set(values)) != len(values)):
            raise SuiteError(f"{where}: [attributes.{name}] values must be a list of at least 2 distinct strings")
        if not isinstance(template, str) or "{value}" not in template:
            raise SuiteError(f"{where}: [attributes.{name}] template must be a string containing {{value}}")
        try:
            template.format(**{f: "x" for f in Attribute(tuple(values), template).fields()}, value="x")
        except (ValueError, IndexError) as exc:
            raise SuiteError(f"{where}: [attributes.{name}] template {template!r} is malformed: {exc}") from None
        attributes[name] = Attribute(tuple(values), template)
    prompts = data.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise SuiteError(f"{where} lists no [[prompts]] (each with prompt = '...' and its attributes)")
    records: dict[str, dict[str, str]] = {}
    for i, entry in enumerate(prompts, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get(PROMPT_KEY), str) or not entry[PROMPT_KEY].strip():
            raise SuiteError(f"{where}: [[prompts]] entry {i} has no prompt = '...'")
        prompt = entry[PROMPT_KEY]
        if prompt in records:
            raise SuiteError(f"{where}: prompt {prompt!r} is listed twice (entry {i})")
        record = {k: v for k, v in entry.items() if k != PROMPT_KEY}
        bad = [k for k, v in record.items() if not isinstance(v, str)]
        if bad:
            raise SuiteError(f"{where}: prompt {prompt!r} has non-string field(s) {bad}")
        for a, v in record.items():
            if a in attributes and v not in attributes[a].values:
                raise SuiteError(f"{where}: prompt {prompt!r} states {a} = {v!r}, which is not among "
                                 f"[attributes.{a}] values {list(attributes[a].values)}")
        if not any(a in attributes for a in record):
            raise SuiteError(f"{where}: prompt {prompt!r} states none of the attributes {list(attributes)}")
        records[prompt] = record
    suite = PromptSuite(str(data.get("name", path.stem)), attributes, records,
                        description=str(data.get("description", "")))
    suite.check(suite.prompts)
    return suite
