"""PreemptionWatcher in one process: a real SIGTERM to this process sets the flag, which
``agree()`` reports, alone or summed over two replicas; the previous handler comes back."""

import os
import signal
import threading

import pytest

from tfdist.distribute.strategies import make_strategy
from tfdist.training.preemption import Preempted, PreemptionWatcher


@pytest.fixture
def outer_handler():
    """A SIGTERM handler of the test's own, so a stray signal cannot end the test run."""
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGTERM, previous)


def _sigterm_self():
    os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next bytecode.


@pytest.mark.parametrize("kind, sync", [("one_device", False), ("mirrored", True)])
def test_sigterm_sets_the_flag_and_agreed_reports_it(kind, sync, outer_handler):
    watcher = PreemptionWatcher(make_strategy(kind).strategy, sync_workers=sync)

    with watcher:
        assert watcher.agree() == (False, False)
        _sigterm_self()
        assert watcher.agree() == (True, False)
        assert watcher.agree() == (True, False)  # It stays set: every later check says stop.

    assert outer_handler == []  # The watcher's handler took the signal, not ours.


def test_the_previous_handler_is_back_after_the_run(outer_handler):
    watcher = PreemptionWatcher(make_strategy("one_device").strategy, sync_workers=False)

    with watcher:
        pass
    _sigterm_self()

    assert outer_handler == [signal.SIGTERM] and watcher.agree() == (False, False)


def test_outside_the_main_thread_no_handler_is_installed(outer_handler):
    watcher = PreemptionWatcher(make_strategy("one_device").strategy, sync_workers=False)
    entered = threading.Thread(target=lambda: watcher.__enter__())
    entered.start()
    entered.join()

    _sigterm_self()
    watcher.__exit__(None, None, None)

    assert outer_handler == [signal.SIGTERM] and watcher.agree() == (False, False)


@pytest.mark.parametrize("kind, sync", [("one_device", False), ("mirrored", True)])
def test_a_stop_asked_is_agreed_with_the_preemption_flag(kind, sync):
    watcher = PreemptionWatcher(make_strategy(kind).strategy, sync_workers=sync)
    assert watcher.agree(stop=True) == (False, True)
    assert watcher.agree(stop=False) == (False, False)


def test_preempted_says_where_it_saved_and_how_to_resume():
    assert str(Preempted(40, "/m/checkpoints/ckpt-40")) == (
        "preempted (SIGTERM) at step 40: saved checkpoint /m/checkpoints/ckpt-40; rerun the "
        "same command to resume."
    )
    assert "no model_dir, nothing saved" in str(Preempted(3, None))
