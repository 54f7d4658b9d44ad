import numpy as np
import pytest

from sdprobe.world import (
    ATTRIBUTES,
    COLORS,
    PromptSpec,
    Scene,
    color_distribution,
    format_prompt,
    parse_prompt,
    read,
    render,
    render_batch,
    sample_specs,
)


def test_oracle_agrees_with_renderer_on_at_least_995_permille():
    rng = np.random.default_rng(2024)
    scenes = [s.complete(rng) for s in sample_specs(3000, rng)]
    images = render_batch(scenes, rng)
    agree = np.mean([read(im).attributes == sc.as_dict() for sc, im in zip(scenes, images)])
    assert agree >= 0.995


def test_oracle_reads_soft_noisy_shapes():
    """Generated images are softer than renders: the shape reader must not hinge on a thresholded edge pixel.
    (A bounding-box fill ratio reads 92% of these shapes, and 88% of the small ones.)"""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    scenes = [s.complete(rng) for s in sample_specs(600, rng)]
    images = render_batch(scenes, rng)
    noise = np.random.default_rng(0)
    soft = [np.clip(ndimage.gaussian_filter(im, (0.7, 0.7, 0)) + noise.normal(0, 0.03, im.shape), 0, 1) for im in images]
    readings = [read(im) for im in soft]
    for attribute in ("color", "shape", "position", "size"):
        small = [r.readable and r.attributes[attribute] == getattr(s, attribute)
                 for r, s in zip(readings, scenes) if s.size == "small"]
        assert np.mean(small) >= 0.98, attribute


def test_shape_templates_have_the_asked_centroid_and_area():
    from sdprobe.world.render import template

    yy, xx = np.mgrid[:32, :32] + 0.5
    for shape in ATTRIBUTES["shape"]:
        for area in (24.0, 40.0, 110.0):
            t = template(shape, (9.3, 21.7), area)
            assert abs(t.sum() - area) / area < 0.08, (shape, area)
            assert abs((t * xx).sum() / t.sum() - 9.3) < 0.15 and abs((t * yy).sum() / t.sum() - 21.7) < 0.15
    with pytest.raises(ValueError, match="unknown shape"):
        template("star", (8, 8), 30.0)


def test_every_combination_is_read_back_without_jitter():
    import itertools

    for values in itertools.product(*ATTRIBUTES.values()):
        scene = Scene(*values)
        assert read(render(scene)).attributes == scene.as_dict()


def test_oracle_marks_blank_noise_several_blobs_and_nan_unreadable():
    blank = np.zeros((32, 32, 3), np.float32)
    noise = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    two = render(Scene("red", "square", "top left", "large")) + render(Scene("blue", "circle", "bottom right", "large"))
    nan = render(Scene("red", "square", "top left", "large"))
    nan[0, 0, 0] = np.nan
    assert read(blank).reason == "blank"
    assert not read(noise).readable
    assert read(two).reason == "several blobs"
    assert read(nan).reason == "non-finite pixels"


def test_oracle_accepts_uint8_and_rejects_bad_shapes():
    img = (render(Scene("green", "triangle", "top right", "small")) * 255).astype(np.uint8)
    assert read(img).attributes["color"] == "green"
    with pytest.raises(ValueError, match="expected an"):
        read(np.zeros((32, 32)))


def test_prompt_round_trip_and_omissions():
    rng = np.random.default_rng(0)
    for spec in sample_specs(200, rng, p_omit=0.5):
        assert parse_prompt(format_prompt(spec)) == spec
    assert format_prompt(PromptSpec(shape="circle")) == "a circle"
    assert format_prompt(PromptSpec(color="red")) == "a red shape"
    with pytest.raises(ValueError, match="not in the tiny-shapes grammar"):
        parse_prompt("a photo of a doctor")


def test_planted_bias_distribution_is_documented_and_sampled():
    dist = color_distribution("circle")
    assert dist["red"] == pytest.approx(0.8) and sum(dist.values()) == pytest.approx(1.0)
    assert color_distribution("square") == {c: pytest.approx(1 / len(COLORS)) for c in COLORS}
    rng = np.random.default_rng(1)
    colors = [PromptSpec(shape="circle").complete(rng).color for _ in range(4000)]
    assert np.mean([c == "red" for c in colors]) == pytest.approx(0.8, abs=0.03)


def test_bad_attribute_values_name_the_valid_ones():
    with pytest.raises(ValueError, match="valid: red"):
        Scene("pink", "circle", "top left", "large")
    with pytest.raises(ValueError, match="positive"):
        sample_specs(0, np.random.default_rng(0))
