"""The conformance suite's machinery: front doors, the case registry, observations, comparison.

A *case* is a small function `run(front) -> dict`: it builds a tiny seeded model inside
`front.scope()`, trains, evaluates or predicts through the front door and returns a
JSON-able *observation* (hooks called with their logs, a History, weights, predictions,
the error raised). A *front door* is Keras' own `Model.fit/evaluate/predict` on one
device with no strategy (`KerasFront`, the oracle) or `tfdist.fit/evaluate/predict`
under one of tfdist's strategies (`TfdistFront`). `differences(...)` compares two
observations by the suite's rules and says, one line each, where they part.

The cases live in the `cases_*.py` modules (one per area); importing `all_cases()`
registers them in a fixed order, the order every task of a cluster runs them in. This
module imports TensorFlow and tfdist but configures no devices: the pytest conftest
does that for `mirrored`; a cluster task keeps its one CPU.

Observation keys the comparison knows:
  - `events`: what a `Recorder` saw, `[hook, index, logs]` in call order. Hook, index
    and log keys must be equal; log values too (1e-4 relative) on the hooks that get
    aggregates (`epoch_end`, `test_end`, `train_end`), not on batch hooks (running
    values). Under `parameter_server` the training batch hooks of an epoch may
    interleave (`batch_order_differences`).
  - `weights...`: model weights, within 1e-5 absolute; not compared under
    `parameter_server` (asynchronous updates).
  - `raised`: the error a call raised (`raised(...)`), for the error cases' own check.
  - `crashed`: the case itself failed (any exception outside `raised`).
  - anything else: equal structure; strings, ints, bools and None exact; floats within
    1e-4 relative (1e-6 absolute) for the synchronous strategies.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import math
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

# Same math in float32, summed in another order (replicas, workers): ~1e-7 relative.
METRIC_RTOL, METRIC_ATOL = 1e-4, 1e-6
WEIGHT_ATOL = 1e-5
# parameter_server: each of the 2 workers may compute its gradient on weights one update
# stale. SGD with every gradient one step stale, simulated on these cases' models and
# data, moves the per-epoch losses at most 7.4% from the synchronous run's (the 10-example
# regressions at lr 0.1; ~1% for the classifiers), so 25% leaves three times that while
# still catching a summed instead of averaged loss (x2), a lost or doubled epoch, a
# single step's loss reported for the epoch's. 0.1 absolute: one example of the ~12 in a
# classifier case moves its accuracy by 0.083.
ASYNC_RTOL, ASYNC_ATOL = 0.25, 0.1
AGGREGATE_HOOKS = ("epoch_end", "test_end", "train_end")
TRAIN_BATCH_HOOKS = ("train_batch_begin", "train_batch_end")


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
        """A fresh folder for this case; the same path on every task of a cluster."""
        self._folders += 1
        path = os.path.join(self._root, self.name, self._case, str(self._folders))
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
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


# ---------------------------------------------------------------------------------------
# Tiny data and models (every case seeds itself through `observe`).


def features(n: int, width: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype("float32")


def targets(n: int, width: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype("float32")


def labels(n: int, classes: int = 3, seed: int = 2) -> np.ndarray:
    return (np.arange(n) * 7 + seed) % classes


def regressor(front: Front, *, width: int = 4, units: int = 2, hidden: int = 0, **compile_args):
    """Input(width) [→ Dense(hidden, tanh)] → Dense(units), SGD(0.1) and mse by default."""
    compile_args.setdefault("optimizer", "sgd_0.1")
    compile_args.setdefault("loss", "mse")
    with front.scope():
        layers = [keras.Input((width,))]
        if hidden:
            layers.append(keras.layers.Dense(hidden, activation="tanh", name="hidden"))
        layers.append(keras.layers.Dense(units, name="out"))
        model = keras.Sequential(layers, name="regressor")
        model.compile(**_optimizer(compile_args))
    return model


def classifier(front: Front, *, width: int = 4, classes: int = 3, **compile_args):
    """Input(width) → Dense(classes, softmax), sparse cross-entropy and accuracy by default."""
    compile_args.setdefault("optimizer", "sgd_0.1")
    compile_args.setdefault("loss", "sparse_categorical_crossentropy")
    compile_args.setdefault("metrics", ["accuracy"])
    with front.scope():
        model = keras.Sequential(
            [keras.Input((width,)), keras.layers.Dense(classes, activation="softmax", name="out")],
            name="classifier",
        )
        model.compile(**_optimizer(compile_args))
    return model


def _optimizer(compile_args: dict) -> dict:
    """Makes the optimizer and metrics inside the caller's scope, as tfdist requires.

    `optimizer="sgd_0.1"` means a fresh `SGD(0.1)`; a function as `optimizer` or
    `metrics` is called (`optimizer=lambda: keras.optimizers.Adam(0.05)`).
    """
    optimizer = compile_args.get("optimizer")
    if isinstance(optimizer, str) and optimizer.startswith("sgd_"):
        compile_args["optimizer"] = keras.optimizers.SGD(float(optimizer[4:]))
    elif callable(optimizer):
        compile_args["optimizer"] = optimizer()
    if callable(compile_args.get("metrics")):
        compile_args["metrics"] = compile_args["metrics"]()
    return compile_args


# ---------------------------------------------------------------------------------------
# Comparison.


@dataclasses.dataclass(frozen=True)
class Rules:
    rtol: float
    atol: float
    weights: bool  # compare `weights...` sections
    strict_batch_order: bool


SYNC_RULES = Rules(METRIC_RTOL, METRIC_ATOL, weights=True, strict_batch_order=True)
ASYNC_RULES = Rules(ASYNC_RTOL, ASYNC_ATOL, weights=False, strict_batch_order=False)


def rules_for(strategy: str) -> Rules:
    return ASYNC_RULES if strategy == "parameter_server" else SYNC_RULES


def check(case_: Case, strategy: str, expected: dict, got: dict) -> list[str]:
    """Every way `got` (tfdist under `strategy`) departs from `expected` (Keras)."""
    if "crashed" in expected:
        return [f"the oracle (Keras' own fit) crashed, the case is wrong: {expected['crashed']}"]
    if strategy == "parameter_server" and case_.parameter_server == "refused":
        return refusal_differences(got, case_)
    if "crashed" in got:
        crash = got["crashed"]
        return [f"tfdist raised {crash['type']}: {_first_line(crash['message'])}"]
    if case_.is_error_case:
        return error_differences(expected, got, case_.words)
    return differences(expected, got, rules_for(strategy))


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return (lines[0] if lines else "")[:300]


def _clean_error_problems(error: dict, words, what: str) -> list[str]:
    problems = []
    message = error["message"]
    if not error["config_error"]:
        problems.append(
            f"{what} raised {error['type']}, not tfdist.ConfigError: {_first_line(message)}"
        )
    if "\n" in message.strip():
        problems.append(f"{what}'s message is not one line: {message[:300]!r}")
    if words and not any(word.lower() in message.lower() for word in words):
        problems.append(f"{what}'s message names none of {list(words)}: {_first_line(message)}")
    return problems


def error_differences(expected: dict, got: dict, words) -> list[str]:
    """An error case: Keras raises; tfdist raises one clean one-line ConfigError."""
    if expected.get("raised") is None:
        return ["Keras itself did not raise: the case is wrong"]
    if got.get("raised") is None:
        return [f"tfdist did not raise where Keras raised {expected['raised']['type']}"]
    return _clean_error_problems(got["raised"], words, "tfdist")


def refusal_differences(got: dict, case_: Case) -> list[str]:
    """A documented refusal under parameter_server: one clean line naming the cause."""
    error = got.get("crashed") or got.get("raised")
    if error is None:
        return [f"tfdist ran it; expected the documented refusal ({case_.note})"]
    return _clean_error_problems(error, case_.words, "tfdist's refusal")


def differences(expected, got, rules: Rules, path: str = "") -> list[str]:
    out: list[str] = []
    _walk(expected, got, rules, path or "observation", out)
    return out


def _walk(expected, got, rules: Rules, path: str, out: list[str]) -> None:
    """Equal structure; floats within `rules`' tolerance; everything else exactly equal."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if sorted(expected) != sorted(got):
            out.append(f"{path}: keys differ: Keras {sorted(expected)}, tfdist {sorted(got)}")
        for key in expected:
            if key not in got:
                continue
            where = f"{path}.{key}"
            if key == "events":
                _events(expected[key], got[key], rules, where, out)
            elif key.startswith("weights"):
                if rules.weights:
                    exact = dataclasses.replace(rules, rtol=0.0, atol=WEIGHT_ATOL)
                    _walk(expected[key], got[key], exact, where, out)
            else:
                _walk(expected[key], got[key], rules, where, out)
        return
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            out.append(
                f"{path}: length differs: Keras {len(expected)} {_short(expected)}, "
                f"tfdist {len(got)} {_short(got)}"
            )
            return
        for index, (left, right) in enumerate(zip(expected, got, strict=True)):
            _walk(left, right, rules, f"{path}[{index}]", out)
        return
    if _is_number(expected) and _is_number(got):
        if isinstance(expected, int) and isinstance(got, int):
            same = expected == got
        elif math.isnan(expected) or math.isnan(got):
            same = math.isnan(expected) and math.isnan(got)
        else:
            same = abs(expected - got) <= max(rules.atol, rules.rtol * abs(expected))
        if not same:
            out.append(f"{path}: Keras {expected!r}, tfdist {got!r}")
        return
    if expected != got or type(expected) is not type(got):
        out.append(f"{path}: Keras {_short(expected)}, tfdist {_short(got)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _events(expected: list, got: list, rules: Rules, path: str, out: list[str]) -> None:
    """Hook sequences: the same hooks, indices and log keys; aggregate values close."""
    calls_expected = [(hook, index, sorted(logs)) for hook, index, logs in expected]
    calls_got = [(hook, index, sorted(logs)) for hook, index, logs in got]
    if rules.strict_batch_order:
        if calls_expected != calls_got:
            out.append(f"{path}: hooks differ: {_first_difference(calls_expected, calls_got)}")
            return
        pairs = list(zip(expected, got, strict=True))
    else:
        problems = batch_order_differences(calls_expected, calls_got)
        if problems:
            out.extend(f"{path}: {problem}" for problem in problems)
            return
        pairs = list(
            zip(_without_train_batches(expected), _without_train_batches(got), strict=True)
        )
    for position, ((hook, index, logs), (_, _, logs_got)) in enumerate(pairs):
        if hook in AGGREGATE_HOOKS:
            where = f"{path}[{position}] {hook}({'' if index is None else index})"
            _walk(logs, logs_got, rules, where, out)


def _first_difference(expected: list, got: list) -> str:
    for position, (left, right) in enumerate(zip(expected, got, strict=False)):
        if left != right:
            return f"call {position}: Keras {left}, tfdist {right}"
    shorter = min(len(expected), len(got))
    extra = expected[shorter : shorter + 3] if len(expected) > shorter else got[shorter:][:3]
    who = "Keras" if len(expected) > shorter else "tfdist"
    return (
        f"Keras made {len(expected)} calls, tfdist {len(got)}; from call {shorter} only "
        f"{who} has {extra}"
    )


def _without_train_batches(events: list) -> list:
    return [event for event in events if event[0] not in TRAIN_BATCH_HOOKS]


def batch_order_differences(expected: list, got: list) -> list[str]:
    """parameter_server's documented order of the training batch hooks (not Keras').

    The coordinator schedules a run of steps before their results come in, so within
    the training batch hooks between two other hooks, `on_train_batch_begin` calls may
    come before earlier steps' `on_train_batch_end` calls. What must hold: every other
    hook exactly as Keras calls it; in each run of training batch hooks, the same begin
    indices and the same end indices as Keras, each kind in ascending order, with its
    logs' keys; and each end after the begin of its own execution.
    """
    problems = []
    if _without_train_batches(expected) != _without_train_batches(got):
        return [
            "hooks other than the training batch hooks differ: "
            + _first_difference(_without_train_batches(expected), _without_train_batches(got))
        ]
    runs_expected, runs_got = _train_batch_runs(expected), _train_batch_runs(got)
    for number, (run_expected, run_got) in enumerate(zip(runs_expected, runs_got, strict=False)):
        for hook in TRAIN_BATCH_HOOKS:
            want = [(index, keys) for name, index, keys in run_expected if name == hook]
            have = [(index, keys) for name, index, keys in run_got if name == hook]
            if want != have:
                problems.append(f"training batch run {number}: {hook}: Keras {want}, tfdist {have}")
        begun = set()
        begins = sorted(index for name, index, _ in run_expected if name == TRAIN_BATCH_HOOKS[0])
        for name, index, _ in run_got:
            if name == TRAIN_BATCH_HOOKS[0]:
                begun.add(index)
                continue
            own = max((begin for begin in begins if begin <= index), default=None)
            if own not in begun:
                problems.append(
                    f"training batch run {number}: train_batch_end({index}) before "
                    f"train_batch_begin({own})"
                )
    return problems


def _train_batch_runs(events: list) -> list[list]:
    runs, current = [], None
    for event in events:
        if event[0] in TRAIN_BATCH_HOOKS:
            if current is None:
                current = []
                runs.append(current)
            current.append(event)
        else:
            current = None
    return runs
