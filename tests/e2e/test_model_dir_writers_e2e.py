"""Two launched multi_worker jobs given one model_dir at once: the second ends within a
minute with one line naming the first, and writes nothing; the first trains on to its
planned step, its checkpoints its own (tfdist.training.model_dir_lock)."""

import json
import sys
import time

from e2e_helpers import explain, run_trainer, start_command

JOB = ["--strategy=multi_worker", "--num_workers=2", "--epochs=60", "--checkpoint_every_steps=100"]
STEPS = 60 * (1500 // 64)  # digits: 1,500 training examples, global batch 64.


def test_a_second_job_in_the_same_model_dir_gets_one_line_and_the_first_is_untouched(tmp_path):
    model_dir, metrics = tmp_path / "m", tmp_path / "first.json"
    first_argv = [sys.executable, "-m", "tfdist.train", *JOB, f"--model_dir={model_dir}"]
    with open(tmp_path / "first.log", "w") as log:
        first = start_command([*first_argv, f"--metrics_json={metrics}"], log)
        deadline = time.time() + 120
        while not list(model_dir.glob("checkpoints/ckpt-*.index")):
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the first job wrote no checkpoint in 120 s"
            time.sleep(0.05)
        started = time.time()
        (tmp_path / "second").mkdir()
        second, summary = run_trainer(tmp_path / "second", *JOB, f"--model_dir={model_dir}")
        took = time.time() - started
        code = first.wait(timeout=240)

    output = second.stdout + second.stderr
    # The chief's one line; the launcher's report of the failure quotes it once more.
    said = [line for line in second.stdout.splitlines() if "is being written by another" in line]
    assert second.returncode != 0 and summary is None, explain(second)
    assert len(said) == 1 and f"model_dir ({model_dir})" in said[0], explain(second)
    assert "Traceback" not in output, explain(second)
    assert took < 60, took
    assert code == 0, (tmp_path / "first.log").read_text()[-3000:]
    result = json.loads(metrics.read_text())
    assert result["steps"] == STEPS and result["restored_from"] is None
