import numpy as np
import pytest

from sdprobe.generate import GenerationConfig, generate

FAST = GenerationConfig(steps=2, batch_size=2)


def test_same_call_gives_same_pixels_and_seeds_matter(tiny_organism):
    a = generate(tiny_organism, ["a red circle"] * 3, [0, 1, 2], FAST)
    b = generate(tiny_organism, ["a red circle"] * 3, [0, 1, 2], FAST)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])


def test_an_image_does_not_depend_on_its_batch(tiny_organism):
    alone = generate(tiny_organism, ["a blue square"], [7], FAST)
    batched = generate(tiny_organism, ["a red circle", "a blue square"], [3, 7], FAST)
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-4)


def test_bad_input_is_rejected(tiny_organism):
    with pytest.raises(ValueError, match="no prompts"):
        generate(tiny_organism, [], [], FAST)
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate(tiny_organism, ["a"], [1, 2], FAST)
    with pytest.raises(ValueError, match="positive"):
        GenerationConfig(steps=0)
