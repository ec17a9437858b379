"""Fewer workers: a multi_worker job that loses one of its 3 workers for good finishes with 2.

``python -m tfdist.train --num_workers=3 --min_workers=2 --max_restarts=1`` is launched by
the chaos harness (``tests/helpers/chaos.py``), which SIGKILLs worker:2 each time it runs:
the first kill spends the one restart, the second makes the launcher go on without it. The
2-worker cluster resumes from the newest checkpoint with the same global batch and must end
with exactly the planned steps and a trained model. Which examples the interrupted epoch
sees is the data layer's (``tests/tfdist/data/test_resize_resume.py``).
"""

import json

from chaos import Chaos

STEPS_PER_EPOCH = 1500 // 96  # digits' training split, global batch 96 (2 and 3 divide it).
EPOCHS = 12
JOB = [
    "--strategy=multi_worker",
    "--num_workers=3",
    "--min_workers=2",
    "--max_restarts=1",
    "--optimizer=sgd",
    "--learning_rate=0.1",
    "--seed=5",
    "--global_batch_size=96",
    f"--epochs={EPOCHS}",
    "--steps_per_loop=5",
    "--checkpoint_every_steps=10",
]


def test_a_worker_lost_for_good_leaves_a_job_that_finishes_with_two(tmp_path):
    model_dir = tmp_path / "m"
    chaos = Chaos(
        [*JOB, f"--model_dir={model_dir}", f"--metrics_json={tmp_path / 'summary.json'}"],
        model_dir=model_dir,
        log_path=tmp_path / "run.log",
        seed=3,
    )
    for number in (1, 2):
        assert chaos.kill_one("worker:2", "random", timeout=240), (
            f"no kill {number}: {chaos.why_not}\n{chaos.output()[-3000:]}"
        )
    code = chaos.finish()

    output = chaos.output()
    print(chaos.report(checkpoint_every=10))
    assert code == 0, output[-4000:]
    assert "restarting the cluster (1/1)" in output
    assert (
        "its restarts are spent: going on without it with 2 of 3 workers "
        "(--min_workers=2), from the last checkpoint"
    ) in output, output[-4000:]
    result = json.loads((tmp_path / "summary.json").read_text())
    assert result["num_workers"] == 2 and result["num_replicas"] == 2
    assert result["global_batch_size"] == 96
    assert result["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert result["restored_from"], "the 2-worker cluster must resume from a checkpoint"
    print(
        f"finished with 2 workers: {result['steps']} steps, restored from "
        f"{result['restored_from']}, val_accuracy {result['val_accuracy']:.4f}"
    )
    assert result["val_accuracy"] >= 0.9, result["val_accuracy"]
