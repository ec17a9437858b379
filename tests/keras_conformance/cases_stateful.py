"""Cases: Keras' callbacks that keep state or change the run, with Keras' semantics.

`BackupAndRestore` backs up at each epoch end (`save_freq="epoch"`) or every `save_freq`
batches; a new `fit` resumes at the start of the epoch of the last backup, with the
weights backed up then; a finished fit deletes the backup (`delete_checkpoint=True`) so
the next fit starts afresh, or keeps it (`False`). `ModelCheckpoint` writes per epoch
or every `save_freq` batches, naming files from `{epoch}` and `{batch}`.
`SwapEMAWeights` validates on the EMA weights. `EarlyStopping`, `ReduceLROnPlateau`,
`LearningRateScheduler`, `CSVLogger`, `TerminateOnNaN`, `TensorBoard` (its
validation-time summaries included) do what they do in Keras' fit.
"""

import csv
import os

import keras
import numpy as np
import tensorflow as tf
from conformance import Recorder, case, fit_observed, history_of, raised, weights_of
from tiny import features, regressor, targets, validation_pair

X, Y = features(10), targets(10)
VALIDATION = validation_pair()


class Interrupted(RuntimeError):
    """Raised by `_InterruptAt`: a preemption stand-in."""


class _InterruptAt(keras.callbacks.Callback):
    """Raises `Interrupted` at the beginning of `epoch` (and of `batch`, when given)."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch, self._current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch
        if epoch == self.epoch and self.batch is None:
            raise Interrupted(f"interrupted at epoch {epoch}")

    def on_train_batch_begin(self, batch, logs=None):
        if self._current == self.epoch and batch == self.batch:
            raise Interrupted(f"interrupted at epoch {self._current} batch {batch}")


def _has_backup(folder) -> bool:
    return os.path.isdir(folder) and bool(os.listdir(folder))


def _fit(front, model, callbacks, **kwargs):
    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("epochs", 3)
    return front.fit(model, X, Y, shuffle=False, verbose=0, callbacks=callbacks, **kwargs)


@case("callbacks")
def backup_and_restore_resumes_at_the_interrupted_epoch(front):
    """Interrupted at the start of epoch 2 of 4; a new model's fit resumes at epoch 2
    with the weights of epoch 1's end, runs epochs 2-3, and deletes the backup."""
    backup = os.path.join(front.workdir(), "backup")
    first = raised(
        lambda: _fit(
            front,
            regressor(front),
            [keras.callbacks.BackupAndRestore(backup), _InterruptAt(2)],
            epochs=4,
        )
    )
    after_interruption = _has_backup(backup)
    keras.utils.set_random_seed(11)  # A fresh process would not repeat the first init.
    model = regressor(front)
    recorder = Recorder()
    history = _fit(front, model, [keras.callbacks.BackupAndRestore(backup), recorder], epochs=4)
    return {
        "interruption": first and first["type"],
        "backup_after_interruption": after_interruption,
        "events": recorder.events,
        **history_of(history),
        "weights": weights_of(model),
        "backup_after_finish": _has_backup(backup),
    }


@case("callbacks")
def backup_and_restore_every_two_batches(front):
    """save_freq=2 over 5 batches an epoch, interrupted before batch 3 of epoch 1: the
    last backup was after batch 2 of epoch 1, so the resumed fit runs epoch 1 again
    from its first batch, from those weights."""
    backup = os.path.join(front.workdir(), "backup")
    first = raised(
        lambda: _fit(
            front,
            regressor(front),
            [keras.callbacks.BackupAndRestore(backup, save_freq=2), _InterruptAt(1, batch=3)],
        )
    )
    keras.utils.set_random_seed(11)
    model = regressor(front)
    recorder = Recorder()
    history = _fit(front, model, [keras.callbacks.BackupAndRestore(backup, save_freq=2), recorder])
    return {
        "interruption": first and first["type"],
        "events": recorder.events,
        **history_of(history),
        "weights": weights_of(model),
        "backup_after_finish": _has_backup(backup),
    }


@case("callbacks")
def backup_and_restore_finished_fit_starts_the_next_afresh(front):
    """A fit that finishes deletes its backup: the next fit with the same callback starts
    at epoch 0 again (from the weights the model has)."""
    backup = os.path.join(front.workdir(), "backup")
    model = regressor(front)
    first = _fit(front, model, [keras.callbacks.BackupAndRestore(backup)], epochs=2)
    deleted = not _has_backup(backup)
    second = _fit(front, model, [keras.callbacks.BackupAndRestore(backup)], epochs=2)
    return {
        "first": history_of(first),
        "deleted_after_first": deleted,
        "second": history_of(second),
        "weights": weights_of(model),
    }


@case("callbacks")
def backup_and_restore_kept_checkpoint_resumes_past_the_end(front):
    """delete_checkpoint=False keeps the backup of a finished 2-epoch fit: a new
    model's fit to epochs=3 restores it and runs only epoch 2."""
    backup = os.path.join(front.workdir(), "backup")
    callback = keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)
    first = _fit(front, regressor(front), [callback], epochs=2)
    kept = _has_backup(backup)
    keras.utils.set_random_seed(11)
    model = regressor(front)
    callback = keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)
    second = _fit(front, model, [callback], epochs=3)
    return {
        "first": history_of(first),
        "kept": kept,
        "second": history_of(second),
        "weights": weights_of(model),
    }


