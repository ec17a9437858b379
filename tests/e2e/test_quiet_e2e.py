"""Quiet by default: a launched parameter_server cluster (2 workers, 1 ps, chief) prints its
progress without TensorFlow's start-up noise; --verbose shows it."""

import re

from e2e_helpers import explain, run_trainer

# Counted on the raw output, independently of launch.noise's own patterns.
NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub\.cc|failed call to cuInit|"
    r"function_handle_cache\.cc|oneDNN custom operations|"
    r"To make it possible to preserve tf\.data options"
)
CLUSTER = ("--strategy=parameter_server", "--num_workers=2", "--num_ps=1")


def _lines(process):
    return (process.stdout + process.stderr).splitlines()


def test_a_launched_cluster_prints_no_start_up_noise(tmp_path):
    process, summary = run_trainer(tmp_path, *CLUSTER, "--epochs=2")
    assert process.returncode == 0, explain(process)
    lines = _lines(process)
    assert [line for line in lines if NOISE.search(line)] == []
    epochs = [line for line in lines if line.startswith("[chief:0] Epoch ")]  # Keras' progress.
    assert [line.split()[-1] for line in epochs] == ["1/2", "2/2"], lines
    for task in ("worker:0", "worker:1", "ps:0"):  # The tasks' own lines still show.
        assert any(line.startswith(f"[{task}] tfdist.server: {task} serving") for line in lines)
    assert summary["epochs"] == 2


def test_verbose_shows_it(tmp_path):
    process, _ = run_trainer(tmp_path, *CLUSTER, "--epochs=1", "--verbose")
    assert process.returncode == 0, explain(process)
    notices = [line for line in _lines(process) if "absl::InitializeLog" in line]
    # Every TensorFlow process prints absl's notice; each of the 4 tasks is one.
    assert {line.split("]")[0] for line in notices} >= {
        "[chief:0",
        "[worker:0",
        "[worker:1",
        "[ps:0",
    }, notices
