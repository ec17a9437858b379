"""A resumed fit goes on as if it had not stopped: the callbacks' state and the History come
back from the checkpoint's record, and a finished run's rerun trains nothing
(tfdist.training.run_record)."""

import json

import keras
import numpy as np
import pytest

import tfdist
from tfdist.training import run_record

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype("float32")
Y = (X @ RNG.normal(size=(4, 1)) + RNG.normal(size=(64, 1))).astype("float32")
VALIDATION = (
    RNG.normal(size=(32, 4)).astype("float32"),
    RNG.normal(size=(32, 1)).astype("float32"),
)
EPOCHS = 12


class Crash(Exception):
    pass


class CrashAtEpoch(keras.callbacks.Callback):
    """Stands for a kill: the process dies as epoch `epoch` (0-based) begins; with `at_end`,
    as it ends (after the callbacks before this one, before the epoch's checkpoint)."""

    def __init__(self, epoch, at_end=False):
        super().__init__()
        self.epoch, self.at_end = epoch, at_end

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch and not self.at_end:
            raise Crash(f"killed at epoch {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch and self.at_end:
            raise Crash(f"killed at the end of epoch {epoch}")


def _model():
    keras.utils.set_random_seed(0)
    with tfdist.make_strategy("one_device", cluster=None).scope():
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return model


def _early_stopping():
    return keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)


