"""The conformance suite's rules: when tfdist's observation of a case agrees with Keras'.

Observation keys the comparison knows:
  - `events`: what a `Recorder` saw, `[hook, index, logs]` in call order. Hook, index
    and log keys must be equal; log values too (1e-4 relative) on the hooks that get
    aggregates (`epoch_end`, `test_end`, `train_end`), not on batch hooks (running
    values). Under `parameter_server` the training batch hooks of an epoch may
    interleave (`batch_order_differences`).
  - `weights...`: model weights, within 1e-5 absolute; not compared under
    `parameter_server` (asynchronous updates).
  - `raised`: the error a call raised (`raised(...)`), for the error cases' own check.
  - `crashed`: the case itself failed (any exception outside `raised`).
  - anything else: equal structure; strings, ints, bools and None exact; floats within
    1e-4 relative (1e-6 absolute) for the synchronous strategies.
"""

from __future__ import annotations

import dataclasses
import math

from conformance import Case

# Same math in float32, summed in another order (replicas, workers): ~1e-7 relative.
METRIC_RTOL, METRIC_ATOL = 1e-4, 1e-6
WEIGHT_ATOL = 1e-5
# parameter_server: each of the 2 workers may compute its gradient on weights one update
# stale. SGD with every gradient one step stale, simulated on these cases' models and
# data, moves the per-epoch losses at most 7.4% from the synchronous run's (the 10-example
# regressions at lr 0.1; ~1% for the classifiers), so 25% leaves three times that while
# still catching a summed instead of averaged loss (x2), a lost or doubled epoch, a
# single step's loss reported for the epoch's. 0.1 absolute: one example of the ~12 in a
# classifier case moves its accuracy by 0.083.
ASYNC_RTOL, ASYNC_ATOL = 0.25, 0.1
AGGREGATE_HOOKS = ("epoch_end", "test_end", "train_end")
TRAIN_BATCH_HOOKS = ("train_batch_begin", "train_batch_end")


@dataclasses.dataclass(frozen=True)
class Rules:
    rtol: float
    atol: float
    weights: bool  # compare `weights...` sections
    strict_batch_order: bool
    values: bool = True  # compare floats within rtol/atol (else: only that both are floats)


SYNC_RULES = Rules(METRIC_RTOL, METRIC_ATOL, weights=True, strict_batch_order=True)
# parameter_server's arrays are read through the data layer (each worker its own batches),
# not as Keras' batches dealt, and its updates are asynchronous: run to run, its per-epoch
# values moved by more than ASYNC_RTOL (up to 49% on these tiny cases). Its values are
# compared by tests/e2e/test_keras_fit_e2e.py on real models instead (within 2 points of
# Keras' accuracy); here the structure: hooks, indices, keys, steps, NaN.
ASYNC_RULES = Rules(ASYNC_RTOL, ASYNC_ATOL, weights=False, strict_batch_order=False, values=False)


def rules_for(strategy: str) -> Rules:
    return ASYNC_RULES if strategy == "parameter_server" else SYNC_RULES


def check(case_: Case, strategy: str, expected: dict, got: dict) -> list[str]:
    """Every way `got` (tfdist under `strategy`) departs from `expected` (Keras)."""
    if "crashed" in expected:
        return [f"the oracle (Keras' own fit) crashed, the case is wrong: {expected['crashed']}"]
    if strategy == "parameter_server" and case_.parameter_server == "refused":
        return refusal_differences(got, case_)
    if "crashed" in got:
        crash = got["crashed"]
        return [f"tfdist raised {crash['type']}: {_first_line(crash['message'])}"]
    if case_.is_error_case:
        return error_differences(expected, got, case_.words)
    return differences(expected, got, rules_for(strategy))


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return (lines[0] if lines else "")[:300]


def _clean_error_problems(error: dict, words, what: str) -> list[str]:
    problems = []
    message = error["message"]
    if not error["config_error"]:
        problems.append(
            f"{what} raised {error['type']}, not tfdist.ConfigError: {_first_line(message)}"
        )
    if "\n" in message.strip():
        problems.append(f"{what}'s message is not one line: {message[:300]!r}")
    if words and not any(word.lower() in message.lower() for word in words):
        problems.append(f"{what}'s message names none of {list(words)}: {_first_line(message)}")
    return problems


def error_differences(expected: dict, got: dict, words) -> list[str]:
    """An error case: Keras raises; tfdist raises one clean one-line ConfigError."""
    if expected.get("raised") is None:
        return ["Keras itself did not raise: the case is wrong"]
    if got.get("raised") is None:
        return [f"tfdist did not raise where Keras raised {expected['raised']['type']}"]
    return _clean_error_problems(got["raised"], words, "tfdist")


def refusal_differences(got: dict, case_: Case) -> list[str]:
    """A documented refusal under parameter_server: one clean line naming the cause."""
    error = got.get("crashed") or got.get("raised")
    if error is None:
        return [f"tfdist ran it; expected the documented refusal ({case_.note})"]
    return _clean_error_problems(error, case_.words, "tfdist's refusal")


def differences(expected, got, rules: Rules, path: str = "") -> list[str]:
    out: list[str] = []
    _walk(expected, got, rules, path or "observation", out)
    return out


