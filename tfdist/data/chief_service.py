"""Batches the script built, served to parameter-server workers from the chief.

Owns feeding `ClusterCoordinator.create_per_worker_dataset` from data that lives in the
coordinator's (chief's) process: a batched `tf.data.Dataset` the script made (a `map`, a
`TextVectorization` layer, dict features, `text_dataset_from_directory`; finite,
`.repeat()`ed or infinite), or a `keras.utils.PyDataset` or Python generator, turned into
one by Keras' own adapters (`script_batches`). Such data cannot be shipped to the workers
as a dataset function: tracing the function captures the coordinator's live dataset, a
DT_VARIANT tensor that TensorFlow cannot encode ("Unable to parse tensor proto"), and a
PyDataset or generator runs Python (`py_function`) that exists only in this process.

So `ChiefService` runs a tf.data service dispatcher and one data worker inside the
chief's process, registers the dataset there (it runs in the chief, next to its Python),
and gives the dataset function every worker runs: one shared job read with
`from_dataset_id`. One data worker produces each batch once, and the job hands it to
whichever worker asks first, so each batch of a pass goes to exactly one worker, as it
is (the last partial batch kept). A finite dataset is served pass after pass (a
PyDataset's `on_epoch_end` called between passes); an infinite one as it comes; a
generator once, as Keras reads it. `close` (or leaving its `with`) stops both servers.

How many steps an epoch has and what to do with validation data are the front door's
(`tfdist.training.chief_inputs`); the tf.data service of a whole run, with data workers
of its own, is `tfdist.data.service`'s.
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from tfdist.config import ConfigError
from tfdist.data.keras_inputs import dataset_batch_size

# Requests each reader (a worker) keeps in flight. With 1, a reader holds at most 3
# batches ahead of the one it reads (measured), so an epoch's steps read their pass give or
# take that many batches per worker; TensorFlow's default (autotuned) held 18.
READER_BUFFER = 1
_JOBS = itertools.count()
_HEARTBEAT_MS = 100  # The data worker learns of a finished task this often.
_CLOSE_SECONDS = 60.0
_KEPT: list = []  # Data workers that could not be stopped safely (see ChiefService.close).


def _keep_forever(worker: Any) -> None:
    """Keeps `worker` alive to the very end of the process, past interpreter shutdown.

    A list alone is not enough: shutdown clears module globals, and the worker's
    `__del__` then stops it while holding the GIL, waiting on Python that can no longer
    run, so the process never exits. One reference the interpreter does not own means
    `__del__` never runs; the process's exit ends the server.
    """
    _KEPT.append(worker)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(worker))


DATASET = "a tf.data.Dataset"


@dataclasses.dataclass(frozen=True)
class ScriptBatches:
    """A script's batches as one coordinator-side `tf.data.Dataset`.

    Attributes:
      dataset: one pass of the batches, each as the script made it (the coordinator may
        read it itself, e.g. for validation).
      stream: what the service serves: pass after pass of a finite dataset (a
        PyDataset's `on_epoch_end` called between passes, as Keras does between
        epochs), an infinite one as it comes, a generator once (it cannot restart).
      kind: what the script gave: `a tf.data.Dataset`, `a PyDataset` or `a generator`.
      name: the argument it came in, for messages (`x`, `validation_data`).
      num_batches: batches in one pass; None when infinite or not known without reading.
      infinite: whether the batches never end (`.repeat()`, an infinite PyDataset).
      batch_size: the first batch's size where known, else None.
    """

    dataset: tf.data.Dataset
    stream: tf.data.Dataset
    kind: str
    name: str
    num_batches: int | None
    infinite: bool
    batch_size: int | None = None

    @property
    def what(self) -> str:
        """The source in messages: `x (a PyDataset)`."""
        return f"{self.name} ({self.kind})"


def is_script_batches(value: object) -> bool:
    """Whether `value` is a `tf.data.Dataset`, a `keras.utils.PyDataset` or a generator."""
    import keras

    return isinstance(value, (tf.data.Dataset, keras.utils.PyDataset, types.GeneratorType))


def script_batches(value: Any, *, what: str = "x") -> ScriptBatches:
    """`value` (a batched dataset, a PyDataset or a generator) as `ScriptBatches`.

    A PyDataset or generator goes through Keras' own adapters
    (`keras.src.trainers.data_adapters`), which infer the element spec from its first
    batches and standardise each batch to `(x,)`, `(x, y)` or `(x, y, sample_weight)`.
    """
    import keras
    from keras.src.trainers.data_adapters.generator_data_adapter import GeneratorDataAdapter
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    if isinstance(value, tf.data.Dataset):
        cardinality = int(value.cardinality())
        infinite = cardinality == tf.data.INFINITE_CARDINALITY
        return ScriptBatches(
            value,
            value if infinite else value.repeat(),  # Unknown cardinality: repeat is harmless.
            kind=DATASET,
            name=what,
            num_batches=cardinality if cardinality >= 0 else None,
            infinite=infinite,
            batch_size=dataset_batch_size(value),
        )
    if isinstance(value, keras.utils.PyDataset):
        adapter = PyDatasetAdapter(value, shuffle=False)
        try:
            dataset = adapter.get_tf_dataset()
        except ValueError as error:  # "The PyDataset has length 0", a malformed batch.
            raise ConfigError(f"{what} (a PyDataset) cannot be read: {error}") from None
        count = adapter.num_batches
        return ScriptBatches(
            dataset,
            dataset if count is None else _passes(adapter, dataset.element_spec),
            kind="a PyDataset",
            name=what,
            num_batches=count,
            infinite=count is None,
            batch_size=_leading_size(value[0]),
        )
    if isinstance(value, types.GeneratorType):
        first = next(value, None)
        if first is None:
            raise ConfigError(f"{what} (a generator) yields no batch; it must yield at least one.")
        try:
            adapter = GeneratorDataAdapter(itertools.chain([first], value))
            dataset = adapter.get_tf_dataset()
        except ValueError as error:  # Not a tuple, an empty generator.
            raise ConfigError(f"{what} (a generator) cannot be read: {error}") from None
        return ScriptBatches(
            dataset,
            dataset,
            kind="a generator",
            name=what,
            num_batches=None,
            infinite=False,
            batch_size=_leading_size(first),
        )
    raise ConfigError(
        f"{what} ({type(value).__name__}) is not a tf.data.Dataset, a keras.utils.PyDataset "
        "or a generator; pass one of those, or NumPy arrays as x= and y=."
    )


class _Gate:
    """Ends the served stream when closed (`take_while` asks it before each batch)."""

    def __init__(self) -> None:
        self.is_open = True

    def _ask(self) -> np.ndarray:
        return np.array(self.is_open)

    def predicate(self, *element: Any) -> tf.Tensor:
        del element
        return tf.reshape(tf.numpy_function(self._ask, [], tf.bool, stateful=True), [])


def _check_graph_size(stream: tf.data.Dataset, what: str) -> None:
    """Registering a dataset sends its graph; one over protobuf's 2 GiB aborts the process.

    TensorFlow serialises such a graph to an empty string (measured: a 2.24 GB
    `from_tensor_slices` array), so that is the test.
    """
    graph = stream._as_serialized_graph(strip_device_assignment=True)
    if int(tf.strings.length(graph)) == 0:
        raise ConfigError(
            f"{what} holds more than 2 GiB of tensors in its graph (arrays given to "
            "from_tensor_slices or from_tensors), too much to register with the tf.data "
            "service; write the data to files (e.g. TFRecord) and build the dataset from "
            "them instead."
        )


def _read_to_end(dataset: tf.data.Dataset, deadline: float) -> bool:
    """Reads `dataset` to its end in a thread; whether it ended before `deadline`."""
    ended = threading.Event()

    def read() -> None:
        for _ in dataset:
            pass
        ended.set()

    threading.Thread(target=read, name="tfdist-chief-service-drain", daemon=True).start()
    return ended.wait(max(0.0, deadline - time.monotonic()))


def _passes(adapter: Any, spec: Any) -> tf.data.Dataset:
    """A finite PyDataset's passes one after another, `on_epoch_end` after each."""

    def passes() -> Iterator[Any]:
        while True:
            yield from adapter.get_numpy_iterator()
            adapter.on_epoch_end()

    return tf.data.Dataset.from_generator(passes, output_signature=spec).prefetch(tf.data.AUTOTUNE)


