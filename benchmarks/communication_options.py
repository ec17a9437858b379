"""Throughput and bytes per step of each communication option against the plain run.

    python benchmarks/communication_options.py [--workers 2] [--epochs 3]

Runs `multi_worker` on the reference job (synthetic 784 features, MLP 784-256-10, Adam,
global batch 256) once plainly and once per option, back to back, and prints
examples/s, the ratio to the plain run, the bytes each replica puts into the gradient
all-reduce per update, and the final validation accuracy. A benchmark, not a test.
"""

import argparse
import json

from _runs import run_trainer

OPTIONS = {
    "plain": [],
    "grad_compression=fp16": ["--grad_compression=fp16"],
    "grad_compression=bf16": ["--grad_compression=bf16"],
    "grad_accum_steps=4 (batch 64)": ["--grad_accum_steps=4", "--global_batch_size=64"],
    "all_reduce_pack_bytes=262144": ["--all_reduce_pack_bytes=262144"],
    "collective_implementation=ring": ["--collective_implementation=ring"],
    "mixed_precision=mixed_float16": ["--mixed_precision=mixed_float16"],
    "mixed_precision=mixed_bfloat16": ["--mixed_precision=mixed_bfloat16"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    base = [
        "--strategy=multi_worker",
        f"--num_workers={args.workers}",
        "--dataset=synthetic",
        "--num_examples=60000",
        "--global_batch_size=256",
        f"--epochs={args.epochs}",
        "--steps_per_loop=64",
    ]
    rows = []
    for name, flags in OPTIONS.items():
        summary = run_trainer(base + flags)
        rows.append(
            {
                "option": name,
                "examples_per_sec": summary["examples_per_sec"],
                "allreduce_bytes_per_step": summary["allreduce_bytes_per_step"],
                "steps": summary["steps"],
                "val_accuracy": summary["val_accuracy"],
            }
        )
        print(
            f"  {name:34s} {rows[-1]['examples_per_sec']:>9,.0f} ex/s  "
            f"{rows[-1]['allreduce_bytes_per_step']:>9,d} B/update",
            flush=True,
        )
    plain = rows[0]["examples_per_sec"]
    print("\n| option | examples/s | vs plain | all-reduce bytes/update | val_accuracy |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['option']} | {r['examples_per_sec']:,.0f} "
            f"| {r['examples_per_sec'] / plain:.2f}x "
            f"| {r['allreduce_bytes_per_step']:,d} | {r['val_accuracy']:.3f} |"
        )
    print(json.dumps({"workers": args.workers, "rows": rows}))


if __name__ == "__main__":
    main()
