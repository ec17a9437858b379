"""Mixed precision: the Keras dtype policy a model is built under.

Owns turning `--mixed_precision` into Keras's global dtype policy. Under
`mixed_float16` layers compute in float16 and keep float32 variables; the
trainer then scales the loss (`LossScaleOptimizer`) so small float16
gradients do not flush to zero. `mixed_bfloat16` has float32's range and needs
no loss scaling. Call `set_precision` before building the model.
"""

from __future__ import annotations

import keras

from tfdist.config import PRECISIONS, check_choice

_POLICIES = {
    "none": "float32",
    "mixed_float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
}


def set_precision(name: str) -> str:
    """Sets Keras's global dtype policy for `name`; returns the policy's name."""
    check_choice("mixed_precision", name, PRECISIONS)
    keras.mixed_precision.set_global_policy(_POLICIES[name])
    return _POLICIES[name]