def _leading_size(batch: Any) -> int | None:
    for leaf in tf.nest.flatten(batch):
        shape = getattr(leaf, "shape", None)
        if shape is not None and len(shape) > 0 and shape[0] is not None:
            return int(shape[0])
    return None


class ChiefService:
    """A dispatcher and one data worker in this (the chief's) process, serving `batches`.

    Each parameter-server worker reads the dataset function (`per_worker_fn` for
    `ClusterCoordinator.create_per_worker_dataset`, or `dataset_fn` as a `DatasetFn`)
    from one shared job, so each batch goes to exactly one worker per pass. Use it as a
    context manager, or call `close`, when the fit ends.

    Args:
      batches: from `script_batches`.
      host: the name the workers reach this process by; the chief's host in the cluster
        (a local cluster's is `localhost`). The servers take free ports; TensorFlow binds
        them on every interface, as it does the cluster's own servers.
    """

    def __init__(self, batches: ScriptBatches, *, host: str = "localhost"):
        service = tf.data.experimental.service
        self.batches = batches
        self._gate = _Gate()
        stream = batches.stream.take_while(self._gate.predicate)
        _check_graph_size(stream, batches.what)
        self.element_spec = stream.element_spec
        self.job_name = f"tfdist-chief-{os.getpid()}-{next(_JOBS)}"
        self._closed = False
        self._dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
        port = self._dispatcher.target.rpartition(":")[2]
        self.address = f"grpc://{host}:{port}"
        try:
            self._worker = service.WorkerServer(
                service.WorkerConfig(
                    dispatcher_address=f"localhost:{port}",
                    worker_address=f"{host}:%port%",
                    heartbeat_interval_ms=_HEARTBEAT_MS,
                )
            )
            # Elements travel uncompressed: compressing on loopback costs the chief's CPU.
            self._dataset_id = service.register_dataset(self.address, stream, compression=None)
        except BaseException:
            self._dispatcher._stop()  # Nothing registered yet: stopping cannot wait on Python.
            raise

    def dataset_fn(self, context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """The dataset a worker reads: the shared job's next batches, as they come."""
        del context  # The job splits the batches; every worker reads it alike.
        return tf.data.experimental.service.from_dataset_id(
            processing_mode=tf.data.experimental.service.ShardingPolicy.OFF,
            service=self.address,
            dataset_id=self._dataset_id,
            element_spec=self.element_spec,
            job_name=self.job_name,
            max_outstanding_requests=READER_BUFFER,
        )

    def per_worker_fn(self) -> tf.data.Dataset:
        """What `ClusterCoordinator.create_per_worker_dataset` takes."""
        return self.dataset_fn()

    def close(self, timeout: float = _CLOSE_SECONDS) -> None:
        """Ends the job, then stops the data worker and the dispatcher (ports, threads).

        TensorFlow's `WorkerServer` stops while holding Python's lock (GIL), and stopping
        it destroys its tasks' iterators: any Python of the dataset still running or
        finalised then (a PyDataset, a generator, a `py_function`) would wait for that
        lock forever. So the gate ends the stream first, this process reads the job to
        its end, and the worker is stopped once it has dropped the finished task.
        """
        if self._closed:
            return
        self._closed = True
        self._gate.is_open = False
        deadline = time.monotonic() + timeout
        if _read_to_end(self.dataset_fn(), deadline) and self._worker_idle(deadline):
            self._worker._stop()
        else:
            _keep_forever(self._worker)
            logging.warning(
                "%s did not end within %.0f s of the fit's end; its tf.data data worker "
                "keeps running until this process exits.",
                self.batches.what,
                timeout,
            )
        self._dispatcher._stop()

    def _worker_idle(self, deadline: float) -> bool:
        while self._worker._num_tasks():
            if time.monotonic() > deadline:
                return False
            time.sleep(_HEARTBEAT_MS / 1000)
        return True

    def __enter__(self) -> ChiefService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_from_chief(value: Any, *, host: str = "localhost", what: str = "x") -> ChiefService:
    """`value` (a batched dataset, a PyDataset or a generator) served from this process.

    The one call a front door makes under `parameter_server`; see `ChiefService`.
    """
    return ChiefService(script_batches(value, what=what), host=host)
