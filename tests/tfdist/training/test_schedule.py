"""The plan of loop calls (shorter toward a segment's end under parameter_server), and
WorkerSteps: each parameter-server worker's steps, kept across checkpoints.

The counting from real scheduled results runs as processes in
tests/e2e/test_slow_worker_e2e.py; here the plan, the bookkeeping and its checkpoint.
"""

import tensorflow as tf

from tfdist.training.schedule import WorkerSteps, loop_segments, shrinking_calls


def test_steps_are_added_per_worker_and_written_on_commit():
    steps = WorkerSteps(2)
    steps.start()
    steps.add(0, 8)
    steps.add(1, 4)
    steps.add(0, 8)
    assert steps.counts == [16, 4]
    assert list(steps.variable.numpy()) == [0, 0]  # Not before the segment ends.
    steps.commit()
    assert list(steps.variable.numpy()) == [16, 4]


def _saved(tmp_path, counts):
    steps = WorkerSteps(len(counts))
    steps.start()
    for worker, n in enumerate(counts):
        steps.add(worker, n)
    steps.commit()
    return tf.train.Checkpoint(worker_steps=steps.variable).save(str(tmp_path / "ckpt"))


def _restored(path, num_workers):
    steps = WorkerSteps(num_workers)
    tf.train.Checkpoint(worker_steps=steps.variable).restore(path).assert_consumed()
    steps.start()
    return steps


def test_a_checkpoint_of_fewer_workers_restores_with_room_for_the_new_ones(tmp_path):
    steps = _restored(_saved(tmp_path, [46]), 3)
    steps.add(2, 5)
    assert steps.counts == [46, 0, 5]


def test_a_checkpoint_of_more_workers_keeps_their_counts(tmp_path):
    steps = _restored(_saved(tmp_path, [30, 10, 6]), 2)
    steps.add(1, 4)
    assert steps.counts == [30, 14, 6] and sum(steps.counts) == 50


def test_calls_for_free_workers_shrink_toward_the_segments_end():
    calls = shrinking_calls(234, 32, 2)
    assert sum(calls) == 234 and max(calls) == 32 and calls[:4] == [32] * 4
    assert calls == sorted(calls, reverse=True) and calls[-2] == 4  # At least 32 // 8 but the rest.
    assert shrinking_calls(10, 32, 2) == [4, 4, 2]
    assert shrinking_calls(3, 1, 2) == [1, 1, 1]


def test_parameter_server_segments_still_end_at_checkpoints():
    segments = loop_segments(
        0, 100, every=40, steps_per_loop=8, one_call_each=False, free_workers=2
    )
    assert [sum(s) for s in segments] == [40, 40, 20]
    assert segments[0] == shrinking_calls(40, 8, 2)
    assert loop_segments(0, 20, every=None, steps_per_loop=8, one_call_each=False) == [[8, 8, 4]]
