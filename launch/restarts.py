"""The restart policy of a local launch: what happens when one of its tasks fails.

This module owns one frozen `RestartPolicy` and every decision it makes, so the rules
live in one place whichever launcher runs the tasks (like torchrun's `--max-restarts`,
for TF_CONFIG clusters):

- **In place**: a parameter_server worker server that dies is started again alone (same
  command, env and port) at most `max_restarts` times, while the coordinator carries on
  with the other workers and uses it again when it is back.
- **The whole cluster**: any other failure has already stopped every task; the cluster
  is planned anew (fresh ports) and started again, at most `max_restarts` times. The
  trainer resumes from its latest checkpoint, so a restart loses only the steps since
  then. A launch stopped by the user (SIGINT/SIGTERM to the launcher) is not restarted.
- **Fewer workers**: with `min_workers` (a `multi_worker` cluster planned here), a worker
  that cannot come back does not end the launch: when the restarts are spent and the
  failure was a worker's, that worker is dropped, the cluster is planned again with one
  worker fewer (while at least `min_workers` remain), and the smaller cluster gets
  `max_restarts` restarts of its own, as torchrun's elastic launch forms a smaller group
  when a node leaves.

It decides and words the notes; it starts nothing. Restarting a process in place is
`launch.runner`'s job, running the attempts of a cluster `launch.launcher`'s. Standard
library only.
"""

import dataclasses

from launch.errors import LaunchError, check_count
from launch.result import LaunchResult
from launch.task_launch import TaskLaunch


@dataclasses.dataclass(frozen=True)
class Decision:
    """What follows an attempt of a launch.

    Attributes:
        restart: Whether to run the cluster again (planned anew); False ends the launch.
        note: The launcher's line about the failed attempt: its root cause and what
            follows (a restart, or giving up); empty when the attempt did not fail.
        drop: The failed worker to leave out of the next plans (e.g. "worker:2"), or
            None to run the same cluster again.
    """

    restart: bool
    note: str = ""
    drop: str | None = None


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """How often a failed launch is started again, in place or as a whole cluster.

    Attributes:
        max_restarts: In-place restarts of each parameter_server worker server, and
            restarts of the whole cluster after any other failure (with
            `min_workers`: of each cluster size); 0 restarts nothing.
        min_workers: Under "multi_worker", the fewest workers to go on with when a
            worker's restarts are spent; None ends the launch then.

    Raises:
        LaunchError: If a count is not an integer in its range.
    """

    max_restarts: int = 0
    min_workers: int | None = None

    def __post_init__(self) -> None:
        check_count("max_restarts", self.max_restarts, 0)
        if self.min_workers is not None:
            check_count("min_workers", self.min_workers, 1, fix="pass --min_workers=1")

    def check_fits(self, *, strategy: str, num_workers: int, planned_here: bool) -> None:
        """Checks that a launch can go on with as few as `min_workers` workers.

        Args:
            strategy: The launch's strategy.
            num_workers: The workers of the cluster's first plan.
            planned_here: Whether the launcher plans the cluster (not hosts, Slurm
                or Kubernetes).

        Raises:
            LaunchError: One line naming the value, the rule and the fix.
        """
        min_workers = self.min_workers
        if min_workers is None:
            return
        if strategy != "multi_worker":
            raise LaunchError(
                f"min_workers ({min_workers}) is for strategy 'multi_worker', not "
                f"{strategy!r}: a parameter_server worker is restarted in place while the "
                "others go on; drop --min_workers."
            )
        if not planned_here:
            raise LaunchError(
                f"min_workers ({min_workers}) needs a cluster planned here; a cluster planned "
                "elsewhere (hosts, Slurm, Kubernetes) is resized by the engine that runs it. "
                "Drop --min_workers."
            )
        if min_workers > num_workers:
            raise LaunchError(
                f"min_workers ({min_workers}) must be at most num_workers ({num_workers}); "
                f"pass --min_workers={num_workers} or fewer."
            )

    def restarts_in_place(self, launch: TaskLaunch) -> int:
        """How often `launch` is started again in place when it exits.

        `max_restarts` for a worker that is a server (a parameter_server worker); 0
        for every other task, whose exit ends the attempt.
        """
        return self.max_restarts if launch.is_server and launch.task_type == "worker" else 0

    def in_place_note(self, launch: TaskLaunch, code: int, restart: int) -> str:
        """The line about restart number `restart` of `launch`, which exited with `code`."""
        return (
            f"{launch.name} exited with code {code}; restarting "
            f"it ({restart}/{self.restarts_in_place(launch)})"
        )

    def after(self, result: LaunchResult, *, attempt: int, restarts: int, workers: int) -> Decision:
        """What follows attempt number `attempt`, which ended with `result`.

        Args:
            result: How the attempt ended.
            attempt: Its number, from 1.
            restarts: The cluster restarts already made at this cluster size.
            workers: The attempt's worker tasks.
        """
        cause = result.root_cause
        if result.succeeded or result.interrupted_by or cause is None:
            return Decision(restart=False)
        said = cause.last_words()
        failed = f"attempt {attempt} failed ({cause.name} {cause.describe()}" + (
            f': "{said}")' if said else ")"
        )
        if restarts < self.max_restarts:
            return Decision(
                restart=True,
                note=f"{failed}; restarting the cluster ({restarts + 1}/{self.max_restarts})",
            )
        why_not_fewer = self._why_not_fewer(cause.name, workers)
        if why_not_fewer is not None:
            spent = (
                " (--max_restarts=0)"
                if not self.max_restarts
                else f": the restarts are spent ({restarts}/{self.max_restarts})"
            )
            return Decision(restart=False, note=f"{failed}; giving up{spent}{why_not_fewer}")
        return Decision(
            restart=True,
            note=f"{failed}; its restarts are spent: going on without it with {workers - 1} "
            f"of {workers} workers (--min_workers={self.min_workers}), from the last checkpoint",
            drop=cause.name,
        )

    def _why_not_fewer(self, cause: str, workers: int) -> str | None:
        """Why the cluster cannot go on without `cause` ("" without `min_workers`), or None."""
        if self.min_workers is None:
            return ""
        if not cause.startswith("worker:"):
            return f"; only a worker can be left out (--min_workers={self.min_workers})"
        if workers - 1 < self.min_workers:
            return (
                f"; {workers - 1} of {workers} workers would be fewer than "
                f"--min_workers={self.min_workers}"
            )
        return None