@case("callbacks")
def model_checkpoint_every_three_batches(front):
    """save_freq=3 over 2 epochs of 5 batches: a file each 3 batches, named from
    {epoch} and {batch} (both 1-based)."""
    folder = front.workdir()
    path = os.path.join(folder, "w-{epoch}-{batch}.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(path, save_weights_only=True, save_freq=3)
    model = regressor(front)
    _fit(front, model, [checkpoint], epochs=2)
    files = sorted(os.listdir(folder))
    restored = regressor(front)
    restored.load_weights(os.path.join(folder, files[-1]))
    return {"files": files, "weights": weights_of(restored)}


@case("callbacks")
def model_checkpoint_best_only_by_epoch(front):
    """save_best_only with mode="max" on a val_loss that falls every epoch: only epoch 1
    is ever the best, so only e1.keras is written."""
    folder = front.workdir()
    checkpoint = keras.callbacks.ModelCheckpoint(
        os.path.join(folder, "e{epoch}.keras"), monitor="val_loss", mode="max", save_best_only=True
    )
    model = regressor(front)
    history = _fit(front, model, [checkpoint], validation_data=VALIDATION)
    return {"files": sorted(os.listdir(folder)), **history_of(history)}


@case("callbacks")
def swap_ema_weights_validates_on_the_ema(front):
    """SGD(use_ema=True) and SwapEMAWeights(swap_on_epoch=True): val_loss is the EMA
    weights'; training goes on from the trained ones."""
    model = regressor(
        front,
        optimizer=lambda: keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5),
        metrics=["mae"],
    )
    swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    history = _fit(front, model, [swap], validation_data=VALIDATION, epochs=2)
    return {**history_of(history), "weights": weights_of(model)}


@case("callbacks")
def early_stopping_restores_the_best_weights(front):
    """val_loss never improves by 10: epoch 0 is the best, epoch 1 stops (patience 1),
    the weights of epoch 0's end come back."""
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", min_delta=10.0, patience=1, restore_best_weights=True
    )
    model = regressor(front)
    observation = fit_observed(
        front, model, X, Y, batch_size=2, epochs=5, validation_data=VALIDATION, callbacks=[stop]
    )
    return {**observation, "stopped_epoch": stop.stopped_epoch}


@case("callbacks")
def reduce_lr_on_plateau_halves_the_rate(front):
    """loss never improves by 10: after epoch 0, each epoch of patience 1 halves it."""
    reduce = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=1, min_delta=10.0, min_lr=0.01
    )
    model = regressor(front)
    history = _fit(front, model, [reduce], epochs=4)
    return {**history_of(history), "weights": weights_of(model)}


@case("callbacks")
def learning_rate_scheduler_sets_each_epochs_rate(front):
    """LearningRateScheduler(0.2 / (epoch + 1)): the rate of each epoch, in logs too."""
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 0.2 / (epoch + 1))
    model = regressor(front)
    history = _fit(front, model, [schedule], epochs=3)
    return {**history_of(history), "weights": weights_of(model)}


@case("callbacks")
def csv_logger_writes_a_row_per_epoch(front):
    """CSVLogger: its header and a row per epoch, val_ columns included."""
    path = os.path.join(front.workdir(), "log.csv")
    model = regressor(front, metrics=["mae"])
    _fit(front, model, [keras.callbacks.CSVLogger(path)], validation_data=VALIDATION)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {"header": rows[0], "rows": [[float(value) for value in row] for row in rows[1:]]}


@case("callbacks")
def terminate_on_nan_stops_at_the_nan_batch(front):
    """A NaN target in batch 2: its loss is NaN, TerminateOnNaN stops the epoch there."""
    y = Y.copy()
    y[5, 0] = np.nan
    model = regressor(front)
    callbacks = [keras.callbacks.TerminateOnNaN()]
    observation = fit_observed(front, model, X, y, batch_size=2, epochs=3, callbacks=callbacks)
    return {**observation, "stop_training": bool(model.stop_training)}


def _summaries(folder) -> dict:
    """{"train/epoch_loss": [steps], ...}: the scalar tags TensorBoard wrote, by subfolder."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if "tfevents" not in name:
                continue
            where = os.path.relpath(root, folder)
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                for value in event.summary.value:
                    found.setdefault(f"{where}/{value.tag}", []).append(int(event.step))
    return {tag: sorted(steps) for tag, steps in sorted(found.items())}


@case("callbacks")
def tensorboard_writes_training_and_validation_summaries(front):
    """TensorBoard(log_dir) with validation: per-epoch train and validation scalars, and
    the evaluation-vs-iterations ones, at Keras' steps."""
    folder = front.workdir()
    model = regressor(front, metrics=["mae"])
    _fit(
        front,
        model,
        [keras.callbacks.TensorBoard(folder, write_graph=False)],
        validation_data=VALIDATION,
        epochs=2,
    )
    return {"summaries": _summaries(folder)}
