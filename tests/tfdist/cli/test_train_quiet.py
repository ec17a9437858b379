"""Quiet by default: the tf.data options UserWarning TensorFlow raises when the trainer
iterates a dataset inside a traced function (mirrored validation does) is filtered by the
CLI, and shown with --verbose. The launched-cluster noise lines: tests/e2e/test_quiet_e2e.py."""

import warnings

import pytest

from launch.noise import TF_DATA_OPTIONS_WARNING
from tfdist.cli import train

pytestmark = pytest.mark.usefixtures("fresh_flags")


def _options_warnings(*args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exited:
            train.main(
                ["tfdist.train", "--strategy=mirrored", "--epochs=1", "--steps_per_epoch=2", *args]
            )
    assert exited.value.code == 0
    return [w for w in caught if str(w.message).startswith(TF_DATA_OPTIONS_WARNING)]


def test_tf_data_options_warning_is_filtered_unless_verbose():
    assert _options_warnings() == []
    # The control: the same run does raise it (if TensorFlow or the trainer stop raising
    # it, the CLI's filter can go).
    assert _options_warnings("--verbose")
