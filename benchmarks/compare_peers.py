"""Throughput of tfdist against its peers on the reference job, measured in one run.

Reference job (as ../shared/peers/peer_bench.py): MLP 784-256-10, Adam, global batch
256, 60,000 synthetic examples, examples/s over epochs 2..3 (epoch 1 is warm-up).

    python benchmarks/compare_peers.py [--peers PATH] [--repeats N] [--only one_process,...]
        [--jax_python PATH]

Pairs, each run back to back on this machine:
  one_process       tfdist one_device        vs Keras 3 model.fit, best steps_per_execution
  multi_worker      tfdist 2 local workers   vs legacy tf-keras fit under MWMS (spe 32)
  parameter_server  tfdist 2 workers + 1 ps  vs legacy tf-keras fit under PSS (spe 32)
Each pair measures tfdist three times. Its ``Trainer`` from the command line
(``python -m tfdist.train --dataset=synthetic``: examples generated in the graph), the
row compared with the peers as before. Its Keras front door ``tfdist.fit``
(keras_fit_job.py: a compiled Keras model, the peers' 60,000 x 784 NumPy arrays, the same
steps per loop, through ``python -m launch`` for the clusters). And the ``Trainer`` on those
same arrays through its Python API (keras_fit_job.py ``--loop trainer``: ``numpy_source``,
the same network and optimizer), so that ``fit/Trainer`` compares two runs that differ
only by the front door, not by their input (arrays go through the data layer as a
constant of the pipeline; the synthetic source is made in the graph). ``fit/peer`` and
``fit/Trainer`` say what the front door costs (issue #12 asks for >= 1.0x Keras 3 fit in
one process and >= 0.95x the Trainer under each strategy); ``arrays/synthetic`` is the
Trainer on the arrays against the command line's Trainer, the input's own cost.
With ``--jax_python`` (a Python with Keras and JAX, e.g. a venv with the `bench-jax`
extra), each round of ``one_process`` also runs Keras 3 ``fit`` on JAX in one process and
each round of ``multi_worker`` ``keras.distribution.DataParallel`` over 2 processes
(keras_jax_job.py, the same arrays), and a second table puts them beside tfdist: the ratios
to tfdist's runs of the same pair and each side's 2 processes against its own one process.
Prints one line per measurement, then the tables of ratios and one JSON line. The tf-keras
peers need `pip install tf-keras` (the `bench` extra). This is a benchmark, not a test:
nothing here asserts a time.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

from _runs import REPO, run_trainer

FIT_JOB = os.path.join(REPO, "benchmarks", "keras_fit_job.py")
JAX_JOB = os.path.join(REPO, "benchmarks", "keras_jax_job.py")

DEFAULT_PEERS = os.path.join(REPO, "..", "shared", "peers", "peer_bench.py")
JOB = [
    "--dataset=synthetic",
    "--num_examples=60000",
    "--model=mlp",
    "--optimizer=adam",
    "--learning_rate=0.001",
    "--global_batch_size=256",
    "--epochs=3",
]
OURS = {
    "one_process": ["--strategy=one_device", "--steps_per_loop=234"],
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2", "--steps_per_loop=234"],
    "parameter_server": [
        "--strategy=parameter_server",
        "--num_workers=2",
        "--num_ps=1",
        "--steps_per_loop=32",
    ],
}
FIT_LAUNCH = {
    "one_process": [],
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2"],
    "parameter_server": ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1"],
}
PEERS = {
    "one_process": [
        ["keras3_fit", "--spe", "1"],
        ["keras3_fit", "--spe", "32"],
        ["keras3_fit", "--spe", "234"],
    ],
    "multi_worker": [["tfkeras_mwms", "--workers", "2", "--spe", "32"]],
    "parameter_server": [["tfkeras_pss", "--workers", "2", "--ps", "1", "--spe", "32"]],
}
# Keras 3 on JAX (keras_jax_job.py), run with --jax_python beside tfdist's run of the pair.
KERAS_JAX = {
    "one_process": ["one_process", "--spe", "32"],
    "multi_worker": ["data_parallel", "--processes", "2", "--spe", "32"],
}
JAX_HOW_TO = (
    "pass --jax_python PATH, a Python with keras and jax[cpu] (the bench-jax extra, "
    "or a venv of its own with the same keras version and jax[cpu])"
)


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def run_ours(flags):
    return run_trainer([*JOB, *flags])["examples_per_sec"]


def _steps_per_loop(pair):
    return next(f for f in OURS[pair] if f.startswith("--steps_per_loop=")).split("=")[1]


def run_job(pair, loop="fit"):
    """keras_fit_job.py's ``--loop`` (``fit`` or ``trainer``) on the reference job's arrays;
    the chief's examples/s."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "job.json")
        job = [
            sys.executable,
            FIT_JOB,
            out,
            f"--steps_per_loop={_steps_per_loop(pair)}",
            f"--loop={loop}",
        ]
        launch = (
            [sys.executable, "-m", "launch", *FIT_LAUNCH[pair], "--"] if FIT_LAUNCH[pair] else []
        )
        env = dict(_env(), PYTHONPATH=REPO)
        env.pop("TF_CONFIG", None)
        done = subprocess.run(
            [*launch, *job], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200
        )
        if done.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(
                f"keras_fit_job.py --loop={loop} ({pair}) failed "
                f"({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
            )
        with open(out) as f:
            return json.load(f)["examples_per_sec"]


