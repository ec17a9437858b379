"""Tiny compiled Keras models and digits dataset functions for the training tests."""

from __future__ import annotations

import keras

from tfdist.data.pipeline import load_source, make_dataset_fn
from tfdist.models import build_model

DIGITS = load_source("digits")


def digits_fns(batch: int = 64, shuffle: bool = True):
    """`(train_fn, validation_fn)` of the bundled digits at global batch `batch`."""
    train = make_dataset_fn(
        DIGITS, "train", global_batch_size=batch, training=True, shuffle=shuffle
    )
    val = make_dataset_fn(DIGITS, "validation", global_batch_size=batch, training=False)
    return train, val


def digits_mlp(
    distribution, *, optimizer="adam", learning_rate=1e-3, seed=0, metrics=("accuracy",)
) -> keras.Model:
    """The reference MLP built and compiled in `distribution`'s scope, as the CLI does."""
    keras.utils.set_random_seed(seed)
    with distribution.scope():
        model = build_model("mlp", input_shape=DIGITS.input_shape, num_classes=10)
        optimizers = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
        model.compile(
            optimizer=optimizers[optimizer](learning_rate=learning_rate)
            if isinstance(optimizer, str)
            else optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=list(metrics),
        )
    return model
