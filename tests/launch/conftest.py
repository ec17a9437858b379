"""The launcher's tests keep the log directories it makes (`launch.task_logs`) in tmp_path."""

import tempfile

import pytest


@pytest.fixture(autouse=True)
def _temp_dir_in_tmp_path(monkeypatch, tmp_path):
    """A launch without a log directory makes a fresh one under the test's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
