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


def test_preempted_by_ctrl_c_says_interrupted_and_exits_like_the_shell():
    stop = Preempted(12, "/m/checkpoints/ckpt-12", signal.SIGINT)

    assert str(stop) == (
        "interrupted (SIGINT) at step 12: saved checkpoint /m/checkpoints/ckpt-12; rerun the "
        "same command to resume."
    )
    assert isinstance(stop, SystemExit) and stop.code == 130
    assert Preempted(3, None).code == 128 + signal.SIGTERM


@pytest.fixture
def outer_sigint():
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGINT, previous)


def test_the_first_ctrl_c_is_a_preemption_named_sigint(outer_sigint):
    watcher = PreemptionWatcher(make_strategy("one_device").strategy, sync_workers=False)

    with watcher:
        assert watcher.agree() == (False, False)
        os.kill(os.getpid(), signal.SIGINT)  # No KeyboardInterrupt: the flag is set.
        assert watcher.agree() == (True, False)
        assert watcher.signum == signal.SIGINT

    assert outer_sigint == []
    os.kill(os.getpid(), signal.SIGINT)
    assert outer_sigint == [signal.SIGINT]  # The previous handler is back.


_TWICE = """
import os, signal, sys
from tfdist.distribute.strategies import make_strategy
from tfdist.training.preemption import PreemptionWatcher
with PreemptionWatcher(make_strategy("one_device").strategy, sync_workers=False) as watcher:
    os.kill(os.getpid(), signal.SIGINT)
    print("first: saving at the next step", watcher.agree(), flush=True)
    os.kill(os.getpid(), signal.SIGINT)
    print("still running after the second Ctrl-C", flush=True)
"""


def test_a_second_ctrl_c_ends_the_process_at_once_without_a_traceback():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _TWICE],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )

    assert done.returncode == -signal.SIGINT, done.stderr[-2000:]
    assert "first: saving at the next step (True, False)" in done.stdout
    assert "still running" not in done.stdout
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr


def test_an_uncaught_preempted_ends_a_script_with_its_code_and_no_traceback():
    import subprocess
    import sys

    script = "from tfdist.training.preemption import Preempted; raise Preempted(7, None, 2)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)

    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_process_forked_during_the_fit_gets_the_handlers_from_before(outer_handler):
    """A PyDataset's worker pool forks during the fit: its workers must end on SIGTERM as
    they would without the watcher (Pool.terminate), whichever of their threads the signal
    reaches, so they carry the handler from before, not the watcher's."""
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatcher(make_strategy("one_device").strategy, sync_workers=False):
        assert signal.getsignal(signal.SIGTERM) is not before
        pid = os.fork()
        if pid == 0:  # The child: exit 0 if SIGTERM's handler is the one from before.
            os._exit(0 if signal.getsignal(signal.SIGTERM) is before else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
