import keras
import pytest

from tfdist.config import ConfigError
from tfdist.models import build_model, model_names, register_model


def test_builtin_models_have_the_right_heads():
    mlp = build_model("mlp", input_shape=(8, 8), num_classes=10)
    assert [type(layer).__name__ for layer in mlp.layers] == ["Flatten", "Dense", "Dense"]
    assert mlp.layers[1].units == 256 and mlp.output_shape == (None, 10)
    cnn = build_model("cnn", input_shape=(28, 28, 1), num_classes=5)
    assert cnn.output_shape == (None, 5)


def test_unknown_model_lists_choices():
    with pytest.raises(
        ConfigError, match=r"Unknown model 'resnet9000'. Expected one of: .*cnn.*mlp"
    ):
        build_model("resnet9000", input_shape=(4,), num_classes=2)


def test_cnn_rejects_flat_features():
    with pytest.raises(ConfigError, match=r"model 'cnn' needs image input.*--model=mlp"):
        build_model("cnn", input_shape=(784,), num_classes=10)


def test_users_register_names_or_pass_callables():
    def tiny(*, input_shape, num_classes):
        return keras.Sequential([keras.Input(input_shape), keras.layers.Dense(num_classes)])

    register_model("tiny_for_test", tiny)
    assert "tiny_for_test" in model_names()
    assert build_model("tiny_for_test", input_shape=(3,), num_classes=2).output_shape == (None, 2)
    assert build_model(tiny, input_shape=(3,), num_classes=4).output_shape == (None, 4)
    with pytest.raises(ConfigError, match=r"returned int, not a keras.Model"):
        build_model(lambda **_: 3, input_shape=(3,), num_classes=4)
