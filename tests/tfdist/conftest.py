"""Shared test setup: two logical CPU devices before TensorFlow starts.

Unit tests share one TensorFlow process; ``mirrored`` needs its two CPU replicas
configured before anything initialises the runtime, so this runs at collection.
End-to-end tests start their own processes and are marked ``e2e``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf
from absl import flags

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture
def fresh_flags(monkeypatch):
    """The absl flags unparsed and TF_CONFIG unset, for tests that call the CLI in-process."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    flags.FLAGS.unparse_flags()
    yield
    flags.FLAGS.unparse_flags()
