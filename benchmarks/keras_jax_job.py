"""Keras 3 on JAX on the reference job: the Keras-on-JAX peer of compare_peers.py.

    python benchmarks/keras_jax_job.py one_process [--spe N]
    python benchmarks/keras_jax_job.py data_parallel [--processes 2] [--spe N]

Run it with a Python that has Keras and JAX (the ``bench-jax`` extra); it needs neither
TensorFlow nor tfdist, so a venv of its own with ``keras`` (the project's version) and
``jax[cpu]`` will do. The job is keras_fit_job.py's (``_reference_job``: MLP
784-256-10, Adam 1e-3, global batch 256, the 60,000 synthetic examples of
../shared/peers/peer_bench.py, 3 epochs), trained by Keras' own ``model.fit`` on the JAX
backend with ``steps_per_execution=N``:

  one_process    one process, XLA's default threads (all cores), as tfdist ``one_device``.
  data_parallel  ``keras.distribution.DataParallel`` over ``--processes`` local processes
                 joined by ``keras.distribution.initialize`` (``jax.distributed.initialize``;
                 CPU collectives over gloo, JAX's default), each process pinned to one core
                 (so XLA runs one intra-op thread; see ``pin_to_one_core``). Process ``i``
                 feeds the ``i``-th slice of every global batch (batch_size 256/processes);
                 Keras assembles the global batch with ``jax.make_array_from_process_local_data``.

This module owns the launch: each mode starts its training processes itself, with
``KERAS_BACKEND=jax`` in each child's own environment, waits for them and prints process 0's
result as one JSON line, ``{"peer": ..., "examples_per_sec": ..., "final_accuracy": ...}``,
as peer_bench.py does. examples/s is the one keras_fit_job.py reports as wall time (a Keras
callback over epochs 2..3, whole global batches; epoch 1 compiles).
A failed launch names each process's exit code and the tail of its log.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

from _runs import free_ports

MODES = ("one_process", "data_parallel")
TIMEOUT_S = 900
GLOBAL_BATCH = 256  # _reference_job.BATCH; the launcher does not import Keras.


def child_env():
    """A training process's environment: the JAX backend on CPU, none of the parent's cluster."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def pin_to_one_core(process_id):
    """Restricts this process to one core (round robin over the cores it may use), before JAX
    makes its CPU client: XLA sizes its thread pools by the cores a process may run on.

    ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` alone still leaves this XLA's intra-op
    pool at one thread per core, and ``intra_op_parallelism_threads=1`` is not an XLA flag
    (after a ``--`` flag it is ignored; alone it is read as a file name). Linux only.
    """
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[process_id % len(cores)]})


def child_command(process_id, processes, coordinator, spe):
    """The command line of training process ``process_id`` of ``processes``."""
    return [
        sys.executable,
        os.path.abspath(__file__),
        "_train",
        f"--process_id={process_id}",
        f"--processes={processes}",
        f"--coordinator={coordinator}",
        f"--spe={spe}",
    ]


def launch(processes, spe):
    """Starts ``processes`` training processes, waits for all; returns process 0's stdout."""
    coordinator = f"localhost:{free_ports(1)[0]}"
    env = child_env()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as files:
        logs = [
            files.enter_context(open(os.path.join(tmp, f"process_{i}.log"), "w+"))
            for i in range(processes)
        ]
        children = [
            subprocess.Popen(
                child_command(i, processes, coordinator, spe),
                env=env,
                stdout=subprocess.PIPE if i == 0 else log,
                stderr=log,
                text=True,
            )
            for i, log in enumerate(logs)
        ]
        try:
            out = children[0].communicate(timeout=TIMEOUT_S)[0]
            codes = [child.wait(timeout=120) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
        if any(codes):
            raise RuntimeError(failure_report(codes, logs))
        return out


def failure_report(codes, logs):
    """Which processes failed, then each process's exit code and the tail of its log."""
    failed = [i for i, code in enumerate(codes) if code]
    lines = [f"keras_jax_job: process(es) {failed} of {len(codes)} failed; exit codes {codes}"]
    for i, (code, log) in enumerate(zip(codes, logs, strict=True)):
        log.seek(0)
        lines.append(f"--- process {i}: exit code {code}, log tail:\n{log.read()[-3000:]}")
    return "\n".join(lines)


def process_slice(x, y, process_id, processes):
    """This process's slice of every global batch, in order (whole global batches only)."""
    from _reference_job import BATCH, STEPS_PER_EPOCH

    def local(a):
        batches = a[: STEPS_PER_EPOCH * BATCH]
        batches = batches.reshape(STEPS_PER_EPOCH, processes, BATCH // processes, *a.shape[1:])
        return batches[:, process_id].reshape(-1, *a.shape[1:])

    return local(x), local(y)


def train(process_id, processes, coordinator, spe):
    """One training process: Keras-JAX ``fit`` of the reference job; returns its summary."""
    if processes > 1:
        pin_to_one_core(process_id)
    # Imported here: only the children have KERAS_BACKEND=jax, set before their first import.
    import keras
    from _reference_job import BATCH, EPOCHS, EpochTimes, compile_args, data, network

    if processes > 1:
        keras.distribution.initialize(coordinator, processes, process_id)
        # Each process feeds its own slice of every global batch: Keras must not shard again.
        distribution = keras.distribution.DataParallel(auto_shard_dataset=False)
        keras.distribution.set_distribution(distribution)
    x, y = process_slice(*data(), process_id, processes)
    model = network()
    model.compile(**compile_args(), steps_per_execution=spe)
    timer = EpochTimes()
    history = model.fit(
        x,
        y,
        batch_size=BATCH // processes,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[timer],
    )
    return {
        "examples_per_sec": round(timer.examples_per_sec()),
        "final_accuracy": history.history["accuracy"][-1],
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=(*MODES, "_train"))
    parser.add_argument("--spe", type=int, default=32, help="Keras steps_per_execution")
    parser.add_argument("--processes", type=int, default=2, help="data_parallel's processes")
    parser.add_argument("--process_id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.spe < 1:
        parser.error(f"--spe ({args.spe}) must be a positive integer")
    if args.processes < 1 or GLOBAL_BATCH % args.processes:
        parser.error(
            f"--processes ({args.processes}) must be a positive divisor of the global batch "
            f"({GLOBAL_BATCH}), so that every process feeds an equal slice of each batch"
        )
    return args


def main():
    args = parse_args()
    if args.mode == "_train":
        summary = train(args.process_id, args.processes, args.coordinator, args.spe)
        if args.process_id == 0:
            print(json.dumps(summary), flush=True)
        return
    processes = 1 if args.mode == "one_process" else args.processes
    summary = json.loads(launch(processes, args.spe).strip().splitlines()[-1])
    peer = {"peer": f"keras_jax_{args.mode}", "processes": processes, "spe": args.spe}
    print(json.dumps({**peer, **summary}))


if __name__ == "__main__":
    main()
