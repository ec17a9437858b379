"""The synthetic source as images: the compute-heavy reference job's data."""

import pytest

from tfdist.config import ConfigError, parse_image_shape
from tfdist.data.pipeline import load_source


def test_synthetic_images_have_the_shape_and_a_fixed_rule():
    source = load_source("synthetic", num_examples=300, seed=4, image_shape=(6, 5, 3))
    assert source.input_shape == (6, 5, 3) and source.num_classes == 10
    first = [(x.numpy(), int(y)) for x, y in source.read("train").take(40)]
    again = [(x.numpy(), int(y)) for x, y in source.read("train").take(40)]
    assert first[0][0].shape == (6, 5, 3)
    assert all((a == b).all() and la == lb for (a, la), (b, lb) in zip(first, again, strict=False))
    assert len({label for _, label in first}) > 3
    flat = load_source("synthetic", num_examples=300, seed=4)
    assert flat.input_shape == (784,)


def test_image_shape_parsing():
    assert parse_image_shape("32x32x3") == (32, 32, 3)
    assert parse_image_shape(None) is None
    with pytest.raises(ConfigError, match=r"image_shape \('32x0x3'\) must be HEIGHT, WIDTH"):
        parse_image_shape("32x0x3")
