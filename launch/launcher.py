"""Running a planned launch: the network namespace, restarts, the start-up line.

This module owns running what `launch.plan.plan_launch` planned, the same way
for every launcher (`python -m launch`, its `hosts --this_host`, the trainer's
local cluster, the scaling report): the tasks run in a private network
namespace when the plan allows it (`launch.network`), the start-up line
(the plan's description plus what was done about the network) goes to
`announce`, and a failed attempt is planned anew (fresh free ports) and run
again up to `max_restarts` times (`launch.restarts`). Spawning and watching
the tasks is `launch.local.run_local`'s. Standard library only.
"""

import contextlib
from typing import Callable, ContextManager, TextIO

from launch.network import Isolation, inside, private_network
from launch.plan import LaunchPlan, LaunchSpec, plan_launch
from launch.restarts import RestartReport, run_with_restarts


def _network(plan: LaunchPlan) -> ContextManager[Isolation | None]:
    """The isolation of the plan's tasks; None when the cluster also runs elsewhere."""
    if not plan.whole_cluster:
        return contextlib.nullcontext(None)
    if plan.isolate_network or not plan.spec.isolate_network:
        return private_network(enabled=plan.isolate_network)
    return contextlib.nullcontext(Isolation(
        None, "the cluster's addresses are not on loopback; only a loopback cluster can be "
              "isolated"))


def run_launch(
    spec: LaunchSpec | Callable[[], LaunchSpec],
    *,
    announce: Callable[[str], None] | None = None,
    output: TextIO | None = None,
    stop_timeout: float = 10.0,
    max_restarts: int = 0,
) -> RestartReport:
    """Plans `spec`, runs its tasks until the launch ends, and restarts it after a failure.

    Each attempt is planned anew (`plan_launch`: fresh free ports unless the
    spec gives them) and runs inside the same network namespace. The first
    plan is made before anything else, so a wrong spec raises before any
    namespace or process exists.

    Args:
        spec: What to launch, or a function returning it, called once per
            attempt (e.g. for a fresh tf.data service port).
        announce: Called with each attempt's start-up line (no program prefix).
        output: Where the tasks' prefixed output and restart notes go; None for
            `sys.stdout`.
        stop_timeout: Seconds a stopped task gets before SIGKILL.
        max_restarts: Attempts after the first one fails; 0 runs it once.

    Returns:
        The `RestartReport`; its last attempt decides the exit code.

    Raises:
        LaunchError: If the spec is invalid; nothing is started then.
    """
    make_spec = spec if callable(spec) else (lambda: spec)
    plans = [plan_launch(make_spec())]
    with _network(plans[0]) as isolation:
        def attempt():
            plan = plans.pop() if plans else plan_launch(make_spec())
            if announce is not None:
                network = "" if isolation is None else "; " + isolation.describe(
                    plan.cluster.ports())
                announce(plan.description + network)
            return list(plan.launches) if isolation is None else inside(plan.launches, isolation)

        return run_with_restarts(attempt, max_restarts=max_restarts, output=output,
                                 stop_timeout=stop_timeout)