def _fit(model, callbacks, model_dir=None):
    return tfdist.fit(
        model,
        X,
        Y,
        batch_size=8,
        epochs=EPOCHS,
        shuffle=False,
        validation_data=VALIDATION,
        verbose=0,
        callbacks=callbacks,
        model_dir=model_dir,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    model = _model()
    history = _fit(model, [_early_stopping()], str(model_dir))
    return model_dir, history.history, model.get_weights()


def test_early_stopping_resumed_after_a_kill_stops_where_the_uninterrupted_run_did(
    tmp_path, uninterrupted
):
    _, expected, weights = uninterrupted
    assert len(expected["loss"]) < EPOCHS  # EarlyStopping stopped it (at epoch 3).
    model_dir = str(tmp_path / "m")
    with pytest.raises(Crash):
        _fit(_model(), [_early_stopping(), CrashAtEpoch(2)], model_dir)

    resumed = _fit(_model(), [_early_stopping()], model_dir)  # A new process's callbacks.

    assert resumed.restored_from.endswith("ckpt-16")  # After epoch 2.
    assert resumed.history == expected  # Every epoch of the run, not this life's alone.
    assert resumed.epoch == list(range(len(expected["loss"])))
    for got, want in zip(resumed.model.get_weights(), weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)  # The best epoch's, restored.


def test_without_the_record_the_callbacks_would_start_afresh(tmp_path, uninterrupted):
    """What the record prevents: EarlyStopping forgets its wait and trains on."""
    _, expected, _ = uninterrupted
    model_dir = tmp_path / "m"
    with pytest.raises(Crash):
        _fit(_model(), [_early_stopping(), CrashAtEpoch(2)], str(model_dir))
    for record in (model_dir / "checkpoints").glob("*.run.*"):
        record.unlink()

    resumed = _fit(_model(), [_early_stopping()], str(model_dir))

    assert len(resumed.history["loss"]) > len(expected["loss"]) - 2  # This life's epochs.
    assert resumed.history != expected


def test_a_finished_run_rerun_trains_nothing_and_says_so(uninterrupted, capfd):
    model_dir, expected, weights = uninterrupted
    model = _model()

    again = _fit(model, [_early_stopping()], str(model_dir))

    said = capfd.readouterr().err.strip().splitlines()
    assert said == [
        f"tfdist: model_dir {model_dir} holds a finished run: epoch 3 of {EPOCHS}, val_loss "
        f"{expected['val_loss'][-1]:.4g}; nothing to train (pass another model_dir, or more "
        "epochs, to train on)."
    ]
    assert again.history == expected
    assert again.final_step == 24


class Counter(keras.callbacks.Callback):
    """A callback of the user's own that opts in with get_state/set_state."""

    def __init__(self):
        super().__init__()
        self.epochs_seen, self.scale = 0, np.zeros(2)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_seen += 1
        self.scale = self.scale + 1.5

    def get_state(self):
        return {"epochs_seen": self.epochs_seen, "scale": self.scale}

    def set_state(self, state):
        self.epochs_seen, self.scale = state["epochs_seen"], state["scale"]


def test_every_stateful_callback_round_trips_through_a_record(tmp_path):
    model = _model()
    early = _early_stopping()
    early.set_model(model)
    early.wait, early.best, early.best_epoch, early.stopped_epoch = 1, 0.5, 2, 0
    early.best_weights = model.get_weights()
    plateau = keras.callbacks.ReduceLROnPlateau(patience=3)
    plateau.wait, plateau.cooldown_counter, plateau.best = 2, 1, 0.25
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), save_best_only=True)
    checkpoint.best = 0.125
    counter = Counter()
    counter.epochs_seen, counter.scale = 4, np.array([6.0, 6.0])
    history = keras.callbacks.History()
    history.epoch, history.history = [0, 1], {"loss": [2.0, 1.0]}
    (tmp_path / "ckpt-8.index").write_text("")  # The checkpoint the record goes with.
    run_record.write(
        str(tmp_path / "ckpt-8"),
        [early, plateau, checkpoint, counter, history],
        history,
        epochs_done=2,
        stopped=False,
    )
    fresh = [
        _early_stopping(),
        keras.callbacks.ReduceLROnPlateau(patience=3),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), save_best_only=True),
        Counter(),
    ]
    fresh_history = keras.callbacks.History()

    record = run_record.read(str(tmp_path / "ckpt-8"))
    run_record.restore(record, [*fresh, fresh_history], fresh_history)

    assert (fresh[0].wait, fresh[0].best, fresh[0].best_epoch) == (1, 0.5, 2)
    for got, want in zip(fresh[0].best_weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert (fresh[1].wait, fresh[1].cooldown_counter, fresh[1].best) == (2, 1, 0.25)
    assert fresh[2].best == 0.125
    assert fresh[3].epochs_seen == 4 and fresh[3].scale.tolist() == [6.0, 6.0]
    assert fresh_history.history == {"loss": [2.0, 1.0]} and fresh_history.epoch == [0, 1]
    assert json.loads((tmp_path / "ckpt-8.run.json").read_text())["epochs_done"] == 2


def test_records_of_rotated_out_checkpoints_are_removed(tmp_path):
    history = keras.callbacks.History()
    for step in (4, 8):
        (tmp_path / f"ckpt-{step}.index").write_text("")
        run_record.write(str(tmp_path / f"ckpt-{step}"), [], history, epochs_done=1, stopped=False)
    (tmp_path / "ckpt-4.index").unlink()  # The manager kept the newest only.
    (tmp_path / "ckpt-12.index").write_text("")

    run_record.write(str(tmp_path / "ckpt-12"), [], history, epochs_done=2, stopped=False)

    assert sorted(p.name for p in tmp_path.glob("*.run.json")) == [
        "ckpt-12.run.json",
        "ckpt-8.run.json",
    ]


def test_a_csv_row_written_before_a_crash_is_not_written_twice(tmp_path):
    model_dir, log = str(tmp_path / "m"), tmp_path / "epochs.csv"
    with pytest.raises(Crash):
        _fit(
            _model(), [keras.callbacks.CSVLogger(str(log)), CrashAtEpoch(3, at_end=True)], model_dir
        )
    assert [line.split(",")[0] for line in log.read_text().splitlines()][-1] == "3"

    _fit(_model(), [keras.callbacks.CSVLogger(str(log))], model_dir)  # Trains epoch 3 again.

    epochs = [line.split(",")[0] for line in log.read_text().splitlines()]
    assert epochs == ["epoch", *map(str, range(EPOCHS))]
    assert not list(tmp_path.rglob("*.partial"))
