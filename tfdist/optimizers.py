"""Optimizer factory: Keras 3 optimizers by name.

Owns the mapping from the names in `tfdist.config.OPTIMIZERS` to Keras classes
(tests/tfdist/test_optimizers.py checks that the two list the same names). The caller
builds the optimizer inside `strategy.scope()`: a Keras 3 optimizer remembers
the strategy it was created under and all-reduces gradients through it.
"""

from __future__ import annotations

import keras

from tfdist.config import OPTIMIZERS, check_choice, check_positive

_CLASSES = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "rmsprop": keras.optimizers.RMSprop,
}


def build_optimizer(name: str, *, learning_rate: float) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer `name` (sgd, adam or rmsprop) with `learning_rate`."""
    check_choice("optimizer", name, OPTIMIZERS)
    check_positive("learning_rate", learning_rate)
    return _CLASSES[name](learning_rate=learning_rate)
