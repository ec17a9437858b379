"""Two hosts for real: two network namespaces joined by a veth pair, each with its own
address, a 2-worker multi_worker job across them through the launcher's multi-host path;
then the link is cut mid-run, the error checked, the link restored and the job resumed."""

import contextlib
import os
import re
import subprocess
import sys
import time

import pytest
from e2e_helpers import REPO

from launch.network import unavailable_reason

HOSTS = {"tfdist-host-a": "10.251.7.1", "tfdist-host-b": "10.251.7.2"}
PORT = 23456
JOB = [
    "--optimizer=sgd",
    "--learning_rate=0.05",
    "--seed=5",
    "--global_batch_size=32",
    "--epochs=20",
    "--steps_per_loop=4",
    "--checkpoint_every_steps=20",
    "--collective_timeout=20",
]


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def two_hosts():
    names = list(HOSTS)
    try:
        for name in names:
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        _ip(
            "link",
            "add",
            "tfdist-va",
            "netns",
            names[0],
            "type",
            "veth",
            "peer",
            "name",
            "tfdist-vb",
            "netns",
            names[1],
        )
        for name, dev in zip(names, ("tfdist-va", "tfdist-vb"), strict=False):
            _ip("-n", name, "addr", "add", f"{HOSTS[name]}/24", "dev", dev)
            _ip("-n", name, "link", "set", dev, "up")
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _can_make_namespaces():
    if unavailable_reason():
        return unavailable_reason()
    probe = subprocess.run(
        ["ip", "netns", "add", "tfdist-probe-2h"], capture_output=True, text=True
    )
    subprocess.run(["ip", "netns", "del", "tfdist-probe-2h"], capture_output=True)
    return None if probe.returncode == 0 else probe.stderr.strip()


pytestmark = pytest.mark.skipif(
    _can_make_namespaces() is not None,
    reason=f"cannot make network namespaces here: {_can_make_namespaces()}",
)


def _start_hosts(tmp_path, model_dir, attempt):
    hosts = ",".join(f"{address}:{PORT}" for address in HOSTS.values())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    processes = []
    for name, address in HOSTS.items():
        log = open(tmp_path / f"{name}-{attempt}.log", "w")
        command = [
            "ip",
            "netns",
            "exec",
            name,
            sys.executable,
            "-m",
            "launch",
            "hosts",
            "--strategy=multi_worker",
            f"--hosts={hosts}",
            f"--this_host={address}",
            "--",
            sys.executable,
            "-m",
            "tfdist.train",
            "--strategy=multi_worker",
            *JOB,
            f"--model_dir={model_dir}",
        ]
        processes.append(
            (
                subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT),
                log,
            )
        )
    return processes


def _newest_step(model_dir):
    folder = model_dir / "checkpoints"
    steps = [
        int(m.group(1))
        for n in (os.listdir(folder) if folder.exists() else [])
        for m in [re.match(r"ckpt-(\d+)\.index$", n)]
        if m
    ]
    return max(steps, default=0)


def test_two_hosts_train_lose_their_link_and_resume(tmp_path):
    model_dir = tmp_path / "m"
    with two_hosts() as names:
        first = _start_hosts(tmp_path, model_dir, 1)
        deadline = time.time() + 300
        while _newest_step(model_dir) < 100:
            assert time.time() < deadline and all(p.poll() is None for p, _ in first), (
                tmp_path / f"{names[0]}-1.log"
            ).read_text()[-3000:]
            time.sleep(0.1)
        cut_at = time.time()
        _ip("-n", names[0], "link", "set", "tfdist-va", "down")  # The cable is pulled.
        codes = [p.wait(timeout=240) for p, _ in first]
        waited = time.time() - cut_at
        for _, log in first:
            log.close()
        logs = "".join((tmp_path / f"{n}-1.log").read_text() for n in names)
        assert all(code != 0 for code in codes), logs[-3000:]
        assert "(root cause)" in logs
        print(
            f"link cut to both hosts' errors: {waited:.1f} s; newest checkpoint "
            f"step {_newest_step(model_dir)}"
        )
        saved = _newest_step(model_dir)
        _ip("-n", names[0], "link", "set", "tfdist-va", "up")
        second = _start_hosts(tmp_path, model_dir, 2)
        codes = [p.wait(timeout=600) for p, _ in second]
        for _, log in second:
            log.close()
        logs = "".join((tmp_path / f"{n}-2.log").read_text() for n in names)
        assert codes == [0, 0], logs[-3000:]
        assert _newest_step(model_dir) == 20 * (1500 // 32) > saved
        assert "val_accuracy" in logs
