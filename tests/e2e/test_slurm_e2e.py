"""Slurm for real: the scripts `python -m launch slurm` writes, run by a one-node cluster.

The module's fixture starts a Slurm cluster on this machine with
`tests/slurm/cluster.sh` (munged, slurmctld, slurmd; 4 task slots) and stops it
after the last test. Each test writes a script with the CLI, submits it with
`sbatch` under a PATH without this virtualenv (the script must name its
interpreter itself), follows it with `squeue` and `scontrol show job`, and
reads the job's output file and the trainer's metrics. Without Slurm's and
munge's Debian packages (or root) the tests skip and say why; under CI
(`CI=true`) they fail instead.
"""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from e2e_helpers import REPO

PY = sys.executable
CLUSTER_SH = pathlib.Path(REPO) / "tests" / "slurm" / "cluster.sh"
NODE = socket.gethostname().split(".")[0]
FINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
# A PATH without this virtualenv: the job must not depend on which `python` comes first.
JOB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = (
    "munged",
    "mungekey",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
    "sinfo",
)
# digits: 23 steps per epoch at the default global batch of 64.
STEPS_PER_EPOCH = 23
MW_EPOCHS = 12
PS_EPOCHS = 12
LONG_EPOCHS = 400


def _unavailable():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"Slurm/munge not installed (no {', '.join(missing)}); run: apt-get install "
            "-y --no-install-recommends slurm-wlm munge"
        )
    if os.geteuid() != 0:
        return "the one-node Slurm cluster needs root (slurmd starts jobs as their user)"
    return None


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_port_base(count):
    """Returns a port P such that P..P+count-1 are all free now."""
    for _ in range(50):
        base = _free_ports(1)[0]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("localhost", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")


@dataclasses.dataclass
class Cluster:
    """The running test cluster: the environment its client commands need."""

    state: pathlib.Path
    env: dict

    def run(self, *argv, check=True):
        process = subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=60
        )
        if check and process.returncode != 0:
            raise AssertionError(f"{argv} exited {process.returncode}: {process.stderr}")
        return process.stdout


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the real-Slurm tests, but {reason}.")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    ctld_port, d_port = _free_ports(2)
    env = dict(os.environ, TFDIST_SLURM_CTLD_PORT=str(ctld_port), TFDIST_SLURM_D_PORT=str(d_port))
    started = subprocess.run(
        [str(CLUSTER_SH), "start", str(state)], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert started.returncode == 0, started.stderr
        yield Cluster(state=state, env=dict(os.environ, SLURM_CONF=str(state / "slurm.conf")))
    finally:
        subprocess.run(
            [str(CLUSTER_SH), "stop", str(state)], env=env, capture_output=True, timeout=120
        )


@dataclasses.dataclass
class Job:
    """One submitted job: its id, output file, and the states seen while following it."""

    id: str
    output: pathlib.Path
    submitted: float
    states: list = dataclasses.field(default_factory=list)  # (seconds since submit, state)

    def log(self):
        return self.output.read_text() if self.output.exists() else ""


def _write_script(tmp_path, *, name, slurm_flags, command):
    """Writes the sbatch script with the CLI, `python` resolved on this venv's PATH."""
    script = tmp_path / f"{name}.sbatch"
    env = dict(os.environ, PATH=f"{os.path.dirname(PY)}:{os.environ.get('PATH', '')}")
    written = subprocess.run(
        [
            PY,
            "-m",
            "launch",
            "slurm",
            f"--job_name={name}",
            *slurm_flags,
            f"--port_base={_free_port_base(4)}",
            f"--output={script}",
            "--",
            *command,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    text = script.read_text()
    assert f"# Interpreter: {PY}" in text, text
    return script


def _submit(slurm, script, tmp_path):
    env = dict(slurm.env, PATH=JOB_PATH, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    env.pop("VIRTUAL_ENV", None)
    out = tmp_path / f"{script.stem}-%j.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", f"--output={out}", f"--chdir={tmp_path}", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    return Job(
        id=job_id, output=pathlib.Path(str(out).replace("%j", job_id)), submitted=time.monotonic()
    )


def _job_fields(slurm, job):
    text = slurm.run("scontrol", "show", "job", "-o", job.id)
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _state(slurm, job):
    """Records and returns the job's state: squeue while queued, else scontrol."""
    queued = slurm.run("squeue", "-h", "-j", job.id, "-o", "%T", check=False).strip()
    state = queued or _job_fields(slurm, job)["JobState"]
    if not job.states or job.states[-1][1] != state:
        job.states.append((round(time.monotonic() - job.submitted, 1), state))
    return state


def _wait_until(slurm, job, done, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(slurm, job)
        if done(state):
            return state
        if state in FINAL_STATES:
            raise AssertionError(
                f"job {job.id} ended {state} before {what}; states "
                f"{job.states}\n{job.log()[-4000:]}"
            )
        time.sleep(0.5)
    slurm.run("scancel", job.id, check=False)
    raise AssertionError(
        f"job {job.id}: no {what} within {timeout} s; states {job.states}\n{job.log()[-4000:]}"
    )


def _wait_for_end(slurm, job, timeout=300):
    state = _wait_until(slurm, job, lambda s: s in FINAL_STATES, timeout, "end")
    print(f"job {job.id}: states {job.states}")
    return state, _job_fields(slurm, job)


def _checkpoint_steps(model_dir):
    return sorted(
        int(m.group(1))
        for path in (model_dir / "checkpoints").glob("ckpt-*.index")
        if (m := re.fullmatch(r"ckpt-(\d+)\.index", path.name))
    )


def _task_pid(job, procid):
    """The pid of the trainer of Slurm task `procid` of `job`, from /proc."""
    wanted = {f"SLURM_JOB_ID={job.id}", f"SLURM_PROCID={procid}"}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = set((entry / "environ").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
        if (
            b"tfdist.train" in cmdline
            and b"launch.slurm.task" not in cmdline
            and (wanted <= environ)
        ):
            return int(entry.name)
    return None


def test_multi_worker_script_trains_two_tasks(slurm, tmp_path):
    metrics = tmp_path / "metrics.json"
    script = _write_script(
        tmp_path,
        name="mw",
        slurm_flags=["--strategy=multi_worker", "--nodes=1", "--tasks_per_node=2"],
        command=[
            "python",
            "-m",
            "tfdist.train",
            "--strategy=multi_worker",
            f"--epochs={MW_EPOCHS}",
            f"--metrics_json={metrics}",
        ],
    )
    job = _submit(slurm, script, tmp_path)

    state, fields = _wait_for_end(slurm, job)

    log = job.log()
    assert (state, fields["ExitCode"]) == ("COMPLETED", "0:0"), f"{job.states}\n{log[-4000:]}"
    assert f"SLURM_PROCID 0 on {NODE} is worker:0 of a multi_worker cluster" in log, log
    assert f"SLURM_PROCID 1 on {NODE} is worker:1 of a multi_worker cluster" in log, log
    summary = json.loads(metrics.read_text())
    print(f"multi_worker: val_accuracy {summary['val_accuracy']:.4f}, states {job.states}")
    assert (summary["strategy"], summary["num_workers"], summary["num_replicas"]) == (
        "multi_worker",
        2,
        2,
    ), summary
    assert summary["val_accuracy"] >= 0.93, summary


def test_parameter_server_script_trains_chief_ps_and_two_workers(slurm, tmp_path):
    metrics = tmp_path / "metrics.json"
    script = _write_script(
        tmp_path,
        name="pss",
        slurm_flags=[
            "--strategy=parameter_server",
            "--num_ps=1",
            "--nodes=1",
            "--tasks_per_node=4",
        ],
        command=[
            "python",
            "-m",
            "tfdist.train",
            "--strategy=parameter_server",
            f"--epochs={PS_EPOCHS}",
            f"--metrics_json={metrics}",
        ],
    )
    job = _submit(slurm, script, tmp_path)

    state, fields = _wait_for_end(slurm, job)

    log = job.log()
    assert (state, fields["ExitCode"]) == ("COMPLETED", "0:0"), f"{job.states}\n{log[-4000:]}"
    for rank, role in enumerate(["chief:0", "ps:0", "worker:0", "worker:1"]):
        assert f"SLURM_PROCID {rank} on {NODE} is {role} of a parameter_server" in log, log
    assert log.count("has finished; stopping this server.") == 3, log[-4000:]
    summary = json.loads(metrics.read_text())
    print(f"parameter_server: val_accuracy {summary['val_accuracy']:.4f}, states {job.states}")
    assert (summary["strategy"], summary["num_workers"]) == ("parameter_server", 2), summary
    assert summary["val_accuracy"] >= 0.93, summary


def test_killed_task_fails_the_job_and_names_the_task(slurm, tmp_path):
    model_dir = tmp_path / "model"
    script = _write_script(
        tmp_path,
        name="kill",
        slurm_flags=["--strategy=multi_worker", "--nodes=1", "--tasks_per_node=2"],
        command=[
            "python",
            "-m",
            "tfdist.train",
            "--strategy=multi_worker",
            f"--epochs={LONG_EPOCHS}",
            f"--model_dir={model_dir}",
        ],
    )
    job = _submit(slurm, script, tmp_path)
    _wait_until(
        slurm,
        job,
        lambda s: (
            s == "RUNNING" and (model_dir / "checkpoints").is_dir() and _checkpoint_steps(model_dir)
        ),
        180,
        "first checkpoint",
    )
    pid = _task_pid(job, 1)
    assert pid is not None, "no trainer process of SLURM_PROCID 1"

    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    state, fields = _wait_for_end(slurm, job, timeout=90)
    detected = time.monotonic() - killed

    log = job.log()
    print(
        f"SIGKILL of task 1 (worker:1) to job state {state}: {detected:.1f} s; "
        f"ExitCode {fields['ExitCode']}"
    )
    assert state == "FAILED", f"{job.states}\n{log[-4000:]}"
    assert detected <= 60, f"{detected:.1f} s"
    assert re.search(rf"srun: error: {NODE}: task 1: Killed", log), log[-4000:]
    assert f"SLURM_PROCID 1 on {NODE} is worker:1 of a multi_worker cluster" in log, log


def test_scancel_saves_every_task_at_one_step_and_the_resubmitted_script_resumes(slurm, tmp_path):
    model_dir, metrics = tmp_path / "model", tmp_path / "metrics.json"
    epochs = 30
    script = _write_script(
        tmp_path,
        name="preempt",
        slurm_flags=["--strategy=multi_worker", "--nodes=1", "--tasks_per_node=2"],
        command=[
            "python",
            "-m",
            "tfdist.train",
            "--strategy=multi_worker",
            f"--epochs={epochs}",
            "--steps_per_loop=4",
            f"--steps_per_epoch={STEPS_PER_EPOCH}",
            f"--model_dir={model_dir}",
            f"--metrics_json={metrics}",
        ],
    )
    job = _submit(slurm, script, tmp_path)
    _wait_until(
        slurm,
        job,
        lambda s: (
            s == "RUNNING" and (model_dir / "checkpoints").is_dir() and _checkpoint_steps(model_dir)
        ),
        180,
        "first checkpoint",
    )

    slurm.run("scancel", job.id)
    cancelled = time.monotonic()
    state, fields = _wait_for_end(slurm, job, timeout=90)
    stopped = time.monotonic() - cancelled

    log = job.log()
    saved = re.findall(r"preempted \(SIGTERM\) at step (\d+): saved checkpoint", log)
    print(f"scancel to job state {state}: {stopped:.1f} s; tasks saved at steps {saved}")
    assert state == "CANCELLED", f"{job.states}\n{log[-4000:]}"
    assert len(saved) == 2 and saved[0] == saved[1], log[-4000:]  # Every task, one step.
    assert not metrics.exists(), "the interrupted run must not have finished"

    again = _submit(slurm, script, tmp_path)
    state, fields = _wait_for_end(slurm, again)

    log = again.log()
    assert (state, fields["ExitCode"]) == ("COMPLETED", "0:0"), f"{again.states}\n{log[-4000:]}"
    summary = json.loads(metrics.read_text())
    assert summary["restored_from"].endswith(f"ckpt-{saved[0]}"), summary["restored_from"]
    assert summary["steps"] == epochs * STEPS_PER_EPOCH, summary
