"""Which Keras callbacks run on which task, in one `keras.callbacks.CallbackList`.

Owns the distribution rules of callbacks (the same on every strategy), on top of Keras'
own protocol, which is the only one the loop calls:

- Every task runs the callbacks (under `parameter_server` only the coordinator runs the
  loop, so only it does). Their logs come from metrics summed over all replicas and
  workers inside the compiled calls, so a decision taken from them (EarlyStopping, a new
  learning rate) is the same on every worker; a stop asked on any worker stops all
  (`tfdist.training.preemption`).
- Only the chief writes: on other workers ModelCheckpoint writes into a scratch folder
  (it still runs, so every worker reads the same variables), and CSVLogger and
  TensorBoard are left out. Which tasks show progress is the front door's choice (`fit`:
  the chief; the command line: every worker with `--verbose`), through `verbose`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import keras

from tfdist.config import ConfigError
from tfdist.training.history import History

_WRITE_ON_CHIEF_ONLY = (keras.callbacks.CSVLogger, keras.callbacks.TensorBoard)


def check_callbacks(callbacks) -> list[keras.callbacks.Callback]:
    """`callbacks` as a list, each a `keras.callbacks.Callback`."""
    checked = []
    for callback in callbacks or ():
        if not isinstance(callback, keras.callbacks.Callback):
            raise ConfigError(
                f"callbacks holds {type(callback).__name__}; each must be a "
                "keras.callbacks.Callback."
            )
        checked.append(callback)
    return checked


def for_this_task(callbacks: Sequence[keras.callbacks.Callback], is_chief: bool) -> list:
    """The callbacks this task runs: all on the chief; elsewhere none that write files."""
    if is_chief:
        return list(callbacks)
    kept = []
    scratch = None
    for callback in callbacks:
        if isinstance(callback, _WRITE_ON_CHIEF_ONLY):
            continue
        if isinstance(callback, keras.callbacks.BackupAndRestore):
            # It restores the chief's backup (every worker holds the same weights), but
            # only the chief writes or deletes it.
            callback._save_model = lambda: None  # type: ignore[method-assign]
            callback.delete_checkpoint = False
        if isinstance(callback, keras.callbacks.ModelCheckpoint):
            scratch = scratch or tempfile.mkdtemp(prefix="tfdist-worker-checkpoint-")
            callback.filepath = os.path.join(scratch, os.path.basename(str(callback.filepath)))
        kept.append(callback)
    return kept


def callback_list(
    callbacks: Sequence[keras.callbacks.Callback],
    *,
    model: keras.Model,
    history: History | None,
    is_chief: bool,
    verbose: int,
    epochs: int,
    steps: int | None,
) -> keras.callbacks.CallbackList:
    """Keras' `CallbackList` of a fit, evaluate or predict on this task.

    Args:
      callbacks: the user's callbacks.
      model: the model they watch.
      history: the fit's `History` (None for evaluate and predict).
      is_chief: this task writes files.
      verbose: Keras' `verbose` on this task: 0 silent, 1 progress bar, 2 a line per epoch.
      epochs: the run's last epoch.
      steps: steps per epoch (None when unknown).
    """
    listed = for_this_task(callbacks, is_chief)
    if history is not None:
        listed.append(history)
    return keras.callbacks.CallbackList(
        listed, add_progbar=verbose != 0, model=model, verbose=verbose, epochs=epochs, steps=steps
    )


def check_verbose(verbose) -> int:
    """Keras' `verbose`: 'auto' (1), 0, 1 or 2."""
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ConfigError(f"verbose ({verbose!r}) must be 'auto', 0, 1 or 2.")
    return verbose
