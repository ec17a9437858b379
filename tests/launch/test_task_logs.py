"""`launch.task_logs`: one log file per task and attempt, in a given or a fresh directory."""

import pathlib
import tempfile
import threading

import pytest

from launch import LaunchError
from launch.task_logs import LaunchLogs, log_file_name


def test_a_task_name_becomes_a_file_name():
    assert log_file_name("worker:1") == "worker-1.log"
    assert log_file_name("chief:0") == "chief-0.log"


def test_each_attempt_has_its_folder_and_each_task_its_file(tmp_path):
    logs = LaunchLogs(tmp_path / "logs")

    with logs.attempt(1) as first:
        first.write_line("worker:0", "step 1")
        first.write_line("worker:1", "Traceback (most recent call last):")
        first.write_line("worker:0", "step 2")
    with logs.attempt(2) as second:
        second.write_line("worker:0", "resumed")

    assert first.directory == tmp_path / "logs" / "attempt-1"
    assert (first.directory / "worker-0.log").read_text() == "step 1\nstep 2\n"
    assert (first.directory / "worker-1.log").read_text() == "Traceback (most recent call last):\n"
    assert second.path_of("worker:0").read_text() == "resumed\n"


def test_a_file_from_an_earlier_launch_is_overwritten_then_appended_to(tmp_path):
    old = tmp_path / "attempt-1" / "worker-0.log"
    old.parent.mkdir()
    old.write_text("an earlier launch\n")
    attempt = LaunchLogs(tmp_path).attempt(1)

    attempt.write_line("worker:0", "first")
    attempt.close()
    attempt.write_line("worker:0", "after close")  # A reader that outlived the attempt.
    attempt.close()

    assert old.read_text() == "first\nafter close\n"


def test_without_a_directory_a_fresh_one_is_made_under_the_temp_dir():
    first, second = LaunchLogs(), LaunchLogs()

    assert first.directory != second.directory
    for logs in (first, second):
        assert logs.directory.is_dir()
        assert logs.directory.parent == pathlib.Path(tempfile.gettempdir())
        assert logs.directory.name.startswith("launch-")


def test_lines_from_many_threads_stay_whole(tmp_path):
    attempt = LaunchLogs(tmp_path).attempt(1)

    def write(thread):
        for i in range(200):
            attempt.write_line("chief:0", f"thread {thread} line {i}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    attempt.close()

    lines = attempt.path_of("chief:0").read_text().splitlines()
    assert sorted(lines) == sorted(f"thread {t} line {i}" for t in range(4) for i in range(200))


def test_a_directory_that_cannot_be_made_is_named_with_the_fix(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")

    with pytest.raises(LaunchError) as raised:
        LaunchLogs(blocker / "logs")

    assert str(raised.value).startswith(f"Cannot create the log folder {blocker / 'logs'} (")
    assert "pass a writable directory, e.g. --log_dir=" in str(raised.value)


def test_a_line_that_cannot_be_written_does_not_raise(tmp_path):
    attempt = LaunchLogs(tmp_path).attempt(1)
    attempt.directory.rmdir()  # The folder is gone: the file cannot be opened.

    attempt.write_line("worker:0", "still running")

    assert not attempt.path_of("worker:0").exists()
