"""Communication levers as real processes: accumulation, compression, collective options,
mixed precision under every strategy."""

import keras
import numpy as np
import pytest
from e2e_helpers import explain, run_trainer

MLP_DIGITS_PARAMS = 64 * 256 + 256 + 256 * 10 + 10  # Gradient elements per step.
SGD = [
    "--optimizer=sgd",
    "--learning_rate=0.1",
    "--noshuffle",
    "--seed=3",
    "--epochs=1",
    "--steps_per_epoch=5",
]


def _weights(model_dir):
    return [np.asarray(w) for w in keras.saving.load_model(model_dir / "model.keras").weights]


def test_four_micro_batches_of_64_equal_one_batch_of_256_under_multi_worker(tmp_path):
    runs = {}
    for name, flags in {
        "k1": ["--global_batch_size=256"],
        "k4": ["--global_batch_size=64", "--grad_accum_steps=4"],
    }.items():
        model_dir = tmp_path / name
        process, summary = run_trainer(
            tmp_path / name,
            "--strategy=multi_worker",
            "--num_workers=2",
            *SGD,
            *flags,
            f"--model_dir={model_dir}",
        )
        assert process.returncode == 0, explain(process)
        assert summary["steps"] == 5  # Optimizer updates, not micro-batches.
        runs[name] = _weights(model_dir)
    for a, b in zip(runs["k1"], runs["k4"], strict=False):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_fp16_compression_halves_the_bytes_and_keeps_accuracy(tmp_path):
    process, summary = run_trainer(
        tmp_path,
        "--strategy=multi_worker",
        "--num_workers=2",
        "--grad_compression=fp16",
        "--all_reduce_pack_bytes=32768",
        "--collective_implementation=ring",
        "--collective_timeout=120",
    )
    assert process.returncode == 0, explain(process)
    assert summary["allreduce_bytes_per_step"] == MLP_DIGITS_PARAMS * 2  # float32 would be ×4.
    assert summary["val_accuracy"] >= 0.93, summary


@pytest.mark.parametrize(
    "flags",
    [
        ["--strategy=mirrored", "--mixed_precision=mixed_float16"],
        [
            "--strategy=multi_worker",
            "--num_workers=2",
            "--mixed_precision=mixed_float16",
            "--grad_compression=bf16",
        ],
        [
            "--strategy=parameter_server",
            "--num_workers=2",
            "--num_ps=1",
            "--mixed_precision=mixed_bfloat16",
        ],
    ],
    ids=["mirrored_fp16", "multi_worker_fp16_bf16wire", "parameter_server_bf16"],
)
def test_mixed_precision_trains_under_each_strategy(tmp_path, flags):
    process, summary = run_trainer(tmp_path, *flags, "--epochs=8")
    assert process.returncode == 0, explain(process)
    precision = next(f for f in flags if f.startswith("--mixed_precision="))
    assert summary["mixed_precision"] == precision.split("=")[1]
    assert np.isfinite(summary["train_loss"]) and summary["val_accuracy"] >= 0.9, summary
