"""What a checkpoint keeps beside the variables: the callbacks' state and the History so far.

Owns `ckpt-N.run.json` (and `ckpt-N.run.npz` for arrays), written by the chief next to
each checkpoint `ckpt-N` and read back by every task that resumes from it, so a resumed
run goes on as if it had not stopped:

- the state of Keras' stateful callbacks: EarlyStopping (`wait`, `best`, `best_epoch`,
  `stopped_epoch`, `best_weights`), ModelCheckpoint (`best`), ReduceLROnPlateau (`wait`,
  `cooldown_counter`, `best`); the learning rate a schedule or ReduceLROnPlateau set is
  the optimizer's, in the checkpoint itself; a CSVLogger appends to its file (its rows
  of epochs after the checkpoint's, written before a crash, are dropped first). Any other
  callback opts in with a `get_state()` returning a JSON-able dict (NumPy arrays allowed
  at its top level) and a `set_state(state)` taking it back;
- the History of the epochs done (`epoch` and `history`), so the History a resumed fit
  returns holds every epoch of the run;
- whether a callback (EarlyStopping, TerminateOnNaN, any `model.stop_training`) stopped
  the run: a rerun of a run stopped so, or of one whose epochs are all done, trains
  nothing and says so in one line.

Callbacks are matched by class and by their order among callbacks of that class. A
checkpoint without its record (written before this existed, or a crash between the two
writes) resumes with the callbacks fresh, as before.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from absl import logging

RECORD_SUFFIX = ".run.json"
ARRAYS_SUFFIX = ".run.npz"

_KNOWN: dict[type, tuple[str, ...]] = {
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "stopped_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


def _plain(value: Any) -> Any:
    if isinstance(value, (np.generic, np.ndarray, tf.Tensor)):
        value = np.asarray(value).tolist()
    return value


def _state_of(callback: keras.callbacks.Callback) -> tuple[dict, dict[str, np.ndarray]]:
    """`(json_state, arrays)` of one callback; both empty for a stateless one."""
    if hasattr(callback, "get_state") and hasattr(callback, "set_state"):
        state = dict(callback.get_state())
        arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
        return {k: _plain(v) for k, v in state.items() if k not in arrays}, arrays
    for kind, names in _KNOWN.items():
        if isinstance(callback, kind):
            state = {name: _plain(getattr(callback, name, None)) for name in names}
            arrays = {}
            weights = getattr(callback, "best_weights", None)
            if weights is not None:
                arrays = {f"best_weights_{i}": np.asarray(w) for i, w in enumerate(weights)}
            return state, arrays
    return {}, {}


def _set_state(callback: keras.callbacks.Callback, state: dict, arrays: dict) -> None:
    if hasattr(callback, "get_state") and hasattr(callback, "set_state"):
        callback.set_state({**state, **arrays})
        return
    for name, value in state.items():
        setattr(callback, name, value)
    if arrays:
        callback.best_weights = [arrays[f"best_weights_{i}"] for i in range(len(arrays))]


def _keyed(callbacks: list) -> list[tuple[str, keras.callbacks.Callback]]:
    """`(key, callback)`: the class name and the callback's order among that class's."""
    seen: dict[str, int] = {}
    keyed = []
    for callback in callbacks:
        name = type(callback).__name__
        keyed.append((f"{name}#{seen.get(name, 0)}", callback))
        seen[name] = seen.get(name, 0) + 1
    return keyed


def write(
    checkpoint: str,
    callbacks: list,
    history: keras.callbacks.History,
    *,
    epochs_done: int,
    stopped: bool,
) -> None:
    """Writes checkpoint `checkpoint`'s record (the chief only); replaces older ones."""
    states, arrays = {}, {}
    for key, callback in _keyed(callbacks):
        state, found = _state_of(callback)
        if state or found:
            states[key] = state
            arrays.update({f"{key}/{name}": value for name, value in found.items()})
    record = {
        "epochs_done": epochs_done,
        "stopped": stopped,
        "epoch": list(getattr(history, "epoch", [])),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "callbacks": states,
    }
    if arrays:  # Whole before the record names them: each written aside, then renamed.
        packed = io.BytesIO()  # np.savez seeks; a GFile on an object store cannot.
        np.savez(packed, **arrays)
        _write_whole(checkpoint + ARRAYS_SUFFIX, packed.getvalue())
    _write_whole(checkpoint + RECORD_SUFFIX, json.dumps(record).encode())
    _prune(os.path.dirname(checkpoint))


