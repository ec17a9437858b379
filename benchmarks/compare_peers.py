"""Throughput of tfdist against its peers on the reference job, measured in one run.

Reference job (as ../shared/peers/peer_bench.py): MLP 784-256-10, Adam, global batch
256, 60,000 synthetic examples, examples/s over epochs 2..3 (epoch 1 is warm-up).

    python benchmarks/compare_peers.py [--peers PATH] [--repeats N] [--only one_process,...]

Pairs, each run back to back on this machine:
  one_process       tfdist one_device        vs Keras 3 model.fit, best steps_per_execution
  multi_worker      tfdist 2 local workers   vs legacy tf-keras fit under MWMS (spe 32)
  parameter_server  tfdist 2 workers + 1 ps  vs legacy tf-keras fit under PSS (spe 32)
Prints one line per measurement, then a table of ratios and one JSON line. The tf-keras
peers need `pip install tf-keras` (the `bench` extra). This is a benchmark, not a test:
nothing here asserts a time.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from _runs import REPO, run_trainer

DEFAULT_PEERS = os.path.join(REPO, "..", "shared", "peers", "peer_bench.py")
JOB = ["--dataset=synthetic", "--num_examples=60000", "--model=mlp", "--optimizer=adam",
       "--learning_rate=0.001", "--global_batch_size=256", "--epochs=3"]
OURS = {
    "one_process": ["--strategy=one_device", "--steps_per_loop=234"],
    "multi_worker": ["--strategy=multi_worker", "--num_workers=2", "--steps_per_loop=234"],
    "parameter_server": ["--strategy=parameter_server", "--num_workers=2", "--num_ps=1",
                         "--steps_per_loop=32"],
}
PEERS = {
    "one_process": [["keras3_fit", "--spe", "1"], ["keras3_fit", "--spe", "32"],
                    ["keras3_fit", "--spe", "234"]],
    "multi_worker": [["tfkeras_mwms", "--workers", "2", "--spe", "32"]],
    "parameter_server": [["tfkeras_pss", "--workers", "2", "--ps", "1", "--spe", "32"]],
}


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def run_ours(flags):
    return run_trainer([*JOB, *flags])["examples_per_sec"]


def run_peer(peers_script, args):
    out = subprocess.run([sys.executable, peers_script, *args], env=_env(), check=True,
                         capture_output=True, text=True, timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])["examples_per_sec"]


def measure(pair, peers_script, repeats):
    """Median of ``repeats`` runs for ours and for each peer variant, interleaved."""
    ours, peers = [], {" ".join(p): [] for p in PEERS[pair]}
    for _ in range(repeats):
        for args in PEERS[pair]:
            peers[" ".join(args)].append(run_peer(peers_script, args))
            print(f"  {pair:17s} peer {' '.join(args):40s} {peers[' '.join(args)][-1]:>9,.0f} ex/s",
                  flush=True)
        ours.append(run_ours(OURS[pair]))
        print(f"  {pair:17s} tfdist {' '.join(OURS[pair]):38s} {ours[-1]:>9,.0f} ex/s", flush=True)
    peer_medians = {name: statistics.median(v) for name, v in peers.items()}
    best_peer = max(peer_medians, key=peer_medians.get)
    return {"pair": pair, "tfdist": statistics.median(ours), "peer": best_peer,
            "peer_examples_per_sec": peer_medians[best_peer], "all_peers": peer_medians,
            "ratio": statistics.median(ours) / peer_medians[best_peer]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default=DEFAULT_PEERS, help="path of peer_bench.py")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(OURS), help="comma-separated pairs")
    args = parser.parse_args()
    pairs = [p for p in args.only.split(",") if p]
    unknown = [p for p in pairs if p not in OURS]
    if unknown:
        parser.error(f"unknown pair(s) {unknown}; expected some of: {', '.join(OURS)}")
    if not os.path.exists(args.peers):
        parser.error(f"peer script not found at {args.peers}; pass --peers PATH")
    results = [measure(pair, args.peers, args.repeats) for pair in pairs]
    print(f"\n| pair | tfdist ex/s | best peer | peer ex/s | ratio |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['pair']} | {r['tfdist']:,.0f} | {r['peer']} | "
              f"{r['peer_examples_per_sec']:,.0f} | {r['ratio']:.2f}x |")
    print(json.dumps({"cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
