"""One process against Keras on JAX: how much of the gap is tfdist's, how much TensorFlow's.

    python benchmarks/one_process_cost.py --jax_python .venv-jax/bin/python [--repeats 3]

On the reference job (``_reference_job``: MLP 784-256-10, Adam 1e-3, global batch 256,
60,000 synthetic examples, 3 epochs, examples/s of epochs 2..3), each round runs, back to
back, each in a fresh process with the CPUs' default threads:
  tfdist                ``python -m tfdist.train --strategy=one_device`` (synthetic,
                        ``--steps_per_loop=234``), as compare_peers.py runs it
  tfdist --jit_compile  the same with the whole step compiled by XLA
  Keras-TF fit, XLA     Keras 3's own ``model.fit`` on TensorFlow, ``jit_compile=True``,
                        ``steps_per_execution=32``, on the reference arrays
  TF floor, XLA         no Keras loop, no input pipeline: the same Keras model and Adam
                        stepped by one ``tf.function(jit_compile=True)`` per step over
                        slices of the arrays held as one tensor, 32 steps per call: the
                        least a TensorFlow step of this job costs here
  TF floor, XLA, shuffled rows + metrics  the same, with what a fit also does: each
                        batch gathered at random rows (a shuffle) and the loss's mean and
                        the accuracy updated in the step
  Keras-JAX fit         ``keras_jax_job.py one_process --spe 32`` (``--jax_python``)
and prints examples/s of each (medians of the rounds, min-max) and each as a ratio of
Keras-JAX. What tfdist's XLA step loses to the floor that does a fit's work is tfdist's;
what that floor loses to Keras-JAX is TensorFlow's. (``--child NAME`` runs one TF job
alone: also ``tf_floor_gather`` and ``tf_floor_metrics``, one addition each.)
A benchmark, not a test: nothing here asserts a time.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from _runs import REPO, print_medians, run_trainer
from compare_peers import JAX_JOB, JOB, OURS, keras_jax_python

TRAINER = [*JOB, *OURS["one_process"]]  # As compare_peers.py runs one process.
STEPS_PER_CALL = 32


def keras_tf_fit() -> dict:
    """Keras 3's own fit on TensorFlow with XLA (run in a child process)."""
    from _reference_job import BATCH, EPOCHS, EpochTimes, compile_args, data, network

    x, y = data()
    model = network()
    model.compile(**compile_args(), jit_compile=True, steps_per_execution=STEPS_PER_CALL)
    timer = EpochTimes()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[timer])
    return {"examples_per_sec": timer.examples_per_sec()}


def tf_floor(gather: bool = False, metrics: bool = False) -> dict:
    """The job's step compiled by XLA, with no loop or pipeline around it (child process).

    Args:
      gather: each batch is 256 rows gathered at random (a shuffle, as an input pipeline
        gives them) instead of a contiguous slice of the arrays.
      metrics: the step also updates a mean of the loss and an accuracy (Keras' metrics),
        inside the XLA computation.
    """
    import keras
    import tensorflow as tf
    from _reference_job import BATCH, EPOCHS, STEPS_PER_EPOCH, compile_args, data, network

    x, y = data()
    x, y = tf.constant(x), tf.constant(y)
    model = network()
    args = compile_args()
    optimizer, loss_fn = args["optimizer"], args["loss"]
    optimizer.build(model.trainable_variables)
    mean, accuracy = keras.metrics.Mean(), keras.metrics.SparseCategoricalAccuracy()

    @tf.function(jit_compile=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = loss_fn(yb, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        if metrics:
            mean.update_state(loss)
            accuracy.update_state(yb, logits)
        return loss

    @tf.function
    def call(first):
        for i in tf.range(STEPS_PER_CALL):  # Batches taken outside XLA.
            if gather:
                rows = tf.random.uniform([BATCH], maxval=x.shape[0], dtype=tf.int32)
                step(tf.gather(x, rows), tf.gather(y, rows))
            else:  # A contiguous slice: a view, not a copy.
                start = ((first + i) % STEPS_PER_EPOCH) * BATCH
                step(tf.slice(x, [start, 0], [BATCH, 784]), tf.slice(y, [start], [BATCH]))

    calls = STEPS_PER_EPOCH // STEPS_PER_CALL
    call(tf.constant(0))  # Traces and compiles.
    started = time.perf_counter()
    for n in range((EPOCHS - 1) * calls):
        call(tf.constant(n * STEPS_PER_CALL))
    float(optimizer.iterations.numpy())  # Waits for the last step.
    seconds = time.perf_counter() - started
    return {"examples_per_sec": (EPOCHS - 1) * calls * STEPS_PER_CALL * BATCH / seconds}


CHILDREN = {
    "keras_tf_fit": keras_tf_fit,
    "tf_floor": tf_floor,
    "tf_floor_gather": lambda: tf_floor(gather=True),
    "tf_floor_metrics": lambda: tf_floor(metrics=True),
    "tf_floor_as_fit": lambda: tf_floor(gather=True, metrics=True),
}


def run_child(name: str, python: str = sys.executable, argv=None) -> float:
    """examples/s printed (last line, JSON) by a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    command = argv or [python, __file__, "--child", name]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["examples_per_sec"]


def one_round(jax_python: str) -> dict:
    row = {
        "tfdist": run_trainer(TRAINER)["examples_per_sec"],
        "tfdist --jit_compile": run_trainer([*TRAINER, "--jit_compile"])["examples_per_sec"],
        "Keras-TF fit, XLA": run_child("keras_tf_fit"),
        "TF floor, XLA": run_child("tf_floor"),
        "TF floor, XLA, shuffled rows + metrics": run_child("tf_floor_as_fit"),
        "Keras-JAX fit": run_child(
            "keras_jax",
            argv=[jax_python, JAX_JOB, "one_process", "--spe", str(STEPS_PER_CALL)],
        ),
    }
    for key in list(row):
        row[f"{key} / Keras-JAX"] = row[key] / row["Keras-JAX fit"]
    print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jax_python", help="a Python with keras and jax[cpu] (bench-jax)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child]()), flush=True)
        return
    jax_python = keras_jax_python(args.jax_python)  # None after one line saying why.
    if jax_python is None:
        sys.exit(2)
    print_medians([one_round(jax_python) for _ in range(args.repeats)], "examples/s")


if __name__ == "__main__":
    main()
