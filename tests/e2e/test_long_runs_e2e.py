"""Long runs: memory, threads and open files of every task stay flat through 5 restarts.

A ``multi_worker`` x4 job and a ``parameter_server`` job (chief, 4 workers, 1 ps) train on
digits for a few minutes each (epochs of ``STEPS_PER_EPOCH`` steps, five passes over the
data), checkpointing every second or two, and lose a task 5 times along the way
(``tests/helpers/chaos.py``: SIGKILL at fixed fractions of the planned steps, so the first
and the last life of every task are long). ``tests/helpers/proc_stats.py`` samples the
launcher and every task process from /proc about every 0.5 s: one series per *life* of a
task (one pid; a restart is a new pid).

Warm-up: a life is warm from the second epoch-end checkpoint written after its TensorFlow
runtime was up (its process had ``MIN_THREADS`` threads: importing TensorFlow runs on one).
By then it has restored, traced its training and evaluation functions, saved, and run one
more whole epoch (its connections and thread pools are set up: the first epoch-end saw
fds and threads still being added). Each life is checked:

- RSS: for a life lasting ``MIN_STEADY_S`` or more after warm-up, its RSS at its last
  sample is below ``MAX_GROWTH`` x its RSS at the end of warm-up.
- Threads and open fds: a life's *floor* is the least it has over its *steady phase*
  (from the end of warm-up to the first kill after it, or to 2 s before its last
  checkpoint): what the process holds throughout. gRPC's and TensorFlow's pools start and
  stop threads on demand (single samples of one life move by 1 to 5) and sockets come and
  go, so single samples would compare noise. The floor of a task's last life must not
  exceed that of its first life that resumed from a checkpoint (its second; the first
  with a steady phase): fds by none, threads by at most one. That one is measured: a pool
  thread that TensorFlow or gRPC starts lazily and then keeps, at a different moment in
  each life without any restart (the ps: 102 threads, then 103 from 31 s, 18 s, or not
  within 57 s, into the three lives of one run), so a short baseline phase may end before
  it comes. A leak of even one thread per restart still fails: the last life comes 3 or 4
  restarts after the baseline. The first life is printed but is not the same phase: a
  life that restores a checkpoint holds one more TensorFlow pool thread (``tf_Compute``:
  9, not 8, in every resumed life of a multi_worker worker), a constant, not a growth.
  The launcher lives through the whole run; its floors during the lead task's
  (``worker:0``, ``chief:0``) baseline and last lives are compared.

A parameter_server worker restarted in place makes TensorFlow's coordinator update its
cluster (``context.update_server_def``), which leaves threads behind in the chief (and at
times the ps); the test prints how many each such restart added (docs/fault-tolerance.md,
"Long runs"). Its steady phases end at the first kill, so this is reported, not asserted.

Each test prints a table of the figures and writes them, life by life with the samples, to
``long_run.json`` in its ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time

from chaos import Chaos, Kill
from proc_stats import LAUNCHER, Sample, Sampler

STEPS_PER_EPOCH = 230  # Five passes over digits' 1,500 training examples at batch 32.
MAX_GROWTH = 1.10  # RSS at the end of a life over RSS at the end of its warm-up.
MIN_STEADY_S = 10.0  # Seconds after warm-up a life needs for its RSS to be checked.
MIN_PHASE_S = 2.0  # Seconds of steady phase the last life and the baseline need.
MIN_THREADS = 10  # A process with this many threads runs TensorFlow's runtime.
WARM_EPOCHS = 2  # Epoch-end checkpoints a life sees before it is warm.
END_MARGIN_S = 2.0  # A steady phase ends this long before a life's last checkpoint.
SLACK = {"threads": 1, "fds": 0}  # More held than the baseline a last life may have (above).
DEADLINE_S = 600  # The whole job, kills included; it fails, never hangs, past that.
KILL_AT = (0.2, 0.33, 0.46, 0.59, 0.72)  # Fractions of the planned steps.
COMMON = [
    "--global_batch_size=32",
    "--steps_per_loop=5",
    "--seed=3",
    "--max_restarts=8",
    f"--steps_per_epoch={STEPS_PER_EPOCH}",
]
# 40 epochs: a life between two kills spans ~5 epochs, so it warms up (WARM_EPOCHS epoch
# ends) with a steady phase of ~3 epochs left (30 left ~2.5 s on a quiet machine).
SYNC_JOB = ["--num_workers=4", "--epochs=40", "--checkpoint_every_steps=150", *COMMON]
PS_JOB = [
    "--strategy=parameter_server",
    "--num_workers=4",
    "--num_ps=1",
    "--epochs=100",
    "--checkpoint_every_steps=250",
    *COMMON,
]


@dataclasses.dataclass
class Life:
    """One process of a task: its samples, the end of its warm-up and of its steady phase."""

    task: str
    samples: list[Sample]
    warm: Sample | None  # The first sample after warm-up; None: it never warmed up.
    until: float  # The end of the steady phase (time.time()).

    @property
    def last(self) -> Sample:
        return self.samples[-1]

    @property
    def checked(self) -> bool:
        """Long enough after warm-up for its RSS growth to mean something."""
        return self.warm is not None and self.last.at - self.warm.at >= MIN_STEADY_S

    @property
    def has_phase(self) -> bool:
        return self.warm is not None and self.until - self.warm.at >= MIN_PHASE_S

    @property
    def growth(self) -> float:
        return self.last.rss / self.warm.rss - 1.0

    def floor(self, what: str) -> int:
        """The least ``what`` ("threads", "fds") over the steady phase: what it holds throughout."""
        return min(
            getattr(sample, what)
            for sample in self.samples
            if self.warm.at <= sample.at < self.until
        )

    def figures(self, started: float) -> dict:
        figures = {
            "start_s": _since(self.samples[0].at, started),
            "end_s": _since(self.last.at, started),
            "rss_end_mb": _mb(self.last.rss),
        }
        if self.warm is not None:
            figures.update(
                warm_s=_since(self.warm.at, started),
                rss_warm_mb=_mb(self.warm.rss),
                steady_until_s=_since(self.until, started),
            )
        if self.checked:
            figures["rss_growth_pct"] = round(100 * self.growth, 1)
        if self.has_phase:
            figures.update(threads_floor=self.floor("threads"), fds_floor=self.floor("fds"))
        figures["samples"] = [
            (_since(sample.at, started), _mb(sample.rss), sample.threads, sample.fds)
            for sample in self.samples
        ]
        return figures


def _mb(size: int) -> float:
    return round(size / 2**20, 1)


def _since(at: float, started: float) -> float:
    return round(at - started, 1)


def _first_at(samples: list[Sample], at: float | None) -> Sample | None:
    return next((sample for sample in samples if at is not None and sample.at >= at), None)


def _warm_up_end(samples: list[Sample], marks: list) -> float | None:
    """When the ``WARM_EPOCHS``-th epoch-end checkpoint after the life's runtime was up was
    seen; None if it never was."""
    up = next((sample.at for sample in samples if sample.threads >= MIN_THREADS), None)
    if up is None:
        return None
    resumed = max([step for at, step in marks if at <= up and step is not None], default=0)
    epoch_end = (resumed // STEPS_PER_EPOCH + WARM_EPOCHS) * STEPS_PER_EPOCH
    return next(
        (at for at, step in marks if at >= up and step is not None and step >= epoch_end), None
    )


def _lives(sampler: Sampler, task: str, kills: list[Kill]) -> list[Life]:
    """The task's lives; a steady phase ends at the first kill after warm-up (of this task,
    or another's) or ``END_MARGIN_S`` before the life's last checkpoint: the end of the
    training (the last evaluation, the final save, the servers stopped) starts about then."""
    lives = []
    for samples in sampler.lives(task):
        warm = _first_at(samples, _warm_up_end(samples, sampler.marks))
        last_mark = max(
            (at for at, _ in sampler.marks if samples[0].at <= at <= samples[-1].at),
            default=samples[-1].at,
        )
        kills_after = [kill.at for kill in kills if warm and kill.at > warm.at]
        lives.append(Life(task, samples, warm, min([last_mark - END_MARGIN_S, *kills_after])))
    return lives


def _launcher_phases(sampler: Sampler, lead_task: str, lead: list[Life]) -> list[Life]:
    """The launcher's one life, during the lead task's baseline life and its last life."""
    samples = sampler.lives(LAUNCHER)[0]
    phases = []
    for life in (_baseline(lead_task, lead) or lead[0], lead[-1]):
        during = [sample for sample in samples if life.samples[0].at <= sample.at <= life.last.at]
        warm = _first_at(during, life.warm and life.warm.at)
        phases.append(Life(LAUNCHER, during or samples, warm, life.until))
    return phases


def _added_threads(lives: list[Life], kill: Kill, kills: list[Kill]) -> int | None:
    """Threads the in-place restart ``kill`` left in the life that saw it: the median of the
    4 s before the next kill (or the life's end) less that of the 4 s before ``kill``."""
    life = next(
        (
            life
            for life in lives
            if life.warm and life.warm.at < kill.at - 4 and kill.at < life.last.at
        ),
        None,
    )
    if life is None:
        return None
    end = min([later.at for later in kills if later.at > kill.at] + [life.last.at])
    before = [s.threads for s in life.samples if kill.at - 4 <= s.at < kill.at]
    after = [s.threads for s in life.samples if max(end - 4, kill.at) < s.at <= end]
    if not before or not after or end - kill.at < 8:
        return None
    return statistics.median_low(after) - statistics.median_low(before)


def _wait_for_step(chaos: Chaos, step: int, deadline: float) -> None:
    while time.time() < deadline and chaos.process.poll() is None:
        if (chaos.newest_step() or 0) >= step:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"no checkpoint of step {step} by +{deadline - chaos.started:.0f} s "
        f"(newest {chaos.newest_step()}, exit code {chaos.process.poll()}):\n"
        + chaos.output()[-3000:]
    )


