"""The tf.data service in one process: each example once per pass, split between readers."""

import collections
import json

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from launch.tf_config import ClusterConfig, TaskSpec
from tfdist.cli import train
from tfdist.config import ConfigError
from tfdist.data.pipeline import make_dataset_fn, numpy_source
from tfdist.data.service import (
    LocalService,
    ServiceTarget,
    job_name_for,
    normalize_address,
    service_target,
)


@pytest.fixture(scope="module")
def service():
    local = LocalService(num_workers=2)
    yield local
    local.stop()


def _read_interleaved(iterators):
    """Reads the iterators in turn until all are exhausted; each one's ids."""
    got, live = [[] for _ in iterators], set(range(len(iterators)))
    while live:
        for k in sorted(live):
            try:
                got[k].extend(int(i) for i in next(iterators[k])[0].numpy()[:, 0])
            except StopIteration:
                live.discard(k)
    return got


def test_one_pass_through_the_service_is_exactly_once(service):
    ids = np.arange(20000)  # 79 served elements of 256 examples: more than a reader buffers.
    source = numpy_source(ids[:, None].astype(np.float32), ids % 5)
    fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=10,
        training=False,
        data_service=ServiceTarget(service.address, "one-pass"),
    )
    readers = [iter(fn(tf.distribute.InputContext(2, p, 2))) for p in range(2)]
    got = _read_interleaved(readers)
    assert sorted(got[0] + got[1]) == list(ids) and got[0] and got[1]


def test_training_through_the_service_repeats_passes(service):
    ids = np.arange(120)
    source = numpy_source(ids[:, None].astype(np.float32), ids % 5)
    fn = make_dataset_fn(
        source,
        "train",
        global_batch_size=12,
        training=True,
        data_service=ServiceTarget(service.address, "training"),
    )
    batches = iter(fn(None))
    seen = [int(i) for _ in range(30) for i in next(batches)[0].numpy()[:, 0]]
    counts = collections.Counter(seen)  # Three passes' worth, from two data workers that
    assert set(counts) == set(ids)  # may be a little apart in their passes.
    assert max(counts.values()) - min(counts.values()) <= 2
    assert seen[:120] != seen[120:240]


def test_service_settings():
    assert normalize_address("node1:5050") == "grpc://node1:5050"
    with pytest.raises(
        ConfigError,
        match=r"data_service_address \('node1'\) must be the "
        r"dispatcher as HOST:PORT",
    ):
        normalize_address("node1")
    cluster = ClusterConfig(
        jobs={"worker": ("localhost:1", "localhost:2")}, task=TaskSpec("worker", 1)
    )
    other = ClusterConfig(
        jobs={"worker": ("localhost:1", "localhost:2")}, task=TaskSpec("worker", 0)
    )
    assert job_name_for(cluster) == job_name_for(other)  # Every task of a run: one job.
    with pytest.raises(
        ConfigError,
        match=r"data_service needs the dispatcher of a running "
        r"service when TF_CONFIG is set",
    ):
        service_target(address=None, local_workers=1, cluster=cluster)
    target, local = service_target(address="h:1", local_workers=1, cluster=cluster)
    assert target.address == "grpc://h:1" and local is None


def test_single_process_cli_starts_its_own_service(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    flags.FLAGS.unparse_flags()
    metrics = tmp_path / "metrics.json"
    try:
        with pytest.raises(SystemExit) as exited:
            train.main(
                [
                    "tfdist.train",
                    "--strategy=one_device",
                    "--data_service",
                    "--epochs=2",
                    "--steps_per_epoch=10",
                    f"--metrics_json={metrics}",
                ]
            )
    finally:
        flags.FLAGS.unparse_flags()
    assert exited.value.code == 0
    summary = json.loads(metrics.read_text())
    assert summary["data_service"].startswith("grpc://localhost:") and summary["steps"] == 20
