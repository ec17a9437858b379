"""Each example exactly once per epoch: ids read by real worker processes, every policy.

One launch per cluster: ``multi_worker`` with 1, 2 and 3 workers (2 also reading one
pass through a tf.data service with 2 data workers), and ``parameter_server`` with 2
workers (also through the service). ``sharding_job.py`` records the ids; the
examples are 240 ids, the global batch 12 (an epoch is 20 steps).
"""

import collections
import io
import json
import os
import sys

import data_files
import pytest
from e2e_helpers import REPO

from launch import plan_local_cluster, plan_local_launch, run_local
from launch.data_service import plan_data_service

SCRIPT = os.path.join(REPO, "tests", "e2e", "sharding_job.py")
ALL = list(range(240))
EXACT = ("data", "random", "random_again", "random_seed1", "auto_arrays", "file_even", "auto_even")
# Shuffled training under `data` deals each epoch's order of the whole split anew among the
# workers (tfdist.data.in_memory), so a worker reads other examples each epoch.
DEALT = ("data", "auto_arrays")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards")
    data_files.write_tfrecords(str(directory), [40] * 6, prefix="even")
    data_files.write_tfrecords(str(directory), [100, 60, 50, 30], prefix="uneven")
    return directory


def _launch(out_dir, data_dir, *, strategy, workers, service):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    command = [sys.executable, SCRIPT, str(out_dir), str(data_dir)]
    servers = []
    if service:
        plan = plan_data_service(
            command=[sys.executable, "-m", "tfdist.data_service"], num_workers=2, base_env=env
        )
        command.append(plan.address)
        servers = list(plan.launches)
    cluster = plan_local_cluster(
        strategy=strategy, num_workers=workers, num_ps=1 if strategy == "parameter_server" else 0
    )
    launches = plan_local_launch(
        cluster=cluster,
        strategy=strategy,
        command=command,
        server_command=[sys.executable, "-m", "tfdist.server"],
        base_env=env,
    )
    output = io.StringIO()
    result = run_local([*servers, *launches], output=output)
    assert result.exit_code == 0, result.summary() + output.getvalue()[-4000:]


def _flat(lists):
    return [i for part in lists for i in part]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_multi_worker_every_policy(tmp_path, data_dir, workers):
    _launch(tmp_path, data_dir, strategy="multi_worker", workers=workers, service=workers == 2)
    results = [json.loads((tmp_path / f"worker_{i}.json").read_text()) for i in range(workers)]
    assert all(r["num_workers"] == workers for r in results)
    # The trainer feeds each one-CPU worker directly, with the context TF would give.
    assert [r["contexts"] for r in results] == [[[workers, i, workers]] * 2 for i in range(workers)]
    cases = [name for name in results[0] if name not in ("num_workers", "service", "contexts")]
    assert len(cases) >= 10, cases
    part = {}  # case -> each worker's set of ids, from the one-pass read.
    for case in cases:
        once = [_flat(r[case]["pass"]) for r in results]
        part[case] = [set(ids) for ids in once]
        if case == "off" and workers > 1:  # Every worker reads everything: each id P times.
            assert collections.Counter(_flat(once)) == {i: workers for i in ALL}
            continue
        # One pass of each worker over its part: every example exactly once, all policies.
        assert sorted(_flat(once)) == ALL, case
        if "epochs" not in results[0][case]:
            continue
        for r in results:
            for epoch in r[case]["epochs"]:  # Lockstep: every step, each worker 12/workers ids.
                assert [len(step) for step in epoch] == [12 // workers] * 20, case
        epochs = [_flat(_flat(r[case]["epochs"][e]) for r in results) for e in (0, 1)]
        if case in EXACT or workers == 1:
            # Equal parts of whole batches: each training epoch is every example exactly once.
            assert sorted(epochs[0]) == ALL and sorted(epochs[1]) == ALL, case
        for r in results:  # Reshuffled each epoch: same examples, another order...
            first, second = (_flat(r[case]["epochs"][e]) for e in (0, 1))
            if case in DEALT and workers > 1:  # ...or the whole split dealt anew: others.
                assert set(first) != set(second), case
            elif case in EXACT or workers == 1:
                assert sorted(first) == sorted(second) and first != second, case
    # The partition is deterministic for a seed, and another seed gives another one.
    assert part["random"] == part["random_again"]
    assert part["auto_arrays"] == part["data"] and part["auto_even"] == part["file_even"]
    # hash: the same example lands on the same worker whatever the order of the data.
    assert part["hash"] == part["hash_reordered"]
    if workers > 1:
        assert part["random"] != part["random_seed1"]
        # Uneven files under 'file': parts differ in size, so a training epoch of 20 steps
        # repeats some examples of the small parts and leaves out some of the large one.
        sizes = sorted(len(p) for p in part["file_uneven"])
        assert sizes[0] < sizes[-1]
        uneven_epoch = _flat(_flat(r["file_uneven"]["epochs"][0]) for r in results)
        assert len(set(uneven_epoch)) < 240
    if workers == 2:  # Through the tf.data service (distributed_epoch): exactly once per pass.
        served = [_flat(r["service"]["pass"]) for r in results]
        assert sorted(_flat(served)) == ALL  # Who gets which batch depends on timing.


def test_parameter_server_per_worker_parts_and_service(tmp_path, data_dir):
    _launch(tmp_path, data_dir, strategy="parameter_server", workers=2, service=True)
    result = json.loads((tmp_path / "chief.json").read_text())
    for policy in ("data", "random", "hash"):
        parts = [set(p) for p in result["parts"][policy]]
        assert sorted(_flat(result["parts"][policy])) == ALL  # Disjoint parts, all examples.
        # One pass: each worker (its index known only on the worker) reads exactly its part.
        by_worker = collections.defaultdict(list)
        for worker, ids in result[policy]["pass"]:
            by_worker[worker].extend(ids)
        assert {w: sorted(ids) for w, ids in by_worker.items()} == {
            w: sorted(p) for w, p in enumerate(parts)
        }, policy
        # Training: a worker only ever reads its own part, a pass at a time (no repeats
        # within a pass); which worker runs how many steps is up to the coordinator, so
        # an epoch of 20 steps over all workers is not exactly once.
        streams = collections.defaultdict(list)
        for worker, ids in result[policy]["epochs"]:
            assert set(ids) <= parts[worker], policy
            streams[worker].extend(ids)
        for worker, stream in streams.items():
            quota = min(len(parts[worker]), 120)
            for start in range(0, len(stream), quota):
                chunk = stream[start : start + quota]
                assert len(set(chunk)) == len(chunk), (policy, worker)
    served = [ids for _, ids in result["service"]["pass"]]
    assert sorted(_flat(served)) == ALL  # The service: exactly once over both workers.