def run_peer(peers_script, args, python=sys.executable):
    """Runs a peer script that prints one JSON line last; returns its examples/s."""
    out = subprocess.run(
        [python, peers_script, *args],
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["examples_per_sec"]


def _peers_here(pair):
    """The peer variants of ``pair`` this machine can run (tf-keras ones need tf_keras)."""
    has_tf_keras = importlib.util.find_spec("tf_keras") is not None
    kept = [args for args in PEERS[pair] if has_tf_keras or not args[0].startswith("tfkeras")]
    if len(kept) < len(PEERS[pair]):
        print(f"  {pair:17s} tf-keras peers skipped: pip install tf-keras to run them", flush=True)
    return kept


def keras_jax_python(path):
    """``path`` if Keras and JAX import there, else None, after one line saying why."""
    if path is None:
        print(f"  Keras-on-JAX peers skipped: {JAX_HOW_TO}", flush=True)
        return None
    check = [path, "-c", "import jax, keras"]
    env = dict(os.environ, KERAS_BACKEND="jax")  # As keras_jax_job.py's training processes.
    try:
        subprocess.run(check, env=env, check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as e:
        why = (e.stderr.strip().splitlines() or [f"exit code {e.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        why = str(e)
    else:
        return path
    print(f"  Keras-on-JAX peers skipped: {path} cannot import jax and keras ({why}); {JAX_HOW_TO}")
    return None


def _ratio(a, b):
    return a / b if a is not None and b else None


def _x(ratio):
    return "-" if ratio is None else f"{ratio:.2f}x"


def _show(pair, what, rate):
    print(f"  {pair:17s} {what:45s} {rate:>9,.0f} ex/s", flush=True)


def measure(pair, peers_script, repeats, jax_python=None):
    """Median of ``repeats`` runs of each peer variant (with Keras on JAX where
    ``jax_python`` is given) and of ours (the command line's Trainer, tfdist.fit, the Trainer
    on fit's arrays), interleaved."""
    variants = _peers_here(pair)
    keras_jax_args = KERAS_JAX.get(pair) if jax_python else None
    ours, fits, arrays, keras_jax = [], [], [], []
    peers = {" ".join(p): [] for p in variants}
    for _ in range(repeats):
        for args in variants:
            peers[" ".join(args)].append(run_peer(peers_script, args))
            _show(pair, f"peer {' '.join(args)}", peers[" ".join(args)][-1])
        if keras_jax_args:
            keras_jax.append(run_peer(JAX_JOB, keras_jax_args, python=jax_python))
            _show(pair, f"Keras-JAX {' '.join(keras_jax_args)}", keras_jax[-1])
        ours.append(run_ours(OURS[pair]))
        _show(pair, f"tfdist {' '.join(OURS[pair])}", ours[-1])
        fits.append(run_job(pair, "fit"))
        _show(pair, f"tfdist.fit, arrays, {_steps_per_loop(pair)} steps/loop", fits[-1])
        arrays.append(run_job(pair, "trainer"))
        _show(pair, f"Trainer, arrays, {_steps_per_loop(pair)} steps/loop", arrays[-1])
    peer_medians = {name: statistics.median(v) for name, v in peers.items()}
    best_peer = max(peer_medians, key=peer_medians.get) if peer_medians else None
    peer_rate = peer_medians.get(best_peer)
    trainer, fit = statistics.median(ours), statistics.median(fits)
    on_arrays = statistics.median(arrays)
    # Per round (runs back to back), then the median and range of the rounds' ratios.
    rounds = [f / t for f, t in zip(fits, arrays, strict=False)]
    return {
        "pair": pair,
        "tfdist": trainer,
        "peer": best_peer,
        "peer_examples_per_sec": peer_rate,
        "all_peers": peer_medians,
        "ratio": _ratio(trainer, peer_rate),
        "fit": fit,
        "trainer_arrays": on_arrays,
        "fit_vs_peer": _ratio(fit, peer_rate),
        "fit_vs_trainer": _ratio(fit, on_arrays),
        "fit_vs_trainer_rounds": rounds,
        "fit_vs_trainer_round_median": statistics.median(rounds),
        "arrays_vs_synthetic": _ratio(on_arrays, trainer),
        "keras_jax": statistics.median(keras_jax) if keras_jax else None,
        "runs": {
            "tfdist": ours,
            "fit": fits,
            "trainer_arrays": arrays,
            "keras_jax": keras_jax,
            **peers,
        },
    }


def _range(values):
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def print_keras_jax(results):
    """Keras 3 on JAX beside tfdist, pair by pair: examples/s, tfdist's Trainer (command
    line) and tfdist.fit against it, and each side's pair against its own one process."""
    rows = [r for r in results if r["keras_jax"] is not None]
    if not rows:
        return
    one = next((r for r in results if r["pair"] == "one_process"), {})
    print(
        "\n| pair | Keras-JAX run | Keras-JAX ex/s | Trainer ex/s | Trainer/Keras-JAX "
        "| fit/Keras-JAX | Keras-JAX/own one process | Trainer/own one process |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['pair']} | {' '.join(KERAS_JAX[r['pair']])} | {r['keras_jax']:,.0f} | "
            f"{r['tfdist']:,.0f} | {_x(_ratio(r['tfdist'], r['keras_jax']))} | "
            f"{_x(_ratio(r['fit'], r['keras_jax']))} | "
            f"{_x(_ratio(r['keras_jax'], one.get('keras_jax')))} | "
            f"{_x(_ratio(r['tfdist'], one.get('tfdist')))} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default=DEFAULT_PEERS, help="path of peer_bench.py")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(OURS), help="comma-separated pairs")
    parser.add_argument(
        "--jax_python",
        default=None,
        help="a Python with keras and jax[cpu]: also runs Keras 3 on JAX (keras_jax_job.py) "
        "in the one_process and multi_worker rounds; skipped without it",
    )
    args = parser.parse_args()
    pairs = [p for p in args.only.split(",") if p]
    unknown = [p for p in pairs if p not in OURS]
    if unknown:
        parser.error(f"unknown pair(s) {unknown}; expected some of: {', '.join(OURS)}")
    if not os.path.exists(args.peers):
        parser.error(f"peer script not found at {args.peers}; pass --peers PATH")
    jax_python = keras_jax_python(args.jax_python)
    results = [measure(pair, args.peers, args.repeats, jax_python) for pair in pairs]
    print(
        "\n| pair | Trainer ex/s | Trainer, arrays ex/s | tfdist.fit ex/s | best peer "
        "| peer ex/s | Trainer/peer | fit/peer | fit/Trainer (arrays) | per round "
        "| arrays/synthetic |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for r in results:
        peer_rate = r["peer_examples_per_sec"]
        print(
            f"| {r['pair']} | {r['tfdist']:,.0f} | {r['trainer_arrays']:,.0f} | "
            f"{r['fit']:,.0f} | {r['peer'] or '-'} | "
            f"{'-' if peer_rate is None else f'{peer_rate:,.0f}'} | {_x(r['ratio'])} | "
            f"{_x(r['fit_vs_peer'])} | {_x(r['fit_vs_trainer'])} | "
            f"{_range(r['fit_vs_trainer_rounds'])} | {_x(r['arrays_vs_synthetic'])} |"
        )
    print_keras_jax(results)
    print(json.dumps({"cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
