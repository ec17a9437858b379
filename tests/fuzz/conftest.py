"""Fixtures of the fuzz tests: the trainer's absl flags reset around in-process CLI calls."""

import pytest
from absl import flags


@pytest.fixture
def fresh_flags(monkeypatch):
    """The absl flags unparsed and TF_CONFIG unset; a test resets them per example too."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    flags.FLAGS.unparse_flags()
    yield
    flags.FLAGS.unparse_flags()
