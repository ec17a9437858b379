"""Serving the script's batches from the chief, in one process: two readers stand for two
parameter-server workers reading one job (the e2e test runs real workers)."""

import collections
import os
import socket
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdist.config import ConfigError
from tfdist.data.chief_service import (
    READER_BUFFER,
    ChiefService,
    is_script_batches,
    script_batches,
    serve_from_chief,
)

# A reader holds at most this many batches ahead of what it has read (measured: 3 with
# one request in flight), so two readers leave at most twice that unread.
AHEAD = 3 * READER_BUFFER


def numbered(n, batch):
    """Batches of the ids 0..n-1: `(ids as a column, ids)`, the last one partial."""
    ids = tf.data.Dataset.range(n)
    return ids.map(lambda i: (tf.cast(i, tf.float32)[None], i)).batch(batch)


def ids_of(batch):
    return tuple(int(i) for i in batch[1].numpy())


def read_in_turn(readers, count=None):
    """Batches read from the readers in turn (`count`, or until all end); each one's ids."""
    got, live, read = [[] for _ in readers], list(range(len(readers))), 0
    while live and (count is None or read < count):
        k = live[read % len(live)]
        batch = next(readers[k], None)
        if batch is None:
            live.remove(k)
            continue
        got[k].append(ids_of(batch))
        read += 1
    return got


class Passes(keras.utils.PyDataset):
    """3 batches of 4 ids; counts `on_epoch_end`."""

    def __init__(self):
        super().__init__()
        self.epochs_ended = 0

    def __len__(self):
        return 3

    def __getitem__(self, index):
        ids = np.arange(index * 4, index * 4 + 4)
        return ids[:, None].astype(np.float32), ids

    def on_epoch_end(self):
        self.epochs_ended += 1


def counting(n, batch):
    for start in range(0, n, batch):
        ids = np.arange(start, min(start + batch, n))
        yield ids[:, None].astype(np.float32), ids


def test_what_is_served_and_how_it_is_counted():
    assert all(is_script_batches(v) for v in (numbered(5, 2), Passes(), counting(4, 2)))
    assert not is_script_batches(np.zeros(3))

    finite = script_batches(numbered(10, 4))
    assert (finite.num_batches, finite.infinite, finite.batch_size) == (3, False, 4)
    assert finite.what == "x (a tf.data.Dataset)"
    endless = script_batches(numbered(10, 4).repeat())
    assert (endless.num_batches, endless.infinite) == (None, True)
    py = script_batches(Passes(), what="validation_data")
    assert (py.num_batches, py.batch_size, py.what) == (3, 4, "validation_data (a PyDataset)")
    generated = script_batches(counting(10, 4))
    assert (generated.num_batches, generated.infinite, generated.batch_size) == (None, False, 4)
    # The batch read to learn its size is served, not lost.
    assert [ids_of(b) for b in generated.dataset] == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]


@pytest.mark.parametrize(
    "value, message",
    [
        (iter(()), "is not a tf.data.Dataset, a keras.utils.PyDataset or a generator"),
        ((x for x in ()), r"x \(a generator\) yields no batch"),
        ([1, 2], r"x \(list\) is not a tf.data.Dataset.*NumPy arrays as x= and y="),
    ],
)
def test_what_cannot_be_served_is_one_line(value, message):
    with pytest.raises(ConfigError, match=message) as raised:
        script_batches(value)
    assert "\n" not in str(raised.value)


def test_each_batch_goes_to_one_reader_once_and_the_partial_batch_stays():
    with serve_from_chief(counting(50, 4)) as served:  # A generator: one pass, then the end.
        got = read_in_turn([iter(served.dataset_fn()), iter(served.dataset_fn())])
    batches = sorted(got[0] + got[1])
    assert batches == sorted(tuple(range(s, min(s + 4, 50))) for s in range(0, 50, 4))
    assert got[0] and got[1] and (48, 49) in batches  # Both read; the last batch as it was.


def test_a_finite_dataset_is_served_pass_after_pass():
    passes = 4
    with serve_from_chief(numbered(10, 4)) as served:
        readers = [iter(served.dataset_fn()), iter(served.dataset_fn())]
        got = read_in_turn(readers, passes * 3)
    counts = collections.Counter(got[0] + got[1])
    assert set(counts) == {(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)}  # Whole batches, as made.
    # Each pass once: only the batches the readers still hold ahead are read a pass later.
    assert sum(abs(c - passes) for c in counts.values()) <= 2 * AHEAD