def _flag(flags: list[str], name: str) -> str:
    return next(flag.split("=", 1)[1] for flag in flags if flag.startswith(f"--{name}="))


def _long_run(tmp_path, flags: list[str], plan: list[tuple[str, str]], *, seed: int):
    """Runs the job with a kill at each of ``KILL_AT``; returns (chaos, sampler, exit code)."""
    model_dir = tmp_path / "m"
    planned = int(_flag(flags, "epochs")) * STEPS_PER_EPOCH
    chaos = Chaos(
        [*flags, f"--model_dir={model_dir}", f"--metrics_json={tmp_path / 'summary.json'}"],
        model_dir=model_dir,
        log_path=tmp_path / "run.log",
        seed=seed,
    )
    sampler = Sampler(chaos.process.pid, progress=chaos.newest_step)
    sampler.start()
    deadline = chaos.started + DEADLINE_S
    try:
        for fraction, (task, mode) in zip(KILL_AT, plan, strict=False):
            _wait_for_step(chaos, round(fraction * planned), deadline)
            assert chaos.kill_one(task, mode, timeout=max(1.0, deadline - time.time())), (
                f"no kill {len(chaos.kills) + 1} ({task}, {mode}): {chaos.why_not}\n"
                + chaos.output()[-3000:]
            )
        code = chaos.finish(timeout=max(1.0, deadline - time.time()))
    except BaseException:
        if chaos.process.poll() is None:
            chaos.kill_all()
        raise
    finally:
        sampler.stop()
    return chaos, sampler, code


