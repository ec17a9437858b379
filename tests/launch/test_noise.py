"""TensorFlow's start-up noise: which lines `launch.noise` drops, and `QuietOutput`."""

import io

import pytest

from launch.noise import QuietOutput, is_noise

# Lines a TF 2.21 task printed on this project's CPU machines (a parameter_server run).
NOISE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796111833.601848   14178 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796111833.602190   14178 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1796111836.183076   14167 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796111842.619074   14999 function_handle_cache.cc:31] Failed to clear "
    "function handle cache: UNIMPLEMENTED: Releasing a multi-device component handle on a "
    "remote device is not yet implemented.",
]
KEPT_LINES = [
    "epoch 1/2 - loss 1.9758 - accuracy 0.5571 - val_loss 1.6141 - 1.42 s",
    "tfdist.train: warning: --max_restarts=1 without --model_dir restarts from step 0",
    "E0000 00:00:1796111842.619074   14999 grpc_server.cc:88] Worker lost: connection reset",
    "E0000 00:00:1796111836.183076   14167 cuda_platform.cc:52] cuDNN version mismatch",
    "Traceback (most recent call last):",
    "ValueError: Could not find cuda drivers on your machine",  # Not a C++ log record.
]


@pytest.mark.parametrize("line", NOISE_LINES)
def test_start_up_noise_is_noise(line):
    assert is_noise(line) and is_noise(line + "\n")


@pytest.mark.parametrize("line", KEPT_LINES)
def test_other_lines_are_not(line):
    assert not is_noise(line)


def test_quiet_output_drops_noise_past_the_task_prefix_and_keeps_the_rest():
    target = io.StringIO()
    quiet = QuietOutput(target)
    for i, line in enumerate(NOISE_LINES + KEPT_LINES):
        quiet.write(f"[{'chief:0' if i % 2 else 'worker:1'}] {line}\n")
    kept = target.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in kept] == KEPT_LINES
    assert quiet.dropped == len(NOISE_LINES)


def test_quiet_output_joins_partial_writes_and_resolves_a_callable_target():
    target = io.StringIO()
    quiet = QuietOutput(lambda: target)
    quiet.write("[ps:0] " + NOISE_LINES[2][:20])
    quiet.write(NOISE_LINES[2][20:] + "\n[ps:0] serving")
    assert target.getvalue() == ""
    quiet.write(" on grpc://localhost:1\n")
    quiet.flush()
    assert target.getvalue() == "[ps:0] serving on grpc://localhost:1\n"
