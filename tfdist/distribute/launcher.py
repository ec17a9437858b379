"""`tfdist.launch`: run a Python function as a local cluster and return the chief's result.

This module owns running one function of a notebook or script on every task of a
local `multi_worker` or `parameter_server` cluster, as Accelerate's
`notebook_launcher` does for PyTorch: each task is a real process with its own
TF_CONFIG (free loopback ports), planned and run by the same code as
`python -m launch` (`launch.plan.LaunchSpec` → `launch.launcher.run_launch`).
A function defined in a notebook's `__main__` cannot be imported by a child, so
the function and its arguments are serialised by value (cloudpickle) into a
temporary folder; each task runs `python -m tfdist.distribute.launcher` (this
module's `main`), which loads and calls it. Under `parameter_server` only the
chief calls the function; ps and worker tasks run `python -m tfdist.server`.

Every task's output is forwarded with a `[task]` prefix, less TensorFlow's
start-up noise unless `verbose` (`launch.noise`). The chief's return value
comes back pickled; a failing task stops the others and raises one
`LaunchFailed` naming the task, its exit code and its last log lines, chained to
the task's own exception when it could be pickled. Strategies, the model and the
training are the function's business (`tfdist.make_strategy` with
`tfdist.read_tf_config()`); this module imports no TensorFlow.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from launch.errors import LaunchError
from launch.launcher import run_launch
from launch.noise import TF_DATA_OPTIONS_WARNING, QuietOutput, is_noise
from launch.plan import LaunchSpec, tfdist_server_command
from launch.result import LaunchResult, RestartReport
from launch.streams import TextSink
from tfdist.config import ConfigError
from tfdist.distribute.cluster import read_tf_config

STRATEGIES = ("multi_worker", "parameter_server")
_CALL_FILE = "call.pkl"
_RESULT_FILE = "result.pkl"
_TAIL_LINES = 12


class LaunchFailed(RuntimeError):
    """A task of a `tfdist.launch` cluster failed (or the launch was interrupted).

    Attributes:
      task: the root-cause task, e.g. `"worker:1"`; None when interrupted.
      exit_code: its exit status as `subprocess` reports it (negative: a signal).
      log_tail: its last output lines, TensorFlow's start-up noise left out.
      result: the whole `launch.result.LaunchResult`.
    """

    def __init__(
        self,
        message: str,
        *,
        task: str | None,
        exit_code: int | None,
        log_tail: Sequence[str],
        result: LaunchResult,
    ) -> None:
        super().__init__(message)
        self.task = task
        self.exit_code = exit_code
        self.log_tail = tuple(log_tail)
        self.result = result


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - a dependency of tfdist (setup.cfg)
        raise ConfigError(
            "tfdist.launch needs cloudpickle to send the function to its "
            "tasks; pip install cloudpickle."
        ) from None
    return cloudpickle


def _check_options(fn: object, strategy: str, num_workers: int, num_ps: int) -> None:
    if not callable(fn):
        raise ConfigError(f"fn ({fn!r}) must be callable: the function every task runs.")
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"Unknown strategy {strategy!r} for tfdist.launch. Expected one of: "
            f"{', '.join(STRATEGIES)} (one process: call the function itself)."
        )
    for name, value, least in (("num_workers", num_workers, 1), ("num_ps", num_ps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{name} ({value!r}) must be an integer of at least {least}.")
    if strategy == "parameter_server" and num_ps < 1:
        raise ConfigError(
            f"num_ps ({num_ps}) must be at least 1 for strategy='parameter_server'; pass num_ps=1."
        )
    if strategy == "multi_worker" and num_ps:
        raise ConfigError(
            f"num_ps ({num_ps}) is only used by strategy='parameter_server'; "
            "drop num_ps or pass strategy='parameter_server'."
        )


def _python_path(environ: Mapping[str, str]) -> str:
    """This interpreter's import path, so the tasks import what the caller imports."""
    entries = [os.getcwd() if entry == "" else entry for entry in sys.path]
    entries += environ.get("PYTHONPATH", "").split(os.pathsep)
    seen = []
    for entry in entries:
        if entry and entry not in seen and os.path.isdir(entry):
            seen.append(entry)
    return os.pathsep.join(seen)


