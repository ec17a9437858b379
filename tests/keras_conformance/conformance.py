"""The conformance suite's machinery: front doors, the case registry, what cases record.

A *case* is a small function `run(front) -> dict`: it builds a tiny seeded model inside
`front.scope()`, trains, evaluates or predicts through the front door and returns a
JSON-able *observation* (hooks called with their logs, a History, weights, predictions,
the error raised). A *front door* is Keras' own `Model.fit/evaluate/predict` on one
device with no strategy (`KerasFront`, the oracle) or `tfdist.fit/evaluate/predict`
under one of tfdist's strategies (`TfdistFront`).

The cases live in the `cases_*.py` modules (one per area); importing `all_cases()`
registers them in a fixed order, the order every task of a cluster runs them in. This
module imports TensorFlow and tfdist but configures no devices: the pytest conftest
does that for `mirrored`; a cluster task keeps its one CPU.

How two observations are compared is `rules.py`'s; the tiny data and models the cases
build are `tiny.py`'s.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import os
import shutil
import tempfile
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

import tfdist

SEED = 7
SYNC_STRATEGIES = ("one_device", "mirrored", "multi_worker")
STRATEGIES = (*SYNC_STRATEGIES, "parameter_server")
CATEGORIES = ("inputs", "steps", "strategies", "models", "compile", "callbacks", "errors")


# ---------------------------------------------------------------------------------------
# Front doors.


class Front:
    """Where a case sends its model: `scope()`, `fit`, `evaluate`, `predict`, `workdir`."""

    name = "front"
    strategy_kind: str | None = None

    def __init__(self, root: str | None = None):
        if root is None:
            root = tempfile.mkdtemp(prefix=f"keras-conformance-{self.name}-")
            atexit.register(shutil.rmtree, root, True)
        self._root = root
        self._case = "case"
        self._folders = 0

    def begin_case(self, name: str) -> None:
        self._case, self._folders = name, 0

    def workdir(self) -> str:
        """A fresh folder for this case; the same path on every task of a cluster.

        Every task empties and makes it before the case's first collective, so they may
        race each other here: a folder another task made first is no error.
        """
        self._folders += 1
        path = os.path.join(self._root, self.name, self._case, str(self._folders))
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def is_keras(self) -> bool:
        return self.strategy_kind is None

    def scope(self):
        raise NotImplementedError

    def fit(self, model, *args, **kwargs):
        raise NotImplementedError

    def evaluate(self, model, *args, **kwargs):
        raise NotImplementedError

    def predict(self, model, *args, **kwargs):
        raise NotImplementedError


class KerasFront(Front):
    """The oracle: Keras' own methods, one device, no strategy scope."""

    name = "keras"

    def scope(self):
        return contextlib.nullcontext()

    def fit(self, model, *args, **kwargs):
        return model.fit(*args, **kwargs)

    def evaluate(self, model, *args, **kwargs):
        return model.evaluate(*args, **kwargs)

    def predict(self, model, *args, **kwargs):
        return model.predict(*args, **kwargs)


class TfdistFront(Front):
    """`tfdist.fit/evaluate/predict` for a model built in `dist.scope()`."""

    def __init__(self, dist, root: str | None = None):
        self.dist = dist
        self.name = self.strategy_kind = dist.kind
        super().__init__(root)

    def scope(self):
        return self.dist.scope()

    def fit(self, model, *args, **kwargs):
        return tfdist.fit(model, *args, **kwargs)

    def evaluate(self, model, *args, **kwargs):
        return tfdist.evaluate(model, *args, **kwargs)

    def predict(self, model, *args, **kwargs):
        return tfdist.predict(model, *args, **kwargs)


@functools.cache
def keras_front() -> KerasFront:
    return KerasFront()


@functools.cache
def local_front(kind: str) -> TfdistFront:
    """`one_device` or `mirrored` (2 logical CPUs) in this process, TF_CONFIG ignored."""
    return TfdistFront(tfdist.make_strategy(kind, cluster=None))


# ---------------------------------------------------------------------------------------
# Cases.


@dataclasses.dataclass(frozen=True)
class Case:
    """One conformance case.

    Attributes:
      name: unique, used in test ids and cluster records.
      category: one of CATEGORIES (the report's grouping).
      run: `run(front) -> observation`.
      parameter_server: `"same"`: compared under the asynchronous rules; `"refused"`:
        tfdist must refuse it in one line naming `words` (a documented difference);
        `"excluded"`: not run there, `note` says why.
      words: for error cases and refusals, the message must name one of these.
      note: why a case is refused or excluded under parameter_server.
    """

    name: str
    category: str
    run: Callable[[Front], dict]
    parameter_server: str = "same"
    words: tuple[str, ...] = ()
    note: str = ""

    @property
    def is_error_case(self) -> bool:
        return self.category == "errors"

    def runs_under(self, strategy: str) -> bool:
        return strategy != "parameter_server" or self.parameter_server != "excluded"


_REGISTRY: dict[str, Case] = {}