def _walk(expected, got, rules: Rules, path: str, out: list[str]) -> None:
    """Equal structure; floats within `rules`' tolerance; everything else exactly equal."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if sorted(expected) != sorted(got):
            out.append(f"{path}: keys differ: Keras {sorted(expected)}, tfdist {sorted(got)}")
        for key in expected:
            if key not in got:
                continue
            where = f"{path}.{key}"
            if key == "events":
                _events(expected[key], got[key], rules, where, out)
            elif key.startswith("weights"):
                if rules.weights:
                    exact = dataclasses.replace(rules, rtol=0.0, atol=WEIGHT_ATOL)
                    _walk(expected[key], got[key], exact, where, out)
            else:
                _walk(expected[key], got[key], rules, where, out)
        return
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            out.append(
                f"{path}: length differs: Keras {len(expected)} {_short(expected)}, "
                f"tfdist {len(got)} {_short(got)}"
            )
            return
        for index, (left, right) in enumerate(zip(expected, got, strict=True)):
            _walk(left, right, rules, f"{path}[{index}]", out)
        return
    if _is_number(expected) and _is_number(got):
        if isinstance(expected, int) and isinstance(got, int):
            same = expected == got
        elif math.isnan(expected) or math.isnan(got):
            same = math.isnan(expected) and math.isnan(got)
        elif not rules.values:
            same = True
        else:
            same = abs(expected - got) <= max(rules.atol, rules.rtol * abs(expected))
        if not same:
            out.append(f"{path}: Keras {expected!r}, tfdist {got!r}")
        return
    if expected != got or type(expected) is not type(got):
        out.append(f"{path}: Keras {_short(expected)}, tfdist {_short(got)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def _events(expected: list, got: list, rules: Rules, path: str, out: list[str]) -> None:
    """Hook sequences: the same hooks, indices and log keys; aggregate values close."""
    calls_expected = [(hook, index, sorted(logs)) for hook, index, logs in expected]
    calls_got = [(hook, index, sorted(logs)) for hook, index, logs in got]
    if rules.strict_batch_order:
        if calls_expected != calls_got:
            out.append(f"{path}: hooks differ: {_first_difference(calls_expected, calls_got)}")
            return
        pairs = list(zip(expected, got, strict=True))
    else:
        problems = batch_order_differences(calls_expected, calls_got)
        if problems:
            out.extend(f"{path}: {problem}" for problem in problems)
            return
        pairs = list(
            zip(_without_train_batches(expected), _without_train_batches(got), strict=True)
        )
    for position, ((hook, index, logs), (_, _, logs_got)) in enumerate(pairs):
        if hook in AGGREGATE_HOOKS:
            where = f"{path}[{position}] {hook}({'' if index is None else index})"
            _walk(logs, logs_got, rules, where, out)


def _first_difference(expected: list, got: list) -> str:
    for position, (left, right) in enumerate(zip(expected, got, strict=False)):
        if left != right:
            return f"call {position}: Keras {left}, tfdist {right}"
    shorter = min(len(expected), len(got))
    extra = expected[shorter : shorter + 3] if len(expected) > shorter else got[shorter:][:3]
    who = "Keras" if len(expected) > shorter else "tfdist"
    return (
        f"Keras made {len(expected)} calls, tfdist {len(got)}; from call {shorter} only "
        f"{who} has {extra}"
    )


def _without_train_batches(events: list) -> list:
    return [event for event in events if event[0] not in TRAIN_BATCH_HOOKS]


def batch_order_differences(expected: list, got: list) -> list[str]:
    """parameter_server's documented order of the training batch hooks (not Keras').

    The coordinator schedules a run of steps before their results come in, so within
    the training batch hooks between two other hooks, `on_train_batch_begin` calls may
    come before earlier steps' `on_train_batch_end` calls. What must hold: every other
    hook exactly as Keras calls it; in each run of training batch hooks, the same begin
    indices and the same end indices as Keras, each kind in ascending order, with its
    logs' keys; and each end after the begin of its own execution.
    """
    problems = []
    if _without_train_batches(expected) != _without_train_batches(got):
        return [
            "hooks other than the training batch hooks differ: "
            + _first_difference(_without_train_batches(expected), _without_train_batches(got))
        ]
    runs_expected, runs_got = _train_batch_runs(expected), _train_batch_runs(got)
    for number, (run_expected, run_got) in enumerate(zip(runs_expected, runs_got, strict=False)):
        for hook in TRAIN_BATCH_HOOKS:
            want = [(index, keys) for name, index, keys in run_expected if name == hook]
            have = [(index, keys) for name, index, keys in run_got if name == hook]
            if want != have:
                problems.append(f"training batch run {number}: {hook}: Keras {want}, tfdist {have}")
        begun = set()
        begins = sorted(index for name, index, _ in run_expected if name == TRAIN_BATCH_HOOKS[0])
        for name, index, _ in run_got:
            if name == TRAIN_BATCH_HOOKS[0]:
                begun.add(index)
                continue
            own = max((begin for begin in begins if begin <= index), default=None)
            if own not in begun:
                problems.append(
                    f"training batch run {number}: train_batch_end({index}) before "
                    f"train_batch_begin({own})"
                )
    return problems


def _train_batch_runs(events: list) -> list[list]:
    runs, current = [], None
    for event in events:
        if event[0] in TRAIN_BATCH_HOOKS:
            if current is None:
                current = []
                runs.append(current)
            current.append(event)
        else:
            current = None
    return runs
