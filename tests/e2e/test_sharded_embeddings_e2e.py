"""Model parallelism on parameter servers: embedding tables split across ps tasks."""

import keras
import numpy as np
import pytest
from e2e_helpers import explain, run_trainer

import tfdist.layers  # noqa: F401  (registers ShardedEmbedding for loading)
from tfdist.data.pipeline import INTERACTION_ITEMS, INTERACTION_USERS

RECOMMENDER = [
    "--strategy=parameter_server",
    "--num_workers=2",
    "--model=recommender",
    "--dataset=interactions",
    "--global_batch_size=256",
    "--epochs=6",
]


@pytest.mark.parametrize("num_ps", [2, 1])
def test_recommender_tables_live_in_parts_on_the_ps_and_train(tmp_path, num_ps):
    model_dir = tmp_path / "model"
    process, summary = run_trainer(
        tmp_path, *RECOMMENDER, f"--num_ps={num_ps}", f"--model_dir={model_dir}"
    )
    assert process.returncode == 0, explain(process)
    rows = {"user_embedding": INTERACTION_USERS, "item_embedding": INTERACTION_ITEMS}
    for table, parts in summary["tables"].items():
        devices = [part["device"] for part in parts]
        assert len(parts) == num_ps and len(set(devices)) == num_ps, parts
        assert all("/job:ps/" in device for device in devices), devices
        assert sum(part["rows"] for part in parts) == rows[table]  # The parts make the table.
    history = summary["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"], history
    assert summary["val_accuracy"] >= 0.8, summary
    exported = keras.saving.load_model(model_dir / "model.keras")
    table = exported.get_layer("user_embedding").table_value()
    assert table.shape == (INTERACTION_USERS, 16) and np.isfinite(table).all()


def test_local_steps_refuse_a_table_split_on_the_ps_in_one_line(tmp_path):
    """`--sync_every` copies the weights to each worker; a split table is updated on the ps
    row by row instead, so the two do not mix: the chief's one line (which the launcher's
    summary then quotes), exit 2, nothing trained."""
    process, summary = run_trainer(
        tmp_path, *RECOMMENDER, "--num_ps=2", "--sync_every=8", f"--model_dir={tmp_path / 'm'}"
    )

    assert process.returncode == 2, explain(process)
    output = process.stdout + process.stderr
    errors = [
        line for line in output.splitlines() if line.startswith("[chief:0] tfdist.train: error:")
    ]
    assert len(errors) == 1, explain(process)
    assert "--sync_every (8) under parameter_server keeps a copy of the weights" in errors[0]
    assert errors[0].endswith("Drop --sync_every, or use a keras.layers.Embedding."), errors[0]
    assert "Traceback" not in output
    assert summary is None
