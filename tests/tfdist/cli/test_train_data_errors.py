"""The command line's data mistakes (--dataset=package.module:function returning bad arrays,
--model of another input width) end as every user mistake does: one line, exit 2."""

import sys
import textwrap

import pytest

from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")

DATA = "user_bad_data_i23"


@pytest.fixture
def bad_data(tmp_path, monkeypatch):
    (tmp_path / f"{DATA}.py").write_text(
        textwrap.dedent("""
        import keras
        import numpy as np

        def _x(width=6):
            return np.random.default_rng(0).normal(size=(128, width)).astype("float32")

        def _y():
            return np.random.default_rng(1).integers(0, 3, 128)

        def one_hot():
            return _x(), keras.utils.to_categorical(_y(), 3)

        def class_names():
            return _x(), np.array(["cat", "dog"] * 64)

        def nan():
            x = _x()
            x[::4, 1] = np.nan
            return x, _y()

        def arrays():
            return _x(), _y()

        def four_features(input_shape, num_classes):
            return keras.Sequential(
                [keras.Input((4,), name="features"), keras.layers.Dense(num_classes)]
            )
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(DATA, None)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [f"--dataset={DATA}:one_hot"],
            f"labels of --dataset={DATA}:one_hot are one-hot rows (shape (None, 3)) but the loss "
            "'SparseCategoricalCrossentropy' of the model's output 'dense_",
        ),
        (
            [f"--dataset={DATA}:class_names"],
            f"dataset ('{DATA}:class_names') returned labels that are strings (e.g. 'cat'); the "
            "loss needs numbers: map the 2 class names to 0..1 first, e.g. names, y = "
            "np.unique(y, return_inverse=True).",
        ),
        (
            [f"--dataset={DATA}:nan", "--steps_per_loop=1"],
            f"features of --dataset={DATA}:nan hold NaN at batch 0, row 0, column 1 (8 rows hold "
            "NaN/inf), and the model's weights became NaN/inf by step 1 (epoch 1); replace or "
            "drop the non-finite values before training",
        ),
        (
            [f"--dataset={DATA}:arrays", f"--model={DATA}:four_features"],
            f"features of --dataset={DATA}:arrays have 6 features per example (shape (None, 6)) "
            "but the model's input 'features' takes 4 (batches of shape (None, 4)); give it 4 "
            "columns or build the model with keras.Input(shape=(6,)).",
        ),
    ],
    ids=["one_hot", "class_names", "nan", "model_width"],
)
def test_bad_data_exits_2_with_one_line(bad_data, capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        train.main(["tfdist.train", *args, "--strategy=one_device", "--epochs=1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"tfdist.train: error: {message}"), err[0]