def test_an_infinite_dataset_is_read_once_in_order_between_the_readers():
    endless = numbered(10**9, 2)
    with serve_from_chief(endless) as served:
        readers = [iter(served.dataset_fn()), iter(served.dataset_fn())]
        got = read_in_turn(readers, 40)
    firsts = sorted(batch[0] for batch in got[0] + got[1])
    assert len(set(firsts)) == 40  # No batch twice.
    assert firsts[-1] // 2 < 40 + 2 * AHEAD  # Only the batches held ahead are skipped.


def test_a_pydataset_restarts_each_pass_after_on_epoch_end():
    source = Passes()
    with serve_from_chief(source) as served:
        reader = iter(served.dataset_fn())
        firsts = [ids_of(next(reader))[0] for _ in range(7)]
    assert firsts == [0, 4, 8, 0, 4, 8, 0]
    assert source.epochs_ended >= 2


def test_dict_features_and_text_vectorization_are_served():
    texts = np.array(["the cat sat", "a dog ran", "the dog sat down", "a cat"] * 4)
    vectorize = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorize.adapt(texts)
    dataset = (
        tf.data.Dataset.from_tensor_slices(({"text": texts, "n": np.arange(16)}, np.arange(16)))
        .batch(8)
        .map(lambda x, y: ({"tokens": vectorize(x["text"]), "n": x["n"]}, y))
    )
    with serve_from_chief(dataset) as served:
        features, labels = next(iter(served.dataset_fn()))
    assert features["tokens"].shape == (8, 4) and features["tokens"].dtype == tf.int64
    np.testing.assert_array_equal(features["tokens"], vectorize(texts[:8]))


def test_text_dataset_from_directory_is_served(tmp_path):
    for label in ("neg", "pos"):
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"{i}.txt").write_text(f"{label} review {i}")
    dataset = keras.utils.text_dataset_from_directory(tmp_path, batch_size=4, verbose=False)
    with serve_from_chief(dataset) as served:
        texts, labels = next(iter(served.dataset_fn()))
    assert texts.dtype == tf.string and len(labels) == 4


def test_the_worker_function_captures_no_dataset_of_this_process():
    """Why a script's dataset fails to ship ("Unable to parse tensor proto"), and why this
    one does not: tracing captures the live dataset as a DT_VARIANT, which TensorFlow
    cannot encode; the served function captures only strings."""
    made_here = numbered(10, 4)
    shipped = tf.function(lambda: made_here).get_concrete_function()
    assert [t.dtype for t in shipped.graph.external_captures] == [tf.variant]
    encoded = tf.io.serialize_tensor(made_here._variant_tensor)
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_tensor(encoded, tf.variant)
    with serve_from_chief(made_here) as served:
        traced = tf.function(served.per_worker_fn).get_concrete_function()
    assert not [t for t in traced.graph.external_captures if t.dtype in (tf.variant, tf.resource)]


def listens(address):
    host, _, port = address[len("grpc://") :].rpartition(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def threads():
    return len(os.listdir("/proc/self/task"))


def test_close_frees_ports_and_threads_even_with_python_running_and_readers_left():
    """A PyDataset, a generator and a `py_function` run Python inside the data worker;
    stopping it naively deadlocks (TensorFlow stops it holding the GIL)."""
    sources = [
        Passes,
        lambda: counting(10**6, 4),
        lambda: numbered(10, 2).map(lambda x, y: (x, tf.py_function(lambda v: v, [y], tf.int64))),
    ]
    after = []
    for make in sources * 3:
        served = ChiefService(script_batches(make()))
        reader = iter(served.dataset_fn())
        next(reader)  # The reader stays, holding batches, as a worker's does after a fit.
        assert listens(served.address)
        served.close()
        assert not listens(served.address)
        del reader
        after.append(threads())
    # A leaked data worker and dispatcher would add about 17 threads each round, and stay.
    # Threads of the last close may still be ending (measured: 5 more, once): they get up
    # to 10 s to end; held threads would not.
    limit = max(after[:3]) + 2
    deadline = time.monotonic() + 10
    while threads() > limit and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threads() <= limit, (after, threads())


def test_a_graph_over_2_gib_is_one_line_not_an_abort(monkeypatch):
    monkeypatch.setattr(
        tf.data.Dataset, "_as_serialized_graph", lambda self, **_: tf.constant(b"")
    )  # What TensorFlow returns for such a graph (measured with a 2.24 GB array).
    with pytest.raises(ConfigError, match=r"x \(a tf.data.Dataset\) holds more than 2 GiB"):
        serve_from_chief(numbered(4, 2))
