"""Where a parameter_server step's time goes, against TensorFlow's own floor.

    python benchmarks/ps_cost.py [--repeats 3]

On the reference job (synthetic 784 features, MLP 784-256-10, Adam, global batch 256,
3 epochs, examples/s of epochs 2..3), each round runs, back to back:
  one process       ``--strategy=one_device``, the CPUs' threads: the baseline
  parameter_server  ``--strategy=parameter_server --num_workers=2 --num_ps=1``
                    (steps_per_loop 32, as benchmarks/compare_peers.py runs it)
  parameter_server --sync_every=8  the same with local steps: each worker takes 8 steps
                    on its own copy, then one update of the ps
  bare PSS          the same cluster without tfdist: a chief, 2 worker servers and 1 ps
                    server as local processes with the launcher's thread budget (one
                    intra-op thread each), a Keras MLP and Adam built under
                    ParameterServerStrategy, one fixed batch of 256 per worker (no input
                    pipeline, no totals), 32 steps per scheduled ``tf.function``:
                    TensorFlow's own asynchronous step
  bare PSS, tfdist's calls  the bare PSS step scheduled as tfdist schedules an epoch:
                    234 steps in the trainer's call sizes (``shrinking_calls``: full calls,
                    then shorter ones toward the end), each result fetched, one join per
                    epoch: what that schedule costs when no worker is slow
  bare PSS, no ps   the same workers' step on variables of their own (no ps reads or
                    updates): what the two workers compute, scheduled the same way
and prints examples/s of each (medians of the rounds, min-max), each as a ratio of one
process, and tfdist's parameter_server against the bare PSS step. A benchmark, not a
test: nothing here asserts a time.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from _runs import REPO, free_ports, print_medians, run_trainer

JOB = [
    "--dataset=synthetic",
    "--num_examples=60000",
    "--model=mlp",
    "--optimizer=adam",
    "--global_batch_size=256",
    "--epochs=3",
]
GLOBAL_BATCH = 256
STEPS_PER_CALL = 32
EPOCH_STEPS = 234  # 60,000 // 256, the reference job's epoch.
SYNC_EVERY = 8  # Local steps: one ps update per 8 steps of a worker (ps_local_steps).
CALLS = 80  # Per timed pass: 80 x 32 x 256 = 655,360 examples, about 11 epochs of 60,000.


def server(task_type: str, index: int) -> None:
    """A worker or ps task (run with TF_CONFIG): serves until killed."""
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    tf.distribute.Server(
        resolver.cluster_spec(), job_name=task_type, task_index=index, protocol="grpc", start=True
    ).join()


def chief(local_variables: bool, tfdist_calls: bool) -> None:
    """The coordinator (run with TF_CONFIG): prints examples/s of the timed passes."""
    import keras
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((784,)), keras.layers.Dense(256, "relu"), keras.layers.Dense(10)]
        )
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)  # Eagerly, in scope (keras#23085).

    def batches():
        x = tf.random.uniform([GLOBAL_BATCH, 784], seed=1)
        y = tf.random.uniform([GLOBAL_BATCH], maxval=10, dtype=tf.int32, seed=2)
        return tf.data.Dataset.from_tensors((x, y)).repeat()

    iterator = iter(coordinator.create_per_worker_dataset(batches))

    def loss_of(x, y, logits):
        return tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )

    @tf.function
    def remote_call(it, steps):
        def step(batch):
            x, y = batch
            with tf.GradientTape() as tape:
                loss = loss_of(x, y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))
            return loss

        total = tf.constant(0.0)
        for _ in tf.range(steps):
            total += strategy.run(step, args=(next(it),))
        return total

    @tf.function
    def local_call(it, steps):
        """The same step on worker-local weights: compute only, nothing crosses to a ps."""
        kernel = tf.random.uniform([784, 256], -0.05, 0.05, seed=3)
        bias = tf.zeros([256])
        head = tf.random.uniform([256, 10], -0.1, 0.1, seed=4)
        head_bias = tf.zeros([10])
        weights = [kernel, bias, head, head_bias]
        m = [tf.zeros_like(w) for w in weights]
        v = [tf.zeros_like(w) for w in weights]
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            x, y = next(it)
            with tf.GradientTape() as tape:
                tape.watch(weights)
                hidden = tf.nn.relu(tf.matmul(x, weights[0]) + weights[1])
                loss = loss_of(x, y, tf.matmul(hidden, weights[2]) + weights[3])
            grads = tape.gradient(loss, weights)
            m = [0.9 * a + 0.1 * g for a, g in zip(m, grads, strict=False)]  # Adam's arithmetic.
            v = [0.999 * b + 0.001 * g * g for b, g in zip(v, grads, strict=False)]
            weights = [
                w - 1e-3 * a / (tf.sqrt(b) + 1e-7) for w, a, b in zip(weights, m, v, strict=False)
            ]
            total += loss
        return total

    call = local_call if local_variables else remote_call

    def full_calls():
        for _ in range(CALLS):
            coordinator.schedule(call, args=(iterator, tf.constant(STEPS_PER_CALL)))
        coordinator.join()
        return CALLS * STEPS_PER_CALL

    def tfdist_epochs():
        from tfdist.training.schedule import shrinking_calls

        epochs = round(CALLS * STEPS_PER_CALL / EPOCH_STEPS)
        for _ in range(epochs):
            results = [
                coordinator.schedule(call, args=(iterator, tf.constant(size)))
                for size in shrinking_calls(EPOCH_STEPS, STEPS_PER_CALL, 2)
            ]
            for result in results:  # In order, as the trainer fetches them.
                result.fetch()
            coordinator.join()
        return epochs * EPOCH_STEPS

    one_pass = tfdist_epochs if tfdist_calls else full_calls
    one_pass()  # Trace and warm up every worker.
    started = time.perf_counter()
    steps = one_pass()
    seconds = time.perf_counter() - started
    print(json.dumps({"examples_per_sec": steps * GLOBAL_BATCH / seconds}), flush=True)


def bare_pss(local_variables: bool = False, tfdist_calls: bool = False) -> float:
    """examples/s of the bare PSS step: chief + 2 workers + 1 ps as local processes."""
    chief_port, w0, w1, ps = free_ports(4)
    cluster = {
        "chief": [f"localhost:{chief_port}"],
        "worker": [f"localhost:{w0}", f"localhost:{w1}"],
        "ps": [f"localhost:{ps}"],
    }
    base = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1", OMP_NUM_THREADS="1"
    )

    def start(task_type, index, role):
        config = {"cluster": cluster, "task": {"type": task_type, "index": index}}
        return subprocess.Popen(
            [
                sys.executable,
                __file__,
                f"--{role}",
                task_type,
                str(index),
                *(["--local_variables"] if local_variables else []),
                *(["--tfdist_calls"] if tfdist_calls else []),
            ],
            cwd=REPO,
            env=dict(base, TF_CONFIG=json.dumps(config)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    processes = [start("worker", 0, "serve"), start("worker", 1, "serve"), start("ps", 0, "serve")]
    try:
        coordinator = start("chief", 0, "coordinate")
        processes.append(coordinator)
        out, err = coordinator.communicate(timeout=1200)
        if coordinator.returncode:
            raise RuntimeError(f"the bare PSS chief failed:\n{err[-3000:]}")
        return json.loads(out.strip().splitlines()[-1])["examples_per_sec"]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def one_round():
    one = run_trainer([*JOB, "--strategy=one_device", "--steps_per_loop=234"])
    cluster = [
        *JOB,
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        f"--steps_per_loop={STEPS_PER_CALL}",
        "--noisolate_network",
    ]
    ps = run_trainer(cluster)
    local = run_trainer([*cluster, f"--sync_every={SYNC_EVERY}"])
    row = {
        "one process": one["examples_per_sec"],
        "parameter_server": ps["examples_per_sec"],
        f"parameter_server --sync_every={SYNC_EVERY}": local["examples_per_sec"],
        "bare PSS": bare_pss(),
        "bare PSS, tfdist's calls": bare_pss(tfdist_calls=True),
        "bare PSS, no ps": bare_pss(local_variables=True),
    }
    local_key = f"parameter_server --sync_every={SYNC_EVERY}"
    for key in ("parameter_server", local_key, "bare PSS", "bare PSS, no ps"):
        row[f"{key} / one process"] = row[key] / row["one process"]
    row["parameter_server / bare PSS"] = row["parameter_server"] / row["bare PSS"]
    row["tfdist's calls / full calls (bare)"] = row["bare PSS, tfdist's calls"] / row["bare PSS"]
    print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--coordinate", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--local_variables", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tfdist_calls", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return server(args.serve[0], int(args.serve[1]))
    if args.coordinate:
        return chief(args.local_variables, args.tfdist_calls)
    print_medians([one_round() for _ in range(args.repeats)], "examples/s and ratios")


if __name__ == "__main__":
    main()
