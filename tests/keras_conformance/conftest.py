"""The Keras conformance suite's setup: two logical CPUs before TensorFlow starts, and
the clusters started beside the in-process tests.

``mirrored`` runs in the pytest process on two logical CPU devices, which must be
configured before anything initialises TensorFlow's runtime, so this runs at
collection (as ``tests/tfdist/conftest.py`` does; whichever conftest comes first
configures them, the same way).

The cluster strategies run in their own processes (``test_multi_process_conformance.py``).
When its tests are selected, the first test of this folder starts both clusters
(``clusters.Clusters``) and they run while the in-process tests
(``test_in_process_conformance.py``, which come first) keep about one of the 2 cores
busy; the cluster tests then only wait for what is left. Other folders' tests, which
run before this one, are not loaded by them. Under pytest-xdist (CI's e2e stage) the
cluster tests' own fixture starts them instead, beside the other worker's tests.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # Already started by another folder's tests: they configure the same.
    pass

MULTI_PROCESS_TESTS = "test_multi_process_conformance.py"


@pytest.fixture(scope="session", autouse=True)
def clusters_beside_this_folder(request):
    """Starts the clusters at this folder's first test when their tests will run."""
    items = request.session.items
    # Under pytest-xdist (`--dist loadfile`) the cluster tests may run on another worker,
    # beside whatever that worker runs; they start their clusters themselves.
    distributed = os.environ.get("PYTEST_XDIST_WORKER") is not None
    if (
        request.config.option.collectonly
        or distributed
        or not any(str(item.path).endswith(MULTI_PROCESS_TESTS) for item in items)
    ):
        yield
        return
    from clusters import EARLY_START, Clusters

    clusters = Clusters()
    request.config.stash[EARLY_START] = clusters
    yield
    clusters.stop()
