"""The optimizer factory: every configured name builds its Keras class; mistakes say the fix."""

import keras
import pytest

from tfdist.config import OPTIMIZERS, ConfigError
from tfdist.optimizers import build_optimizer


@pytest.mark.parametrize(
    "name, cls",
    [
        ("sgd", keras.optimizers.SGD),
        ("adam", keras.optimizers.Adam),
        ("rmsprop", keras.optimizers.RMSprop),
    ],
)
def test_each_name_builds_its_class_with_the_rate(name, cls):
    optimizer = build_optimizer(name, learning_rate=0.25)

    assert type(optimizer) is cls
    assert float(optimizer.learning_rate) == pytest.approx(0.25)


def test_every_configured_name_builds():
    assert {
        type(build_optimizer(name, learning_rate=0.1)).__name__.lower() for name in OPTIMIZERS
    } == set(OPTIMIZERS)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match=r"^Unknown optimizer 'adamw'\. Expected one of: "):
        build_optimizer("adamw", learning_rate=0.1)


@pytest.mark.parametrize("rate", [0, -0.1, True])
def test_learning_rate_must_be_positive(rate):
    with pytest.raises(ConfigError, match=r"^learning_rate \(.*\) must be a positive number\.$"):
        build_optimizer("sgd", learning_rate=rate)