def _report(chaos: Chaos, tasks: dict[str, list[Life]], path) -> str:
    """Writes every life's figures to ``path`` (JSON); returns the table to print."""
    started = chaos.started
    added = {
        task: [
            _added_threads(lives, kill, chaos.kills)
            for kill in chaos.kills
            if kill.in_place and kill.task != task
        ]
        for task, lives in tasks.items()
        if task != LAUNCHER
    }
    path.write_text(
        json.dumps(
            {
                "seconds": _since(time.time(), started),
                "threads_added_by_in_place_restarts": added,
                "kills": [
                    {
                        "task": kill.task,
                        "mode": kill.mode,
                        "at_s": _since(kill.at, started),
                        "in_place": kill.in_place,
                    }
                    for kill in chaos.kills
                ],
                "tasks": {
                    task: [life.figures(started) for life in lives] for task, lives in tasks.items()
                },
            },
            indent=1,
        )
    )
    lines = [
        chaos.report(checkpoint_every=int(_flag(chaos.process.args, "checkpoint_every_steps"))),
        f"{'task':9} lives  {'RSS warm -> end MB (worst life)':>31}  "
        f"threads first/resumed/last  fds first/resumed/last  "
        f"threads added by in-place restarts",
    ]
    for task, lives in tasks.items():
        lines.append(
            f"{task:9} {1 if task == LAUNCHER else len(lives):5}  "
            f"{_worst_rss(lives):>31}  {_floors(task, lives, 'threads'):>23}  "
            f"{_floors(task, lives, 'fds'):>18}  {added.get(task) or '-'}"
        )
    lines.append(f"figures: {path}")
    return "\n".join(lines)


