"""The Keras conformance suite's setup: two logical CPUs before TensorFlow starts.

``mirrored`` runs in the pytest process on two logical CPU devices, which must be
configured before anything initialises TensorFlow's runtime, so this runs at
collection (as ``tests/tfdist/conftest.py`` does; whichever conftest comes first
configures them, the same way). The cluster strategies run in their own processes
(``test_cluster_conformance.py``, marked ``e2e``): when only this folder's tests are
selected (``pytest tests/keras_conformance``), they start at the end of collection
and run beside the in-process tests, which keep about one of the 2 cores busy; in a
run of the whole repository they start with their first test instead, so as not to
load other folders' tests.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # Already started by another folder's tests: they configure the same.
    pass


def pytest_collection_finish(session):
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [str(item.path) for item in session.items]
    wants_clusters = any(path.endswith("test_cluster_conformance.py") for path in paths)
    alone = all(path.startswith(here + os.sep) for path in paths)
    if wants_clusters and alone and not session.config.option.collectonly:
        from clusters import EARLY_START, Clusters

        clusters = Clusters()
        session.config.stash[EARLY_START] = clusters
        session.config.add_cleanup(clusters.stop)