def _write_whole(path: str, content: bytes) -> None:
    """Writes `path` so a crash leaves the old file or the new one, never a part."""
    temporary = path + ".partial"
    with tf.io.gfile.GFile(temporary, "wb") as f:
        f.write(content)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def _prune(folder: str) -> None:
    """Removes the records of checkpoints the manager rotated out."""
    for name in tf.io.gfile.listdir(folder):
        for suffix in (RECORD_SUFFIX, ARRAYS_SUFFIX):
            if name.endswith(suffix):
                prefix = os.path.join(folder, name[: -len(suffix)])
                if not tf.io.gfile.exists(prefix + ".index"):
                    tf.io.gfile.remove(os.path.join(folder, name))


def read(checkpoint: str) -> dict | None:
    """Checkpoint `checkpoint`'s record, or None (with a warning) when it has none."""
    path = checkpoint + RECORD_SUFFIX
    if not tf.io.gfile.exists(path):
        logging.warning("%s has no %s: the callbacks start afresh", checkpoint, RECORD_SUFFIX)
        return None
    with tf.io.gfile.GFile(path) as f:
        record = json.load(f)
    arrays: dict[str, np.ndarray] = {}
    if tf.io.gfile.exists(checkpoint + ARRAYS_SUFFIX):
        with tf.io.gfile.GFile(checkpoint + ARRAYS_SUFFIX, "rb") as f:
            with np.load(io.BytesIO(f.read())) as loaded:
                arrays = {name: loaded[name] for name in loaded.files}
    record["arrays"] = arrays
    return record


def before_train_begin(record: dict, callbacks: list) -> None:
    """What a resumed fit sets before `on_train_begin`: a CSVLogger appends to the rows of
    the epochs done instead of starting its file afresh, and rows of later epochs (written
    after the checkpoint, before a crash; the run trains those epochs again) go first."""
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.CSVLogger):
            callback.append = True
            _keep_rows_before(callback.filename, callback.sep, len(record["epoch"]))


def _keep_rows_before(path: str, separator: str, epochs: int) -> None:
    """Drops the rows of CSV file `path` whose `epoch` column is `epochs` or more."""
    if not tf.io.gfile.exists(path):
        return
    with tf.io.gfile.GFile(path) as f:
        rows = list(csv.reader(f, delimiter=separator))
    if not rows or rows[0][:1] != ["epoch"]:
        return  # Not a CSVLogger's file: left as it is.
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    csv.writer(text, delimiter=separator).writerows(kept)  # Keras' dialect: excel's.
    _write_whole(path, text.getvalue().encode())


def restore(record: dict, callbacks: list, history: keras.callbacks.History) -> None:
    """Puts a record back: each callback's state, and the History of the epochs done.

    Call it after `on_train_begin`, which resets both (as Keras' `fit` does)."""
    for key, callback in _keyed(callbacks):
        state = record["callbacks"].get(key)
        if state is None:
            continue
        prefix = f"{key}/"
        arrays = {
            name[len(prefix) :]: value
            for name, value in record["arrays"].items()
            if name.startswith(prefix)
        }
        _set_state(callback, state, arrays)
    history.epoch = list(record["epoch"])
    history.history = {k: list(v) for k, v in record["history"].items()}


def summary(record: dict, epochs: int) -> str:
    """ "epoch 6 of 6, val_loss 0.1234": where a finished run ended."""
    said = [f"epoch {record['epochs_done']} of {epochs}"]
    for key in ("val_loss", "loss"):
        values = record["history"].get(key)
        if values and math.isfinite(values[-1]):
            said.append(f"{key} {values[-1]:.4g}")
            break
    return ", ".join(said)
