"""Writes compositional.toml, sdprobe's labelled prompt suite for real text-to-image models.

    python analyses/prompts/make_compositional.py   # rewrites analyses/prompts/compositional.toml

The suite follows the categories of compositional benchmarks (GenEval, Ghosh et al. 2023; T2I-CompBench, Huang et al.
2023): single objects, colored objects, counts and spatial relations between two objects, each prompt labelled
with the attributes it states. Objects are common COCO classes that CLIP models know well; colors are GenEval's.
Every prompt of a category is written; the list is deterministic (no sampling), so the file is reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

OBJECTS = {  # singular -> plural
    "dog": "dogs", "cat": "cats", "car": "cars", "bicycle": "bicycles", "chair": "chairs", "cup": "cups",
    "apple": "apples", "banana": "bananas", "bird": "birds", "horse": "horses", "bench": "benches",
    "clock": "clocks", "umbrella": "umbrellas", "bottle": "bottles", "book": "books", "boat": "boats",
}
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
COUNTS = ("two", "three", "four")
RELATIONS = ("left of", "right of", "above", "below")
ATTRIBUTES = {
    "object": (tuple(OBJECTS), "a photo of a {value}"),
    "color": (COLORS, "a photo of a {value} {object}"),
    "count": (COUNTS, "a photo of {value} {plural}"),
    "position": (RELATIONS, "a photo of a {object} {value} a {other}"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def prompts() -> list[dict[str, str]]:
    objects = list(OBJECTS)
    out = [{"prompt": f"a photo of {_article(o)} {o}", "object": o} for o in objects]
    out += [{"prompt": f"a photo of {_article(c)} {c} {o}", "object": o, "color": c} for o in objects for c in COLORS]
    out += [{"prompt": f"a photo of {n} {OBJECTS[o]}", "object": o, "count": n, "plural": OBJECTS[o]}
            for o in objects for n in COUNTS]
    pairs = [(objects[i], objects[(i + 5) % len(objects)]) for i in range(len(objects))]  # 16 fixed pairs
    out += [{"prompt": f"a photo of {_article(a)} {a} {r} {_article(b)} {b}", "object": a, "position": r, "other": b}
            for a, b in pairs for r in RELATIONS]
    return out


def to_toml(entries: list[dict[str, str]]) -> str:
    lines = ['name = "compositional"',
             'description = "objects x colors x counts x spatial relations (GenEval-style), each prompt labelled"',
             "# Written by analyses/prompts/make_compositional.py; see the README's section on prompt suites.", ""]
    for name, (values, template) in ATTRIBUTES.items():
        lines += [f"[attributes.{name}]", f"values = {json.dumps(list(values))}", f"template = {json.dumps(template)}",
                  ""]
    for e in entries:
        lines += ["[[prompts]]", *(f"{k} = {json.dumps(v)}" for k, v in e.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(__file__).with_name("compositional.toml")
    path.write_text(to_toml(prompts()), encoding="utf-8")
    print(f"{path}: {len(prompts())} prompts")
