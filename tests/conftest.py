"""The whole suite in two stages: unit tests first, then the ``e2e`` ones.

``python -m pytest`` runs everything, but a broken unit test should fail in the
first minute, not after ten minutes of end-to-end runs. So the collected tests are
reordered, stably, with every ``e2e``-marked test (tests/e2e marks its own in its
conftest, tests/notebooks with ``pytestmark``) after all others. ``.ci/run`` runs
the same two stages as two commands (``-m "not e2e"``, then ``-m e2e``).

"""

import pytest


@pytest.hookimpl(trylast=True)  # After the folders' own hooks have added their markers.
def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
