"""Where a synchronous multi_worker step's time goes, against TensorFlow's own floor.

    python benchmarks/sync_cost.py [--repeats 3] [--inputs]

On the reference job (synthetic 784 features, MLP 784-256-10, Adam, global batch 256,
3 epochs, examples/s of epochs 2..3), each round runs, back to back:
  one process   ``--strategy=one_device``, the CPUs' threads: the baseline
  compute pair  two ``one_device`` trainers at once, per-worker batch 128, one thread
                each, as a 2-worker launch gives its workers: a worker's step without
                any synchronisation, on the same shared CPUs
  multi_worker  ``--strategy=multi_worker --num_workers=2``
  all-reduce    ``benchmarks/collective_latency.py``: one all-reduce of the MLP's
                gradient (203,530 float32) between two bare MWMS processes
  bare MWMS     two processes running the same step without tfdist: a Keras MLP and Adam
                under MultiWorkerMirroredStrategy, one fixed batch of 128 per worker (no
                input pipeline), gradients all-reduced by the optimizer, 232 steps per
                ``tf.function`` call: TensorFlow's own synchronous step
  multi_worker --sync_every=8   tfdist's local SGD (``--sync_every=8``)
  bare local SGD  the bare MWMS step with the optimizer's all-reduce switched off, and
                every 8 steps one all-reduce (MEAN) of the weights written back: TensorFlow's
                own local SGD at H=8, without tfdist
and prints milliseconds per step of each (medians of the rounds, min-max), tfdist's
multi_worker step less the bare MWMS one, the sync cost (multi_worker step - compute
pair step), what is left after TensorFlow's all-reduce (sync cost - all-reduce), and
the ratio a 2-worker job could reach with no
overhead at all beyond that all-reduce: one process step / (compute step + all-reduce),
and the same ratios of the local-SGD pair.

With ``--inputs``, each round instead runs the bare local SGD at H=8 with each input in
``INPUTS``: the constant batch above, one batch repeated or tfdist's in-memory pipeline
(synthetic, global batch 256), each through a plain iterator of the worker's own dataset
(what tfdist's one-CPU-replica workers use) or MWMS's distributed iterator, and prints
ms per step of each: what reading batches costs two one-thread workers.
A benchmark, not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _runs import REPO, free_ports, print_medians, run_trainer

JOB = [
    "--dataset=synthetic",
    "--num_examples=60000",
    "--model=mlp",
    "--optimizer=adam",
    "--global_batch_size=256",
    "--epochs=3",
    "--steps_per_loop=234",
]
GLOBAL_BATCH = 256
ALL_REDUCE = "mlp gradient (203,530)"
SYNC_EVERY = 8
INPUTS = (
    "constant",
    "repeated plain",
    "repeated distributed",
    "pipeline plain",
    "pipeline distributed",
)


def _ms_per_step(examples_per_sec, batch):
    return 1000.0 * batch / examples_per_sec


def compute_pair():
    """Two one-thread one_device trainers at once (batch 128 each); their mean ms per step."""
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1", OMP_NUM_THREADS="1"
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"{i}.json") for i in range(2)]
        flags = [flag for flag in JOB if not flag.startswith("--global_batch_size")]
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tfdist.train",
                    *flags,
                    "--strategy=one_device",
                    f"--global_batch_size={GLOBAL_BATCH // 2}",
                    f"--steps_per_loop={234 * 2}",
                    f"--seed={i}",
                    f"--metrics_json={path}",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, path in enumerate(paths)
        ]
        for process in processes:
            _, err = process.communicate(timeout=1200)
            if process.returncode:
                raise RuntimeError(f"a compute-pair trainer failed:\n{err[-3000:]}")
        rates = [json.load(open(path))["examples_per_sec"] for path in paths]
    return statistics.mean(_ms_per_step(rate, GLOBAL_BATCH // 2) for rate in rates)


def all_reduce_ms():
    """TensorFlow's all-reduce of the MLP gradient between two bare processes, in ms."""
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "collective_latency.py")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode:
        raise RuntimeError(f"collective_latency.py failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])[ALL_REDUCE]


def _batches(strategy, source: str, iterator: str):
    """An iterator of this worker's batches: one batch repeated, or tfdist's pipeline."""
    import tensorflow as tf

    from tfdist.data.pipeline import load_source, make_dataset_fn

    dataset_fn = make_dataset_fn(
        load_source("synthetic", num_examples=60000),
        "train",
        global_batch_size=GLOBAL_BATCH,
        training=True,
        seed=0,
    )
    if source == "repeated":
        pipeline_fn = dataset_fn
        dataset_fn = lambda context: pipeline_fn(context).take(1).cache().repeat()  # noqa: E731
    if iterator == "distributed":
        return iter(strategy.distribute_datasets_from_function(dataset_fn))
    task = strategy.cluster_resolver.task_id
    return iter(dataset_fn(tf.distribute.InputContext(2, task, 2)))


def bare_worker(steps: int, sync_every: int = 1, input_kind: str = "constant") -> None:
    """One process of the bare MWMS step (run with TF_CONFIG); prints ms per step.

    With `sync_every` H > 1, local SGD: each worker applies its own gradients and every
    H steps one all-reduce (MEAN) of the weights is written back. `input_kind` is one of
    `INPUTS`.
    """
    import time

    import keras
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((784,)), keras.layers.Dense(256, "relu"), keras.layers.Dense(10)]
        )
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
    if sync_every > 1:  # Local steps: the optimizer must not all-reduce the gradients.
        optimizer._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)
    weights = model.trainable_variables
    constant = (
        tf.random.uniform([GLOBAL_BATCH // 2, 784]),
        tf.random.uniform([GLOBAL_BATCH // 2], maxval=10, dtype=tf.int32),
    )
    batches = None if input_kind == "constant" else _batches(strategy, *input_kind.split())

    def step(batch=constant):
        x, y = batch
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = (
                tf.reduce_sum(
                    keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
                )
                / GLOBAL_BATCH
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=False))

    def average():
        local = [tf.identity(w.value) for w in weights]
        means = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.MEAN, local)
        for weight, mean in zip(weights, means, strict=False):
            weight.assign(mean)

    @tf.function
    def loop():
        for _ in tf.range(steps // sync_every):
            for _ in tf.range(sync_every):
                strategy.run(step, args=() if batches is None else (next(batches),))
            if sync_every > 1:
                strategy.run(average)

    loop()  # Trace and warm up.
    started = time.perf_counter()
    for _ in range(2):
        loop()
    print(
        json.dumps({"ms_per_step": 1000 * (time.perf_counter() - started) / (2 * steps)}),
        flush=True,
    )


def bare_mwms(steps: int = 232, sync_every: int = 1, input_kind: str = "constant") -> float:
    """The bare MWMS step between two local processes, in ms (the chief's)."""
    addresses = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps(config),
            TF_CPP_MIN_LOG_LEVEL="2",
            TF_NUM_INTRAOP_THREADS="1",
            OMP_NUM_THREADS="1",
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--bare_worker",
                    str(steps),
                    f"--sync_every={sync_every}",
                    f"--input={input_kind}",
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [process.communicate(timeout=1200) for process in processes]
    if any(process.returncode for process in processes):
        raise RuntimeError(f"a bare MWMS worker failed:\n{outputs[0][1][-3000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])["ms_per_step"]


def one_round():
    one = _ms_per_step(
        run_trainer([*JOB, "--strategy=one_device"])["examples_per_sec"], GLOBAL_BATCH
    )
    compute = compute_pair()
    multi = _ms_per_step(
        run_trainer([*JOB, "--strategy=multi_worker", "--num_workers=2", "--noisolate_network"])[
            "examples_per_sec"
        ],
        GLOBAL_BATCH,
    )
    reduce_ms = all_reduce_ms()
    bare = bare_mwms()
    local = _ms_per_step(
        run_trainer(
            [
                *JOB,
                "--strategy=multi_worker",
                "--num_workers=2",
                f"--sync_every={SYNC_EVERY}",
                "--noisolate_network",
            ]
        )["examples_per_sec"],
        GLOBAL_BATCH,
    )
    bare_local = bare_mwms(sync_every=SYNC_EVERY)
    row = {
        "one process": one,
        "compute pair": compute,
        "multi_worker": multi,
        "all-reduce": reduce_ms,
        "bare MWMS": bare,
        f"multi_worker --sync_every={SYNC_EVERY}": local,
        f"bare local SGD H={SYNC_EVERY}": bare_local,
        "multi_worker - bare MWMS": multi - bare,
        "sync cost": multi - compute,
        "left after the all-reduce": multi - compute - reduce_ms,
        "multi_worker / one process": one / multi,
        "bound: one / (compute + all-reduce)": one / (compute + reduce_ms),
        f"sync_every={SYNC_EVERY} / one process": one / local,
        f"bare local SGD H={SYNC_EVERY} / one process": one / bare_local,
        f"bound: one / (compute + all-reduce / {SYNC_EVERY})": one
        / (compute + reduce_ms / SYNC_EVERY),
    }
    print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bare_worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--inputs", action="store_true", help="time the bare local SGD's inputs instead (see above)"
    )
    parser.add_argument("--sync_every", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--input", default="constant", choices=INPUTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        return bare_worker(args.bare_worker, args.sync_every, args.input)
    if args.inputs:
        rounds = [
            {kind: bare_mwms(sync_every=SYNC_EVERY, input_kind=kind) for kind in INPUTS}
            for _ in range(args.repeats)
        ]
        return print_medians(rounds, f"bare local SGD H={SYNC_EVERY}, ms per step", digits=2)
    print_medians([one_round() for _ in range(args.repeats)], "ms per step and ratios", digits=2)


if __name__ == "__main__":
    main()
