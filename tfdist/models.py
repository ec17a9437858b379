"""Model factory: a registry of builders that return uncompiled Keras 3 models.

This module owns the built-in networks and the name → builder registry. It is
pure Keras: it receives no strategy and compiles nothing. The caller builds the
model inside ``strategy.scope()`` so the variables are distributed; the trainer
owns the optimizer and the loss.

A builder is any callable ``builder(*, input_shape, num_classes) -> keras.Model``;
datasets of id features (``interactions``) also pass ``vocab_sizes``, the number
of ids of each feature.
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import keras

from tfdist.config import ConfigError
from tfdist.layers import ShardedEmbedding

ModelBuilder = Callable[..., keras.Model]
_REGISTRY: Dict[str, ModelBuilder] = {}


def register_model(name: str, builder: ModelBuilder = None):
    """Registers ``builder`` under ``name``; usable as a decorator."""

    def add(function: ModelBuilder) -> ModelBuilder:
        if not callable(function):
            raise ConfigError(f"model builder for {name!r} must be callable, got {function!r}.")
        _REGISTRY[name] = function
        return function

    return add if builder is None else add(builder)


def model_names() -> list:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


@register_model("mlp")
def build_mlp(*, input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """Flatten → Dense(256, relu) → Dense(num_classes): the classic reference network."""
    return keras.Sequential([
        keras.Input(shape=tuple(input_shape)),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(num_classes),
    ], name="mlp")


@register_model("cnn")
def build_cnn(*, input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """Two small convolutions and a dense head, for images (H, W) or (H, W, C)."""
    shape = tuple(input_shape)
    layers = [keras.Input(shape=shape)]
    if len(shape) == 2:
        layers.append(keras.layers.Reshape(shape + (1,)))
    elif len(shape) != 3:
        raise ConfigError(
            f"model 'cnn' needs image input of shape (H, W) or (H, W, C), got {shape}; "
            "use --model=mlp for flat features.")
    layers += [
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(num_classes),
    ]
    return keras.Sequential(layers, name="cnn")


@register_model("recommender")
def build_recommender(*, input_shape: Sequence[int], num_classes: int,
                      vocab_sizes: Optional[Mapping[str, int]] = None,
                      embedding_dim: int = 16) -> keras.Model:
    """Matrix factorization: user and item embeddings, their dot product as the score.

    The tables are ``ShardedEmbedding`` layers, split across parameter servers when
    the strategy has a table partitioner (``--ps_shards``). Outputs two logits
    (dislike, like) so the classification loss and accuracy apply.
    """
    vocab_sizes = dict(vocab_sizes or {})
    if set(vocab_sizes) != {"user", "item"} or num_classes != 2:
        raise ConfigError(
            f"model 'recommender' needs a dataset of 'user' and 'item' ids with 2 classes, "
            f"got ids {sorted(vocab_sizes) or 'none'} and {num_classes} classes; "
            "use --dataset=interactions.")
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    user_vector = ShardedEmbedding(vocab_sizes["user"], embedding_dim, seed=1,
                                   name="user_embedding")(user)
    item_vector = ShardedEmbedding(vocab_sizes["item"], embedding_dim, seed=2,
                                   name="item_embedding")(item)
    score = keras.ops.sum(user_vector * item_vector, axis=-1, keepdims=True)
    logits = keras.ops.concatenate([-score, score], axis=-1)
    return keras.Model({"user": user, "item": item}, logits, name="recommender")


def build_model(model: Union[str, ModelBuilder], *, input_shape: Sequence[int],
                num_classes: int, vocab_sizes: Optional[Mapping[str, int]] = None
                ) -> keras.Model:
    """Builds a model by registered name or from a builder callable.

    Call it inside ``strategy.scope()``. ``vocab_sizes`` is passed on only when given.
    """
    if isinstance(model, str):
        if model not in _REGISTRY:
            raise ConfigError(
                f"Unknown model {model!r}. Expected one of: {', '.join(model_names())}; "
                "or register your own with tfdist.register_model(name, builder).")
        model = _REGISTRY[model]
    extra = {"vocab_sizes": dict(vocab_sizes)} if vocab_sizes else {}
    built = model(input_shape=tuple(input_shape), num_classes=num_classes, **extra)
    if not isinstance(built, keras.Model):
        raise ConfigError(
            f"model builder {getattr(model, '__name__', model)!r} returned "
            f"{type(built).__name__}, not a keras.Model.")
    return built
