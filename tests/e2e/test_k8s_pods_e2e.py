"""The pods of `python -m launch k8s --kind=job`, run as local processes, train digits.

Each test writes the Indexed Jobs with the CLI, then starts one process per pod
with exactly the container's command and args and the variables Kubernetes
sets (JOB_COMPLETION_INDEX, HOSTNAME = the pod's hostname `JOB-INDEX`). Only
the address template changes, from the Service's DNS names to
`localhost:{port}` with a free `--port_base`, as if those names pointed here;
and the image's `python` is this interpreter.
"""

import json
import os
import socket
import subprocess
import sys
import time

import yaml
from e2e_helpers import REPO

PY = sys.executable


def _free_port_base(count):
    """Returns a port P such that P..P+count-1 are all free now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            base = probe.getsockname()[1]
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


def _pods(flags, command):
    """Returns (pod hostname, argv, env) of every pod the CLI's Jobs would create."""
    written = subprocess.run(
        [PY, "-m", "launch", "k8s", "--kind=job", "--image=tfdist:test", *flags, "--", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(written.stdout) if d and d["kind"] == "Job"]
    num_tasks = sum(d["spec"]["completions"] for d in documents)
    base = _free_port_base(num_tasks)
    pods = []
    for job in documents:
        container = job["spec"]["template"]["spec"]["containers"][0]
        argv = container["command"] + container["args"]
        assert argv[0] == "python", argv
        argv = [PY if arg == "python" else arg for arg in argv]
        argv = [
            arg
            if not arg.startswith("--address_template=")
            else "--address_template=localhost:{port}"
            for arg in argv
        ]
        argv.insert(argv.index("--"), f"--port_base={base}")
        for index in range(job["spec"]["completions"]):
            hostname = f"{job['metadata']['name']}-{index}"
            env = {item["name"]: item["value"] for item in container["env"]}
            env.update(JOB_COMPLETION_INDEX=str(index), HOSTNAME=hostname)
            pods.append((hostname, argv, env))
    return pods


def _run_pods(tmp_path, pods, timeout=300):
    procs, logs = [], []
    for hostname, argv, env in pods:
        full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env)
        full.pop("TF_CONFIG", None)
        log = tmp_path / f"{hostname}.log"
        logs.append(log)
        with open(log, "w") as out:
            procs.append(
                subprocess.Popen(argv, cwd=tmp_path, env=full, stdout=out, stderr=subprocess.STDOUT)
            )
    deadline = time.monotonic() + timeout
    try:
        codes = [proc.wait(timeout=max(1, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return codes, {log.stem: log.read_text() for log in logs}


def _explain(codes, logs):
    return "\n".join(
        f"--- {name}: exit {code}\n{text[-3000:]}"
        for code, (name, text) in zip(codes, logs.items(), strict=False)
    )


def test_indexed_job_pods_train_multi_worker(tmp_path):
    metrics = tmp_path / "metrics.json"
    pods = _pods(
        ["--strategy=multi_worker", "--num_workers=2"],
        [
            "python",
            "-m",
            "tfdist.train",
            "--strategy=multi_worker",
            "--epochs=12",
            f"--metrics_json={metrics}",
        ],
    )

    codes, logs = _run_pods(tmp_path, pods)

    assert [name for name, _, _ in pods] == ["tfdist-worker-0", "tfdist-worker-1"]
    assert codes == [0, 0], _explain(codes, logs)
    for index in range(2):
        assert (
            f"JOB_COMPLETION_INDEX {index} on tfdist-worker-{index} is worker:{index} of "
            "a multi_worker cluster"
        ) in logs[f"tfdist-worker-{index}"]
    summary = json.loads(metrics.read_text())
    print(f"Indexed Job multi_worker pods: val_accuracy {summary['val_accuracy']:.4f}")
    assert (summary["strategy"], summary["num_workers"]) == ("multi_worker", 2), summary
    assert summary["val_accuracy"] >= 0.93, summary


def test_indexed_job_pods_train_parameter_server_and_servers_stop(tmp_path):
    metrics = tmp_path / "metrics.json"
    pods = _pods(
        ["--strategy=parameter_server", "--num_ps=1", "--num_workers=2"],
        [
            "python",
            "-m",
            "tfdist.train",
            "--strategy=parameter_server",
            "--epochs=12",
            f"--metrics_json={metrics}",
        ],
    )

    codes, logs = _run_pods(tmp_path, pods)

    assert list(logs) == ["tfdist-chief-0", "tfdist-worker-0", "tfdist-worker-1", "tfdist-ps-0"]
    assert codes == [0, 0, 0, 0], _explain(codes, logs)
    for name in ("tfdist-worker-0", "tfdist-worker-1", "tfdist-ps-0"):
        assert "has finished; stopping this server." in logs[name], _explain(codes, logs)
    summary = json.loads(metrics.read_text())
    print(f"Indexed Job parameter_server pods: val_accuracy {summary['val_accuracy']:.4f}")
    assert (summary["strategy"], summary["num_workers"]) == ("parameter_server", 2), summary
    assert summary["val_accuracy"] >= 0.93, summary
