"""What one MultiWorkerMirrored all-reduce costs on this machine, without tfdist around it.

    python benchmarks/collective_latency.py [--iterations 300]

Starts two worker processes on loopback (TF_CONFIG per process) that run, inside one
``tf.function`` each, ``iterations`` all-reduces of a scalar, of the reference MLP's
gradient (203,530 float32) and of that with Adam's two slots (local SGD's sync), and
print milliseconds per all-reduce. That is TensorFlow's collective floor: a synchronous
step of the trainer cannot cost less than one of these. A benchmark, not a test.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from _runs import free_ports

SIZES = {"scalar": 1, "mlp gradient (203,530)": 203_530, "weights + 2 slots (610,590)": 610_590}


def worker(iterations):
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    results = {}
    for name, size in SIZES.items():
        value = tf.ones([size])

        @tf.function
        def loop(value=value, size=size):
            def step(v):
                return tf.distribute.get_replica_context().all_reduce(
                    tf.distribute.ReduceOp.SUM, tf.identity(v)
                )  # On the replica device.

            total = tf.zeros([size])
            for _ in tf.range(iterations):
                reduced = strategy.run(step, args=(value + total * 0.0,))
                total = strategy.experimental_local_results(reduced)[0]
            return total

        loop()  # Trace and warm up.
        started = time.perf_counter()
        loop()
        results[name] = 1000 * (time.perf_counter() - started) / iterations
    print(json.dumps(results), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.iterations)
    addresses = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config), TF_CPP_MIN_LOG_LEVEL="2")
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", f"--iterations={args.iterations}"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=900)[0] for p in processes]
    chief = json.loads(outputs[0].strip().splitlines()[-1])
    for name, ms in chief.items():
        print(f"  {name:30s} {ms:6.2f} ms per all-reduce")
    print(json.dumps(chief))


if __name__ == "__main__":
    main()
