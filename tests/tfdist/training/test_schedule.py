"""The plan of loop calls (shorter toward a segment's end under parameter_server), and
WorkerSteps: each parameter-server worker's steps, kept across checkpoints.

The counting from real scheduled results runs as processes in
tests/e2e/test_slow_worker_e2e.py; here the plan, the bookkeeping and its checkpoint.
"""

import tensorflow as tf

from tfdist.data.epochs import Call, EpochPlan, calls
from tfdist.training.schedule import (
    WorkerSteps,
    cut_at,
    pieces,
    segments_ending,
    shrinking_calls,
)


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


def test_keras_calls_start_at_multiples_of_steps_per_execution():
    assert calls(0, 10, 4) == [Call(0, 4, 3), Call(4, 4, 7), Call(8, 2, 11)]
    assert calls(5, 10, 4) == [Call(5, 3, 7), Call(8, 2, 11)]  # A resumed epoch.
    assert calls(0, 3, 1) == [Call(0, 1, 0), Call(1, 1, 1), Call(2, 1, 2)]


def test_a_checkpoint_inside_a_call_cuts_it():
    cut = cut_at(calls(0, 10, 4), 20, every=6)  # Global steps 20..29: a checkpoint at 24.
    assert [(c.first, c.steps) for c in cut] == [(0, 4), (4, 4), (8, 2)]
    cut = cut_at(calls(0, 10, 4), 0, every=6)
    assert [(c.first, c.steps, c.last) for c in cut] == [
        (0, 4, 3),
        (4, 2, 5),
        (6, 2, 7),
        (8, 2, 11),
    ]


def test_segments_end_where_the_runner_says():
    planned = calls(0, 10, 2)
    segments = segments_ending(planned, 0, lambda step: step % 4 == 0)
    assert [[c.first for c in s] for s in segments] == [[0, 2], [4, 6], [8]]


def test_parameter_server_pieces_shrink_toward_the_segments_end_inside_each_call():
    planned = calls(0, 40, 8)
    cut = pieces(planned, 8, free_workers=2)
    assert [sum(p) for p in cut] == [8] * 5
    assert cut[0] == [8] and len(cut[-1]) > 1  # Whole pieces first, shorter ones last.
    assert pieces(calls(0, 40, 40), 8, free_workers=2) == [shrinking_calls(40, 8, 2)]


def test_epoch_plans_follow_keras():
    assert EpochPlan(3).epoch_lengths(3) == [3, 3, 3]
    # steps_per_epoch below a pass: epochs go on in the pass and end early when it runs out.
    assert EpochPlan(10, steps_per_epoch=4).epoch_lengths(5) == [4, 4, 2, 4, 4]
    assert EpochPlan(3, steps_per_epoch=5).epoch_lengths(2) == [3, 3]
    assert EpochPlan(None, steps_per_epoch=7, endless=True).epoch_lengths(2) == [7, 7]
    assert not EpochPlan(None).known and EpochPlan(None).params_steps is None


def test_local_steps_pieces_are_whole_rounds_but_at_a_calls_end():
    # A 46-step epoch in calls of 32 (the digits job), rounds of 8 on 2 workers.
    cut = pieces(calls(0, 46, 32), 32, free_workers=2, multiple=8)
    assert [sum(p) for p in cut] == [32, 14]
    assert all(size % 8 == 0 for p in cut for size in p[:-1]), cut
    assert pieces(calls(0, 46, 32), 32, free_workers=2) != cut  # Without: shares of 12.