def task_env(
    *, verbose: bool, env: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> dict:
    """The environment every task starts from (the caller's `os.environ` is not written).

    It is `environ` (default `os.environ`) with PYTHONPATH extended by this
    interpreter's `sys.path`, TF_CPP_MIN_LOG_LEVEL=2 unless already set or
    `verbose`, no TF_CONFIG (each task gets its own), and `env` on top.
    """
    environ = dict(os.environ if environ is None else environ)
    environ.pop("TF_CONFIG", None)
    environ["PYTHONPATH"] = _python_path(environ)
    if not verbose:
        environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(f"env ({env!r}) must map str to str, e.g. {{'MY_FLAG': '1'}}.")
        environ[key] = value
    return environ


def _error_file(task: str) -> str:
    return f"error-{task.replace(':', '-')}.pkl"


def _failure(report: RestartReport, folder: str) -> LaunchFailed:
    result = report.attempts[-1]
    cause = result.root_cause
    if cause is None:
        return LaunchFailed(
            f"tfdist.launch: the launch was interrupted by "
            f"{result.interrupted_by}; every task was stopped.",
            task=None,
            exit_code=None,
            log_tail=(),
            result=result,
        )
    tail = [line for line in cause.log_tail if not is_noise(line)][-_TAIL_LINES:]
    message = (
        f"tfdist.launch: task {cause.name} failed ({cause.describe()}); the other tasks "
        "were stopped. Its last lines:\n" + "\n".join(f"    {line}" for line in tail)
    )
    failed = LaunchFailed(
        message, task=cause.name, exit_code=cause.exit_code, log_tail=tail, result=result
    )
    path = os.path.join(folder, _error_file(cause.name))
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                failed.__cause__ = pickle.load(f)
        except Exception:  # An exception that does not unpickle: the log tail tells it.
            pass
    return failed


def launch(
    fn: Callable[..., Any],
    *args: Any,
    strategy: str = "multi_worker",
    num_workers: int = 2,
    num_ps: int = 0,
    kwargs: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    verbose: bool = False,
    isolate_network: bool = True,
    output: TextSink | None = None,
    stop_timeout: float = 10.0,
    max_restarts: int = 0,
    min_workers: int | None = None,
) -> Any:
    """Runs `fn(*args, **kwargs)` on every task of a local cluster; returns the chief's result.

    Each task is a process of this interpreter with its own TF_CONFIG, so `fn`
    builds its strategy with `tfdist.make_strategy(strategy,
    cluster=tfdist.read_tf_config())`. Under `multi_worker` every worker runs
    `fn` (worker 0 is the chief); under `parameter_server` only the chief (the
    coordinator) does, and the workers and ps run tfdist's server. `fn` and its
    arguments travel by value (cloudpickle), so a function defined in a notebook
    works; what it imports must be importable by the tasks (they get this
    interpreter's `sys.path`). Import TensorFlow inside `fn`, not in the
    notebook, when the notebook itself need not run TensorFlow.

    Args:
      fn: the function each computing task runs.
      *args: its positional arguments.
      strategy: `multi_worker` or `parameter_server`.
      num_workers: worker tasks (at least 1).
      num_ps: parameter-server tasks: 0 for `multi_worker`, at least 1 for
        `parameter_server`.
      kwargs: its keyword arguments.
      env: variables set in every task's environment (on top of this process's).
      verbose: also forward TensorFlow's start-up log lines and warnings.
      isolate_network: run the tasks in a private loopback-only network namespace
        where possible (root and iproute2), as `python -m tfdist.train` does.
      output: where the tasks' prefixed output goes; None: `sys.stdout`.
      stop_timeout: seconds a stopped task gets before it is killed.
      max_restarts: when a task fails, stop every task and run the cluster again (fresh
        ports) at most this many times; `fn` resumes from its own checkpoints (e.g.
        `tfdist.fit(..., model_dir=...)`). A `parameter_server` worker is restarted in
        place instead, at most this many times each.
      min_workers: `multi_worker`: when a worker fails again after `max_restarts`
        restarts, go on without it while at least this many workers remain (the
        cluster is planned again with one worker fewer); None: fail then.

    Returns:
      What `fn` returned on the chief.

    Raises:
      ConfigError: an argument is invalid (nothing is started).
      LaunchFailed: a task failed: names it, its exit code and last log lines; the
        other tasks were stopped. Chained to the task's exception when it pickles.
    """
    _check_options(fn, strategy, num_workers, num_ps)
    pickler = _cloudpickle()
    base_env = task_env(verbose=verbose, env=env)
    with tempfile.TemporaryDirectory(prefix="tfdist-launch-") as folder:
        try:
            payload = pickler.dumps((fn, tuple(args), dict(kwargs or {}), bool(verbose)))
        except Exception as error:
            raise ConfigError(
                f"tfdist.launch could not serialise fn {fn!r} and its arguments "
                f"({type(error).__name__}: {error}); pass picklable "
                "arguments, e.g. arrays or file paths."
            ) from error
        with open(os.path.join(folder, _CALL_FILE), "wb") as f:
            f.write(payload)
        command = (sys.executable, "-m", "tfdist.distribute.launcher", folder)
        spec = LaunchSpec(
            strategy=strategy,
            command=command,
            num_workers=num_workers,
            num_ps=num_ps,
            server_command=tfdist_server_command() if strategy == "parameter_server" else None,
            base_env=base_env,
            isolate_network=isolate_network,
        )
        stream = output if output is not None else (lambda: sys.stdout)
        forward = output if verbose else QuietOutput(stream)  # None: run_launch's stdout.
        try:
            report = run_launch(
                spec,
                output=forward,
                stop_timeout=stop_timeout,
                max_restarts=max_restarts,
                min_workers=min_workers,
                quiet_peers=not verbose,
                announce=lambda line: print(
                    f"tfdist.launch: {line}",
                    file=(output if output is not None else sys.stdout),
                    flush=True,
                ),
            )
        except LaunchError as error:
            raise ConfigError(str(error)) from None
        if report.exit_code:
            raise _failure(report, folder)
        with open(os.path.join(folder, _RESULT_FILE), "rb") as f:
            return pickle.load(f)


def _dump(path: str, value: object) -> None:
    """Writes `value` with cloudpickle (values of `__main__` classes too), atomically."""
    import cloudpickle

    with open(path + ".tmp", "wb") as f:
        cloudpickle.dump(value, f)
    os.replace(path + ".tmp", path)


def main(argv: Sequence[str]) -> int:
    """A task's entry point: loads the call from `argv[1]`'s folder, runs it, saves the result.

    The chief writes the return value to `result.pkl`; a task whose call raises
    prints the traceback, saves the exception to `error-TASK.pkl` and exits 1.
    """
    folder = argv[1]
    with open(os.path.join(folder, _CALL_FILE), "rb") as f:
        fn, args, kwargs, verbose = pickle.load(f)
    if not verbose:  # Raised by TensorFlow when a traced function iterates a dataset.
        warnings.filterwarnings("ignore", message=TF_DATA_OPTIONS_WARNING, category=UserWarning)
    cluster = read_tf_config()
    task = cluster.task.name if cluster else "chief:0"
    try:
        value = fn(*args, **kwargs)
    except SystemExit as stop:  # A fit stopped by SIGTERM or Ctrl-C: its one line, its code.
        said = str(stop)
        if said and said != str(stop.code):
            print(f"tfdist.launch: {said}", file=sys.stderr, flush=True)
        return stop.code if isinstance(stop.code, int) else 1
    except BaseException as error:
        traceback.print_exc()
        try:
            _dump(os.path.join(folder, _error_file(task)), error)
        except Exception:
            pass
        return 1
    if cluster is None or cluster.is_chief:
        try:
            _dump(os.path.join(folder, _RESULT_FILE), value)
        except Exception as error:
            print(
                f"tfdist.launch: the chief's return value {type(value).__name__} could not "
                f"be pickled ({error}); return plain values (numbers, lists, dicts, arrays).",
                file=sys.stderr,
                flush=True,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
