"""How a cluster launch's records become results: `clusters.ClusterRun._collect`, no processes.

Each test writes the JSON lines the tasks of a `multi_worker` launch would have written,
ends the launch with an exit code and checks which cases got results, which got a
problem, and which the next launch would run.
"""

import json

import pytest
from clusters import ClusterRun


class Run(ClusterRun):
    """A ClusterRun whose launches only make their folder and log (nothing is started)."""

    def __init__(self, tmp_path, names):
        super().__init__("multi_worker", tmp_path, names)
        self.relaunched = []

    def start(self):
        if self.launches:
            self.relaunched.append(list(self.remaining))
        self.launches += 1
        self.folder = self.out / f"launch-{self.launches}"
        self.folder.mkdir()
        self.log = open(self.folder / "launch.log", "w")

    def end(self, code, **records):
        """`records[task]`: that task's lines, as dicts; then the launch ends with `code`."""
        for task, lines in records.items():
            with open(self.folder / f"{task}.jsonl", "w") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)
        self._collect(code)


def ran(*names):
    lines = []
    for name in names:
        lines += [{"begin": name}, {"case": name, "observation": {"name": name}}]
    return lines


@pytest.fixture
def run(tmp_path):
    run = Run(tmp_path, ["a", "b", "c", "d"])
    run.start()
    return run


def test_a_clean_launch_gives_every_case_its_observations(run):
    run.end(0, worker_0=ran("a", "b", "c", "d"), worker_1=ran("a", "b", "c", "d"))
    assert sorted(run.results) == ["a", "b", "c", "d"]
    assert run.results["c"] == {"worker_0": {"name": "c"}, "worker_1": {"name": "c"}}
    assert run.relaunched == [] and run.unexplained_exits == []


def test_a_hung_case_fails_alone_and_the_cluster_goes_on_after_it(run):
    hung = ran("a") + [{"begin": "b"}, {"timeout": "b"}]
    run.end(3, worker_0=hung, worker_1=ran("a") + [{"begin": "b"}])
    assert "crashed or hung" in run.results["b"]["problem"]
    assert "past the case timeout" in run.results["b"]["problem"]
    assert run.relaunched == [["c", "d"]]
    run.end(0, worker_0=ran("c", "d"), worker_1=ran("c", "d"))
    assert [("problem" in run.results[name]) for name in "abcd"] == [False, True, False, False]


def test_a_restart_after_a_runtime_error_keeps_that_case_and_blames_none_after_it(run):
    worker_0 = ran("a", "b") + [{"restart_after": "b"}]
    worker_1 = ran("a", "b") + [{"begin": "c"}]  # Stopped by the launcher inside c.
    run.end(4, worker_0=worker_0, worker_1=worker_1)
    assert run.results["b"] == {"worker_0": {"name": "b"}, "worker_1": {"name": "b"}}
    assert "c" not in run.results and run.relaunched == [["c", "d"]]
    assert run.unexplained_exits == []


def test_a_case_one_worker_did_not_finish_is_that_case_s_problem(run):
    worker_0 = ran("a", "b") + [{"restart_after": "b"}]
    run.end(4, worker_0=worker_0, worker_1=ran("a") + [{"begin": "b"}])
    assert "crashed or hung" in run.results["b"]["problem"]
    assert run.relaunched == [["c", "d"]]


def test_a_cluster_that_never_ran_a_case_is_not_started_again(run):
    run.end(1)
    assert all("before this case began" in run.results[name]["problem"] for name in "abcd")
    assert run.relaunched == []


def test_a_failed_exit_after_the_last_case_is_reported(run):
    run.end(1, worker_0=ran("a", "b", "c", "d"), worker_1=ran("a", "b", "c", "d"))
    assert not any("problem" in result for result in run.results.values())
    assert len(run.unexplained_exits) == 1 and "exit 1" in run.unexplained_exits[0]


def test_launches_are_bounded(run, monkeypatch):
    monkeypatch.setattr("clusters.MAX_LAUNCHES", 2)
    run.end(3, worker_0=[{"begin": "a"}], worker_1=[{"begin": "a"}])
    run.end(3, worker_0=[{"begin": "b"}], worker_1=[{"begin": "b"}])
    assert "launches used up" in run.results["c"]["problem"]
    assert "launches used up" in run.results["d"]["problem"]