def case(category: str, *, parameter_server: str = "same", words=(), note: str = ""):
    """Registers the decorated `run(front)` as a Case named after the function."""
    if category not in CATEGORIES:
        raise ValueError(f"category {category!r} must be one of {CATEGORIES}")
    if parameter_server not in ("same", "refused", "excluded"):
        raise ValueError(f"parameter_server {parameter_server!r}")
    if parameter_server != "same" and not note:
        raise ValueError("a refused or excluded case says why in note=")

    def register(run):
        if run.__name__ in _REGISTRY:
            raise ValueError(f"two cases named {run.__name__}")
        _REGISTRY[run.__name__] = Case(
            run.__name__, category, run, parameter_server, tuple(words), note
        )
        return run

    return register


def all_cases() -> dict[str, Case]:
    """Every case, in the order of registration (the cases modules in a fixed order)."""
    import cases_callbacks  # noqa: F401
    import cases_compile  # noqa: F401
    import cases_errors  # noqa: F401
    import cases_inputs  # noqa: F401
    import cases_models  # noqa: F401
    import cases_stateful  # noqa: F401
    import cases_steps  # noqa: F401
    import cases_weights  # noqa: F401

    return dict(_REGISTRY)


def describe_error(error: BaseException) -> dict:
    """What a case records of an error: its type, whether tfdist's, its message."""
    return {
        "type": type(error).__name__,
        "config_error": isinstance(error, tfdist.ConfigError),
        "runtime_error": isinstance(error, tf.errors.OpError),
        "message": str(error)[:3000],
    }


def raised_a_runtime_error(observation: dict) -> bool:
    """Whether a case ended in a TensorFlow runtime error (which may leave a cluster's
    collectives or coordinator broken for the cases after it)."""
    return any((observation.get(key) or {}).get("runtime_error") for key in ("crashed", "raised"))


def observe(case_: Case, front: Front) -> dict:
    """Runs one case through one front door; its observation, or what crashed it."""
    front.begin_case(case_.name)
    keras.utils.set_random_seed(SEED)
    try:
        observation = case_.run(front)
    except Exception as error:  # Recorded, compared, reported: never raised here.
        return {"crashed": describe_error(error)}
    return jsonable(observation)


@functools.cache
def oracle(name: str) -> dict:
    """Keras' own observation of a case (one device, no strategy), once per process."""
    return observe(all_cases()[name], keras_front())


def raised(call: Callable[[], object]) -> dict | None:
    """The error `call()` raises, described; None when it returns."""
    try:
        call()
    except Exception as error:
        return describe_error(error)
    return None


def jsonable(value):
    """`value` as plain JSON types (arrays as nested lists, tensors read)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (tf.Tensor, tf.Variable)) or hasattr(value, "numpy"):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim else jsonable(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def structure(value):
    """`value` with every number replaced by its type: what may not be compared by value."""
    if isinstance(value, dict):
        return {key: structure(item) for key, item in value.items()}
    if isinstance(value, list):
        return [structure(item) for item in value]
    if isinstance(value, float):
        return "float"
    return value


# ---------------------------------------------------------------------------------------
# What cases record.


class Recorder(keras.callbacks.Callback):
    """Every hook Keras calls, in order: `[hook, batch or epoch index, logs]`.

    `logs=None` is recorded as `{}` (Keras' callbacks read both alike); the outputs in
    `on_predict_batch_end`'s logs are recorded as their shapes.
    """

    def __init__(self):
        super().__init__()
        self.events = []

    def _add(self, hook, index, logs):
        logs = dict(logs or {})
        if "outputs" in logs:
            logs["outputs"] = jsonable(
                tf.nest.map_structure(lambda t: list(t.shape), logs["outputs"])
            )
        self.events.append([hook, index, jsonable(logs)])

    def on_train_begin(self, logs=None):
        self._add("train_begin", None, logs)

    def on_train_end(self, logs=None):
        self._add("train_end", None, logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._add("epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._add("epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._add("train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._add("train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._add("test_begin", None, logs)

    def on_test_end(self, logs=None):
        self._add("test_end", None, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._add("test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._add("test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None):
        self._add("predict_begin", None, logs)

    def on_predict_end(self, logs=None):
        self._add("predict_end", None, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._add("predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._add("predict_batch_end", batch, logs)


def history_of(history) -> dict:
    """A History's record: per-epoch logs, the epochs run and the params Keras set."""
    params = dict(history.params or {})
    return {
        "history": history.history,
        "epoch": list(history.epoch),
        "params": {key: params.get(key) for key in ("epochs", "steps", "verbose")},
    }


def fit_observed(front, model, *args, callbacks=(), **kwargs) -> dict:
    """`front.fit(model, ...)` watched by a Recorder: its events, the History, the weights.

    `verbose=0` and `shuffle=False` unless given, so the runs compare batch for batch;
    the Recorder comes after the case's own `callbacks`.
    """
    recorder = Recorder()
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("shuffle", False)
    history = front.fit(model, *args, callbacks=[*callbacks, recorder], **kwargs)
    return {"events": recorder.events, **history_of(history), "weights": weights_of(model)}


def evaluate_observed(front, model, *args, **kwargs) -> dict:
    """`front.evaluate(model, ...)` watched by a Recorder: its events and the result."""
    recorder = Recorder()
    kwargs.setdefault("verbose", 0)
    result = front.evaluate(model, *args, callbacks=[recorder], **kwargs)
    return {"events": recorder.events, "result": result}


def weights_of(model) -> list:
    return [np.asarray(w).tolist() for w in model.get_weights()]
