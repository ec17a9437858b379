"""``tfdist.fit`` on the reference job, written as a Keras user writes it; for compare_peers.

    python benchmarks/keras_fit_job.py OUT.json [--steps_per_loop N] [--loop fit|trainer]
    python -m launch --strategy=multi_worker --num_workers=2 -- \
        python benchmarks/keras_fit_job.py OUT.json

MLP 784-256-10 (logits), Adam 1e-3, global batch 256, the 60,000 synthetic examples of
../shared/peers/peer_bench.py (uniform features, label = argmax(x·W)) as NumPy arrays,
3 epochs. The strategy is ``auto`` from TF_CONFIG (``one_device`` without one).

``--loop fit`` (the default) trains a compiled model with ``tfdist.fit(model, x, y)``;
``--loop trainer`` trains the same network on the same arrays with tfdist's ``Trainer``
through its Python API (``numpy_source`` → ``make_dataset_fn`` → ``Trainer.fit``), so
the two differ only by the front door. The chief writes ``{"examples_per_sec": ...}``:
the trainer's own measure (training seconds of epochs 2..3, as ``python -m tfdist.train``
reports), and for ``fit`` also Keras-callback wall time.
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _reference_job import BATCH, EPOCHS, EXAMPLES, EpochTimes, compile_args, data, network

import tfdist


def run_fit(dist, x, y, steps_per_loop):
    """``tfdist.fit`` of a compiled model; returns the summary the chief writes."""
    with dist.scope():
        model = network()
        model.compile(**compile_args())
    timer = EpochTimes()
    history = tfdist.fit(
        model,
        x,
        y,
        batch_size=BATCH,
        epochs=EPOCHS,
        verbose=0,
        steps_per_loop=steps_per_loop,
        callbacks=[timer],
    )
    return {
        "examples_per_sec": history.examples_per_sec(),
        "wall_examples_per_sec": timer.examples_per_sec(),
        "final_accuracy": history.history["accuracy"][-1],
    }


def run_trainer(dist, x, y, steps_per_loop):
    """tfdist's ``Trainer`` on the same arrays, through its Python API."""
    from tfdist.data.pipeline import make_dataset_fn, numpy_source

    with dist.scope():
        model = network()
        model.compile(**compile_args())
    trainer = tfdist.Trainer(dist, model, tfdist.LoopConfig(steps_per_loop=steps_per_loop))
    train_fn = make_dataset_fn(numpy_source(x, y), "train", global_batch_size=BATCH, training=True)
    history = trainer.fit(
        train_fn, epochs=EPOCHS, steps_per_epoch=EXAMPLES // BATCH, global_batch_size=BATCH
    )
    return {
        "examples_per_sec": history.examples_per_sec(),
        "final_accuracy": history.history["accuracy"][-1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--steps_per_loop", type=int, default=234)
    parser.add_argument("--loop", choices=("fit", "trainer"), default="fit")
    args = parser.parse_args()
    dist = tfdist.make_strategy("auto" if os.environ.get("TF_CONFIG") else "one_device")
    x, y = data()
    run = run_fit if args.loop == "fit" else run_trainer
    summary = run(dist, x, y, args.steps_per_loop)
    if dist.role.is_chief:
        with open(args.out, "w") as f:
            json.dump({"strategy": dist.kind, "loop": args.loop, **summary}, f)


if __name__ == "__main__":
    main()
