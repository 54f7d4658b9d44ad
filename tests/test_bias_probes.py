"""Bias probe definitions: the built-ins, and clear errors for bad ones."""

from __future__ import annotations

import pytest

from sdprobe.bias import ProbeError, builtin_probes, load_bias_probe, make_classifier, parse_bias_probe
from sdprobe.errors import SdprobeError
from sdprobe.world import COLORS, PLANTED_BIAS_COLOR, PLANTED_BIAS_SHARE, parse_prompt


def _probe(**over):
    data = {"name": "p", "attribute": "color", "classifier": "oracle",
            "groups": [{"name": "circle", "prompts": ["a circle"], "expected": "world"}]}
    data.update(over)
    return data


def test_default_color_matches_the_world():
    probe = load_bias_probe("default-color")
    groups = {g.name: g for g in probe.groups}
    assert set(groups) == {"circle", "square", "triangle"}
    assert groups["circle"].expected[PLANTED_BIAS_COLOR] == pytest.approx(PLANTED_BIAS_SHARE)
    for name in ("square", "triangle"):
        assert all(v == pytest.approx(1 / len(COLORS)) for v in groups[name].expected.values())
    for g in probe.groups:
        assert all(parse_prompt(p).color is None and parse_prompt(p).shape == g.name for p in g.prompts)
    assert all(parse_prompt(p).color is not None for p in probe.explicit)
    assert probe.biased_value == PLANTED_BIAS_COLOR


def test_builtins_all_load():
    assert {"default-color", "occupations"} <= set(builtin_probes())
    for name in builtin_probes():
        assert load_bias_probe(name).groups


def test_unknown_probe_lists_the_builtins():
    with pytest.raises(ProbeError, match="built-in probes: default-color"):
        load_bias_probe("gender-bias")


def test_probe_without_neutral_prompts_is_rejected():
    with pytest.raises(ProbeError, match="no neutral prompts"):
        parse_bias_probe(_probe(groups=[]))
    with pytest.raises(ProbeError, match="no neutral prompts"):
        parse_bias_probe(_probe(groups=[{"name": "circle", "prompts": []}]))


@pytest.mark.parametrize("over, message", [
    ({"classifier": "vlm"}, "valid: oracle, clip"),
    ({"attribute": "texture"}, "the oracle reads: color, shape, position, size"),
    ({"groups": [{"name": "c", "prompts": ["a red circle"]}]}, "states the color"),
    ({"groups": [{"name": "c", "prompts": ["a circle"], "expected": {"red": 0.5}}]}, "sum to 0.5"),
    ({"groups": [{"name": "c", "prompts": ["a circle"], "expected": {"magenta": 1.0}}]}, "valid: red, green"),
    ({"groups": [{"name": "c", "prompts": ["a shape"], "expected": "world"}]}, "names none"),
    ({"biased_value": "magenta"}, "not a class"),
    ({"classifier": "clip"}, "needs a \\[classes\\] table"),
    ({"explicit": ["a red circle", "a blue circle"]}, "no explicit prompt states green, yellow, purple, cyan"),
    ({"explicit": ["a circle"]}, "does not state the color"),
    ({"target": {"red": 0.5, "blue": 0.4}}, "target: shares sum to 0.9"),
    ({"target": {"magenta": 1.0}}, "target: shares for unknown value"),
    ({"target": "balanced"}, "target must be 'uniform' or a table"),
])
def test_bad_probes_name_the_problem(over, message):
    with pytest.raises(ProbeError, match=message):
        parse_bias_probe(_probe(**over))


def test_clip_probe_needs_a_clip_model():
    probe = load_bias_probe("occupations")
    assert probe.values == ("man", "woman")
    with pytest.raises(SdprobeError, match="--clip-model"):
        make_classifier(probe, clip_model=None)


def test_a_declared_target_replaces_uniform():
    probe = parse_bias_probe(_probe(target={"red": 0.5, "blue": 0.5}))
    assert dict(zip(probe.values, probe.target_shares()))["red"] == 0.5
    assert parse_bias_probe(_probe()).target_shares() == tuple([1 / 6] * 6)


def test_bias_cli_bad_input_exits_2_before_writing(tmp_path, capsys):
    from sdprobe.cli import main

    assert main(["bias", "--model", "builtin:tiny-shapes", "--set", str(tmp_path / "none.json"),
                 "-o", str(tmp_path / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "b").exists()
    (tmp_path / "bad.toml").write_text('name = "x"\nattribute = "color"\nclassifier = "oracle"\n'
                                       'explicit = ["a red circle"]\n[[groups]]\nname = "c"\nprompts = ["a circle"]\n')
    assert main(["bias", "--model", "builtin:tiny-shapes", "--probe", str(tmp_path / "bad.toml"),
                 "-o", str(tmp_path / "b")]) == 2
    assert "no explicit prompt states green" in capsys.readouterr().err