def _worst_rss(lives: list[Life]) -> str:
    worst = max(
        (life for life in lives if life.checked), key=lambda life: life.growth, default=None
    )
    if worst is None:
        return "-"
    return f"{_mb(worst.warm.rss):.1f} -> {_mb(worst.last.rss):.1f} ({100 * worst.growth:+.1f}%)"


def _floors(task: str, lives: list[Life], what: str) -> str:
    """ "first/resumed/last": the ``what`` floors of the first life, the baseline, the last."""
    baseline = _baseline(task, lives)
    return "/".join(
        "-" if life is None or not life.has_phase else str(life.floor(what))
        for life in (lives[0], baseline, lives[-1])
    )


def _baseline(task: str, lives: list[Life]) -> Life | None:
    """The life a task's last life is compared with: its first life that resumed from a
    checkpoint and has a steady phase (the launcher: its phase in the lead's baseline)."""
    if task == LAUNCHER:
        return lives[0]
    return next((life for life in lives[1:] if life.has_phase), None)


def _check(tasks: dict[str, list[Life]]) -> None:
    """RSS of every long enough life; threads and fds of each task's last life."""
    for task, lives in tasks.items():
        last, baseline = lives[-1], _baseline(task, lives)
        assert last.checked and last.has_phase and baseline and baseline.has_phase, (
            f"{task}: its last life must last {MIN_STEADY_S} s after warm-up, and a resumed "
            f"life have {MIN_PHASE_S} s of steady phase: {[_brief(life) for life in lives]}"
        )
        for life in lives:
            assert not life.checked or life.growth < MAX_GROWTH - 1.0, (
                f"{task}: RSS {_mb(life.warm.rss)} MB after warm-up, {_mb(life.last.rss)} MB "
                f"at the end of the life: +{100 * life.growth:.1f}% ({_brief(life)})"
            )
        for what, slack in SLACK.items():
            assert last.floor(what) <= baseline.floor(what) + slack, (
                f"{task}: {baseline.floor(what)} {what} throughout the steady phase of its first "
                f"resumed life, {last.floor(what)} in its last"
            )


def _brief(life: Life) -> dict:
    figures = life.figures(life.samples[0].at)
    figures.pop("samples")
    return figures


def _run_and_check(tmp_path, flags, plan, *, lead: str, seed: int) -> None:
    chaos, sampler, code = _long_run(tmp_path, flags, plan, seed=seed)
    tasks = {
        task: _lives(sampler, task, chaos.kills) for task in sampler.tasks() if task != LAUNCHER
    }
    tasks[LAUNCHER] = _launcher_phases(sampler, lead, tasks[lead])
    print(_report(chaos, tasks, tmp_path / "long_run.json"))
    assert code == 0, chaos.output()[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == int(_flag(flags, "epochs")) * STEPS_PER_EPOCH
    assert len(chaos.kills) == len(KILL_AT)
    _check(tasks)


def test_multi_worker_long_run_with_restarts_does_not_leak(tmp_path):
    plan = [
        ("worker:1", "random"),
        ("worker:3", "saving"),
        ("worker:0", "random"),
        ("worker:2", "saving"),
        ("worker", "random"),
    ]

    _run_and_check(tmp_path, SYNC_JOB, plan, lead="worker:0", seed=21)


def test_parameter_server_long_run_with_restarts_does_not_leak(tmp_path):
    # Workers restarted in place first, then cluster restarts: every last life is fresh.
    plan = [
        ("worker:0", "random"),
        ("worker:2", "random"),
        ("chief:0", "saving"),
        ("worker:3", "random"),
        ("ps:0", "saving"),
    ]

    _run_and_check(tmp_path, PS_JOB, plan, lead="chief:0", seed=22)
