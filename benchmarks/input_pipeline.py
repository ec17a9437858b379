"""Is the input pipeline the bottleneck? Its examples/s against the training step's.

For each source (the bundled ``digits``; ``synthetic`` at the throughput job's size,
60,000 x 784; the digits training split written as TFRecord files and as CSV files,
repeated ``--copies`` times), measured in one run:

- pipeline alone: the training dataset function of ``tfdist.data.pipeline`` read as fast as
  possible in this process (one input pipeline, ``--global_batch_size`` batches):
  ``first pass`` (read, parse, fill the in-memory table), ``in memory`` (later passes:
  a permutation per epoch, one gather per batch), ``per example`` (the same examples
  cached but shuffled in a buffer and batched one by one, the streamed path's work) and
  ``uncached`` (the part too large for memory: every pass reads and parses again);
- training: ``examples_per_sec`` of a short ``python -m tfdist.train`` run on the same
  data (``--strategy``, after its warm-up epoch).

    python benchmarks/input_pipeline.py [--global_batch_size 256] [--copies 20]

Prints one line per measurement, a table, and one JSON line. This is a benchmark, not
a test: nothing here asserts a time.
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from _runs import REPO, run_trainer

sys.path.insert(0, REPO)
from tfdist.data import sharding
from tfdist.data.pipeline import load_source, make_dataset_fn, streamed_epochs


def digits_train(copies):
    """The digits training split (as ``load_source('digits')`` splits it), ``copies`` times."""
    source = load_source("digits")
    features, labels = next(iter(source.read("train").batch(source.num_train)))
    x = np.tile(features.numpy().reshape(-1, 64), (copies, 1))
    return x, np.tile(labels.numpy(), copies).astype(np.int64)


def write_tfrecords(directory, x, y, files=8):
    for i, part in enumerate(np.array_split(np.arange(len(y)), files)):
        with tf.io.TFRecordWriter(os.path.join(directory, f"train-{i:02d}.tfrecord")) as w:
            for j in part:
                w.write(
                    tf.train.Example(
                        features=tf.train.Features(
                            feature={
                                "pixels": tf.train.Feature(
                                    float_list=tf.train.FloatList(value=x[j])
                                ),
                                "label": tf.train.Feature(
                                    int64_list=tf.train.Int64List(value=[y[j]])
                                ),
                            }
                        )
                    ).SerializeToString()
                )
    return os.path.join(directory, "train-*.tfrecord")


def write_csv(directory, x, y, files=8):
    header = ",".join([f"p{k}" for k in range(64)] + ["label"])
    for i, part in enumerate(np.array_split(np.arange(len(y)), files)):
        rows = np.concatenate([x[part], y[part, None]], axis=1)
        np.savetxt(
            os.path.join(directory, f"train-{i:02d}.csv"),
            rows,
            delimiter=",",
            header=header,
            comments="",
            fmt=["%.4g"] * 64 + ["%d"],
        )
    return os.path.join(directory, "train-*.csv")


def _rate(batches, steps, batch, passes):
    """Examples/s of the first pass and of the next ``passes`` passes."""
    timings = []
    for _ in range(1 + passes):
        started = time.perf_counter()
        for _ in range(steps):
            next(batches)
        timings.append(time.perf_counter() - started)
    return steps * batch / timings[0], steps * batch * passes / sum(timings[1:])


def pipeline_rates(source, batch, passes):
    """Examples/s of the training pipeline: first pass (fills the table), in memory
    (later passes: a permutation gathered per batch), per example (the same cached
    examples shuffled in a buffer and batched one by one, as streamed parts are) and
    uncached (streamed, every pass reads and parses again)."""
    steps = source.num_train // batch
    rates = {}
    rates["first pass"], rates["in memory"] = _rate(
        iter(make_dataset_fn(source, "train", global_batch_size=batch, training=True)(None)),
        steps,
        batch,
        passes,
    )
    reader = source.splits["train"]
    cached = sharding.sharded_examples(
        reader, policy="data", num_pipelines=1, pipeline_id=0, cache=True
    )
    per_example = streamed_epochs(
        cached, batch=batch, epoch_examples=steps * batch, shuffle=True, seed=0, pipeline=0
    ).prefetch(-1)
    _, rates["per example"] = _rate(iter(per_example), steps, batch, passes)
    sharding.CACHE_BYTES = 0
    _, rates["uncached"] = _rate(
        iter(make_dataset_fn(source, "train", global_batch_size=batch, training=True)(None)),
        steps,
        batch,
        passes,
    )
    sharding.CACHE_BYTES = 1 << 30
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--global_batch_size", type=int, default=256)
    parser.add_argument(
        "--copies",
        type=int,
        default=20,
        help="times the digits training split is repeated in the files",
    )
    parser.add_argument("--strategy", default="one_device", help="strategy of the training run")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the training runs")
    args = parser.parse_args()
    batch = args.global_batch_size
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        x, y = digits_train(args.copies)
        for name in ("tfrecord", "csv"):
            os.makedirs(os.path.join(tmp, name))
        files = {
            "tfrecord": write_tfrecords(os.path.join(tmp, "tfrecord"), x, y),
            "csv": write_csv(os.path.join(tmp, "csv"), x, y),
        }
        jobs = {
            "digits": (load_source("digits"), ["--dataset=digits"], args.copies),
            "synthetic": (
                load_source("synthetic", num_examples=60000),
                ["--dataset=synthetic", "--num_examples=60000"],
                1,
            ),
            "tfrecord": (
                load_source("tfrecord", train_files=files["tfrecord"]),
                ["--dataset=tfrecord", f"--train_files={files['tfrecord']}"],
                1,
            ),
            "csv": (
                load_source("csv", train_files=files["csv"]),
                ["--dataset=csv", f"--train_files={files['csv']}"],
                1,
            ),
        }
        for name, (source, flags, repeat) in jobs.items():
            rates = pipeline_rates(source, batch, passes=max(3, repeat))
            summary = run_trainer(
                [
                    *flags,
                    f"--strategy={args.strategy}",
                    "--model=mlp",
                    f"--global_batch_size={batch}",
                    f"--epochs={args.epochs * repeat}",
                    "--steps_per_loop=64",
                ]
            )
            rates["training"] = summary["examples_per_sec"]
            results[name] = {"examples": source.num_train, **rates}
            print(
                f"{name}: {source.num_train} examples; "
                + ", ".join(f"{k} {v:,.0f} ex/s" for k, v in rates.items()),
                flush=True,
            )
    columns = ["first pass", "in memory", "per example", "uncached", "training"]
    print(
        f"\n| source | examples | {' | '.join(columns)} ({args.strategy}) | in memory / training |"
    )
    print("|---" * (len(columns) + 3) + "|")
    for name, r in results.items():
        print(
            f"| {name} | {r['examples']:,} | "
            + " | ".join(f"{r[c]:,.0f}" for c in columns)
            + f" | {r['in memory'] / r['training']:.1f}x |"
        )
    print(json.dumps({"global_batch_size": batch, "strategy": args.strategy, "results": results}))


if __name__ == "__main__":
    main()
