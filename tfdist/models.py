"""Model factory: a registry of builders that return uncompiled Keras 3 models.

This module owns the built-in networks and the name → builder registry. It is
pure Keras: it receives no strategy and compiles nothing. The caller builds the
model inside `strategy.scope()` so the variables are distributed; the trainer
owns the optimizer and the loss.

A builder is any callable `builder(*, input_shape, num_classes) -> keras.Model`;
datasets of id features (`interactions`) also pass `vocab_sizes`, the number
of ids of each feature. `build_model` takes a registered name, a builder, or
the user's own builder as an import path `package.module:function` (the CLI's
`--model=my_models:build_model`), resolved by `resolve_builder`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import keras

from tfdist.config import ConfigError
from tfdist.import_paths import is_import_path, resolve
from tfdist.layers import ShardedEmbedding

ModelBuilder = Callable[..., keras.Model]
_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str, builder: ModelBuilder = None):
    """Registers `builder` under `name`; usable as a decorator."""

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
    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape)),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(num_classes),
        ],
        name="mlp",
    )


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
            "use --model=mlp for flat features."
        )
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
def build_recommender(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    vocab_sizes: Mapping[str, int] | None = None,
    embedding_dim: int = 16,
) -> keras.Model:
    """Matrix factorization: user and item embeddings, their dot product as the score.

    The tables are `ShardedEmbedding` layers, split across parameter servers when
    the strategy has a table partitioner (`--ps_shards`). Outputs two logits
    (dislike, like) so the classification loss and accuracy apply.
    """
    vocab_sizes = dict(vocab_sizes or {})
    if set(vocab_sizes) != {"user", "item"} or num_classes != 2:
        raise ConfigError(
            f"model 'recommender' needs a dataset of 'user' and 'item' ids with 2 classes, "
            f"got ids {sorted(vocab_sizes) or 'none'} and {num_classes} classes; "
            "use --dataset=interactions."
        )
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    user_vector = ShardedEmbedding(
        vocab_sizes["user"], embedding_dim, seed=1, name="user_embedding"
    )(user)
    item_vector = ShardedEmbedding(
        vocab_sizes["item"], embedding_dim, seed=2, name="item_embedding"
    )(item)
    score = keras.ops.sum(user_vector * item_vector, axis=-1, keepdims=True)
    logits = keras.ops.concatenate([-score, score], axis=-1)
    return keras.Model({"user": user, "item": item}, logits, name="recommender")


def resolve_builder(model: str | ModelBuilder) -> ModelBuilder:
    """The builder `model` names: a registered name, `package.module:function`, or itself.

    Raises:
      ConfigError: an unknown name, an import path that does not resolve (naming the
        path, what is missing and the expected form), or something not callable.
    """
    if is_import_path(model):
        builder = resolve(model, what="model", example="my_models:build_model")
        if not callable(builder):
            raise ConfigError(
                f"model ({model!r}) names a {type(builder).__name__}, not a function; expected "
                "a function of 'input_shape' and 'num_classes' that returns a keras.Model."
            )
        return builder
    if isinstance(model, str):
        if model not in _REGISTRY:
            raise ConfigError(
                f"Unknown model {model!r}. Expected one of: {', '.join(model_names())}; "
                "or your own builder as 'package.module:function', or register one with "
                "tfdist.register_model(name, builder)."
            )
        return _REGISTRY[model]
    if not callable(model):
        raise ConfigError(
            f"model ({model!r}) must be a registered name, an import path "
            "'package.module:function' or a builder function."
        )
    return model


def _check_signature(name: str, builder: ModelBuilder, arguments: dict) -> None:
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # A builtin or C callable: let the call tell.
        return
    try:
        signature.bind(**arguments)
    except TypeError as error:
        keywords = " and ".join(f"'{key}'" for key in arguments)
        raise ConfigError(
            f"model {name!r} cannot be called with the keyword arguments {keywords} ({error}); "
            "give it those parameters and return a keras.Model."
        ) from None


def build_model(
    model: str | ModelBuilder,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    vocab_sizes: Mapping[str, int] | None = None,
) -> keras.Model:
    """Builds a model by registered name, import path or builder callable.

    Call it inside `strategy.scope()`. The builder is called as
    `builder(input_shape=..., num_classes=...)` (keywords; `vocab_sizes` too
    only when given) and must return an uncompiled `keras.Model`.
    """
    builder = resolve_builder(model)
    name = model if isinstance(model, str) else getattr(builder, "__name__", repr(builder))
    extra = {"vocab_sizes": dict(vocab_sizes)} if vocab_sizes else {}
    arguments = dict(input_shape=tuple(input_shape), num_classes=num_classes, **extra)
    _check_signature(name, builder, arguments)
    built = builder(**arguments)
    if not isinstance(built, keras.Model):
        raise ConfigError(
            f"model builder {name!r} returned {type(built).__name__}, not a keras.Model; "
            "return e.g. keras.Sequential([...])."
        )
    return built
