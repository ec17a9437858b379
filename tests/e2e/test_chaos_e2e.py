"""Chaos runs: tasks of every kind SIGKILLed again and again, some in the middle of a save.

A ``multi_worker`` x2 job and a ``parameter_server`` job (chief, 2 workers, 1 ps), each
launched by the trainer with ``--max_restarts=6``, lose a randomly chosen task at least
5 times (``tests/helpers/chaos.py``; the chief, every worker and the ps are among them,
at least two kills while a checkpoint is being written). Each run must still end with
exactly the planned number of steps; the synchronous run's final weights must equal an
uninterrupted run's within 1e-5, and the parameter-server run must reach its accuracy.
Each test prints every kill: the task, whether a save was under way, the newest complete
checkpoint, the steps lost and the seconds until the job checkpointed again.
"""

import json
import random

import keras
import numpy as np
from chaos import Chaos
from e2e_helpers import explain, run_trainer

STEPS_PER_EPOCH = 1500 // 32
EVERY = 15  # Does not divide STEPS_PER_EPOCH: no step checkpoint falls on an epoch's end.
SYNC_JOB = [
    "--num_workers=2",
    "--optimizer=sgd",
    "--learning_rate=0.05",
    "--seed=5",
    "--global_batch_size=32",
    "--epochs=12",
    "--steps_per_loop=5",
    f"--checkpoint_every_steps={EVERY}",
]
PS_JOB = [
    "--strategy=parameter_server",
    "--num_workers=2",
    "--num_ps=1",
    "--seed=5",
    "--global_batch_size=32",
    "--epochs=20",
    "--steps_per_loop=5",
    f"--checkpoint_every_steps={EVERY}",
]


def _weights(model_dir):
    return [np.asarray(w) for w in keras.saving.load_model(model_dir / "model.keras").weights]


def _run_chaos(tmp_path, flags, plan, seed):
    model_dir = tmp_path / "m"
    chaos = Chaos(
        [
            *flags,
            "--max_restarts=6",
            f"--model_dir={model_dir}",
            f"--metrics_json={tmp_path / 'summary.json'}",
        ],
        model_dir=model_dir,
        log_path=tmp_path / "run.log",
        seed=seed,
    )
    for task, mode in plan:
        assert chaos.kill_one(task, mode), (
            f"no kill {len(chaos.kills) + 1} ({task}, {mode}): {chaos.why_not}\n"
            + chaos.output()[-3000:]
        )
    code = chaos.finish()
    return chaos, code, model_dir


def _plan(kills, seed):
    """The (task, mode) kills in a random order (a job name: one of its tasks at random)."""
    kills = list(kills)
    random.Random(seed).shuffle(kills)
    return kills


def test_multi_worker_survives_repeated_kills_with_identical_weights(tmp_path):
    reference, summary = run_trainer(
        tmp_path / "ref", *SYNC_JOB, f"--model_dir={tmp_path / 'ref' / 'm'}"
    )
    assert reference.returncode == 0, explain(reference)
    planned = summary["steps"]
    assert planned == 12 * STEPS_PER_EPOCH
    plan = _plan(
        [
            ("worker:0", "saving"),
            ("worker:1", "saving"),
            ("worker:0", "random"),
            ("worker:1", "random"),
            ("worker", "random"),
        ],
        seed=11,
    )

    chaos, code, model_dir = _run_chaos(tmp_path, SYNC_JOB, plan, seed=11)

    print(chaos.report(checkpoint_every=EVERY))
    assert code == 0, chaos.output()[-4000:]
    assert len(chaos.kills) >= 5 and sum(kill.saving for kill in chaos.kills) >= 1
    result = json.loads((tmp_path / "summary.json").read_text())
    assert result["steps"] == planned
    for a, b in zip(_weights(tmp_path / "ref" / "m"), _weights(model_dir), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_parameter_server_survives_repeated_kills_of_every_task(tmp_path):
    plan = _plan(
        [
            ("chief:0", "saving"),
            ("ps:0", "saving"),
            ("worker:0", "random"),
            ("worker:1", "random"),
            ("worker", "saving"),
        ],
        seed=7,
    )

    chaos, code, _ = _run_chaos(tmp_path, PS_JOB, plan, seed=7)

    assert code == 0, chaos.output()[-4000:]
    result = json.loads((tmp_path / "summary.json").read_text())
    print(chaos.report(checkpoint_every=EVERY))
    assert len(chaos.kills) >= 5 and sum(kill.saving for kill in chaos.kills) >= 1
    assert {kill.task.split(":")[0] for kill in chaos.kills} == {"chief", "worker", "ps"}
    assert result["steps"] == 20 * STEPS_PER_EPOCH
    print(f"val_accuracy {result['val_accuracy']:.4f} after {result['steps']} steps")
    assert result["val_accuracy"] >= 0.9, result["val_accuracy"]
