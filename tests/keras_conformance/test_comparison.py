"""The suite's own rules (`conformance.check`): what counts as a difference, and what does not.

The comparison is what every conformance test rests on; a rule that let everything
through would make each of them pass without looking. These tests feed it hand-made
observations (no training) and pin each rule down.
"""

import copy
import math

import pytest
from conformance import Case, all_cases
from rules import ASYNC_RULES, SYNC_RULES, batch_order_differences, check, differences


def _events():
    return [
        ["train_begin", None, {}],
        ["epoch_begin", 0, {}],
        ["train_batch_begin", 0, {}],
        ["train_batch_end", 0, {"loss": 1.0}],
        ["train_batch_begin", 1, {}],
        ["train_batch_end", 1, {"loss": 0.9}],
        ["test_begin", None, {}],
        ["test_batch_begin", 0, {}],
        ["test_batch_end", 0, {"loss": 2.0}],
        ["test_end", None, {"loss": 2.0}],
        ["epoch_end", 0, {"loss": 0.9, "val_loss": 2.0}],
        ["train_end", None, {"loss": 0.9, "val_loss": 2.0}],
    ]


def _observation():
    return {
        "events": _events(),
        "history": {"loss": [0.9], "val_loss": [2.0]},
        "epoch": [0],
        "params": {"epochs": 1, "steps": 2, "verbose": 0},
        "weights": [[0.5, -0.25], [0.125]],
    }


def _changed(edit):
    observation = _observation()
    edit(observation)
    return observation


def test_an_observation_equals_itself():
    assert differences(_observation(), _observation(), SYNC_RULES) == []
    assert differences(_observation(), _observation(), ASYNC_RULES) == []


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda o: o["history"]["loss"].__setitem__(0, 0.9002), "history.loss[0]"),
        (lambda o: o["history"].pop("val_loss"), "keys differ"),
        (lambda o: o["params"].__setitem__("steps", 3), "params.steps"),
        (lambda o: o["epoch"].append(1), "length differs"),
        (lambda o: o["weights"][0].__setitem__(1, -0.25 + 2e-5), "weights[0][1]"),
        (lambda o: o["events"].pop(7), "hooks differ"),
        (lambda o: o["events"][3].__setitem__(1, 1), "hooks differ"),
        (lambda o: o["events"][3][2].__setitem__("mae", 1.0), "hooks differ"),
        (lambda o: o["events"][10][2].__setitem__("val_loss", 2.1), "epoch_end(0)"),
        (lambda o: o["events"][9][2].__setitem__("loss", 2.1), "test_end()"),
    ],
)
def test_a_synchronous_difference_is_reported_where_it_is(edit, where):
    found = differences(_observation(), _changed(edit), SYNC_RULES)
    assert found and where in found[0], found


def test_within_tolerance_and_batch_values_are_not_differences():
    def edit(observation):
        observation["history"]["loss"][0] *= 1 + 5e-5
        observation["weights"][0][0] += 5e-6
        observation["events"][5][2]["loss"] = 0.3  # A running batch value: keys only.

    assert differences(_observation(), _changed(edit), SYNC_RULES) == []


def test_nan_equals_nan_and_nothing_else():
    nan = {"loss": [math.nan]}
    assert differences(nan, copy.deepcopy(nan), SYNC_RULES) == []
    assert differences(nan, {"loss": [1.0]}, SYNC_RULES)
    assert differences({"loss": [1.0]}, nan, SYNC_RULES)


def test_types_are_kept_apart():
    assert differences({"seen": ["x"]}, {"seen": [["x"]]}, SYNC_RULES)
    assert differences({"flag": True}, {"flag": 1}, SYNC_RULES)
    assert differences({"steps": None}, {"steps": 0}, SYNC_RULES)


def test_asynchronous_rules_skip_weights_and_float_values_only():
    def drift(observation):
        observation["weights"][0][0] = 9.0
        observation["history"]["loss"][0] = 1.8

    assert differences(_observation(), _changed(drift), ASYNC_RULES) == []
    nan = _changed(lambda o: o["history"]["loss"].__setitem__(0, float("nan")))
    assert differences(_observation(), nan, ASYNC_RULES)
    fewer = _changed(lambda o: o["params"].__setitem__("steps", 1))
    assert differences(_observation(), fewer, ASYNC_RULES)
    lost = _changed(lambda o: o["history"]["loss"].pop())
    assert differences(_observation(), lost, ASYNC_RULES)


def _calls(events):
    return [(hook, index, sorted(logs)) for hook, index, logs in events]


def test_parameter_server_may_schedule_batch_begins_ahead_of_ends():
    expected = _events()
    interleaved = copy.deepcopy(expected)
    interleaved[2:6] = [expected[2], expected[4], expected[3], expected[5]]
    assert batch_order_differences(_calls(expected), _calls(interleaved)) == []
    assert differences({"events": expected}, {"events": interleaved}, ASYNC_RULES) == []
    assert differences({"events": expected}, {"events": interleaved}, SYNC_RULES)


@pytest.mark.parametrize(
    "order, problem",
    [
        ([3, 2, 4, 5], "train_batch_end(0) before train_batch_begin(0)"),
        ([2, 5, 4, 3], "train_batch_end"),  # Ends out of order.
        ([2, 3, 5], "train_batch_begin"),  # A begin missing.
    ],
)
def test_parameter_server_batch_hooks_keep_indices_order_and_pairing(order, problem):
    expected = _events()
    got = expected[:2] + [expected[i] for i in order] + expected[6:]
    found = batch_order_differences(_calls(expected), _calls(got))
    assert found and problem in found[0], found


def test_parameter_server_keeps_every_other_hook_in_order():
    expected = _events()
    got = copy.deepcopy(expected)
    got[6], got[10] = got[10], got[6]  # epoch_end before the validation.
    assert (
        "other than the training batch hooks"
        in batch_order_differences(_calls(expected), _calls(got))[0]
    )


def _error(kind, message, config_error):
    return {"raised": {"type": kind, "config_error": config_error, "message": message}}


ERROR_CASE = Case("an_error", "errors", lambda front: {}, words=("label",))
KERAS_RAISED = _error("InvalidArgumentError", "Received a label value of 3", False)


@pytest.mark.parametrize(
    "got, problem",
    [
        ({"raised": None}, "did not raise"),
        (_error("InvalidArgumentError", "label 3\n\t[[node]]", False), "not tfdist.ConfigError"),
        (_error("ConfigError", "labels must be\nbelow 3", True), "not one line"),
        (_error("ConfigError", "y holds 3; use 0..2.", True), "names none of"),
    ],
)
def test_an_error_must_be_one_clean_config_error_line(got, problem):
    found = check(ERROR_CASE, "one_device", KERAS_RAISED, got)
    assert found and problem in found[0], found


def test_a_clean_config_error_passes_and_a_quiet_oracle_is_the_case_s_fault():
    clean = _error("ConfigError", "label 3 is out of range for 3 classes; use 0..2.", True)
    assert check(ERROR_CASE, "mirrored", KERAS_RAISED, clean) == []
    assert "the case is wrong" in check(ERROR_CASE, "one_device", {"raised": None}, clean)[0]


def test_a_crash_fails_and_names_the_error():
    case = Case("a_case", "steps", lambda front: {})
    crash = {"crashed": {"type": "TypeError", "message": "fit() got 10\nmore", "config_error": 0}}
    assert check(case, "one_device", _observation(), crash) == [
        "tfdist raised TypeError: fit() got 10"
    ]
    assert "oracle" in check(case, "one_device", crash, _observation())[0]


def test_a_refusal_under_parameter_server_is_a_clean_line_naming_the_step():
    case = Case("own", "models", lambda f: {}, "refused", ("train_step",), note="by design")
    refusal = {
        "crashed": {
            "type": "ConfigError",
            "config_error": True,
            "message": "A model's own train_step cannot run under parameter_server; ...",
        }
    }
    assert check(case, "parameter_server", _observation(), refusal) == []
    assert check(case, "parameter_server", _observation(), _observation())
    assert check(case, "one_device", _observation(), refusal)


def test_every_case_is_registered_once_with_a_category_and_its_rule():
    cases = all_cases()
    assert len(cases) >= 80
    for name, case in cases.items():
        assert case.name == name and case.run.__name__ == name
        if case.parameter_server != "same":
            assert case.note, name
        if case.category == "errors" or case.parameter_server == "refused":
            assert case.words, name


def test_every_known_gap_is_a_case_the_strategy_runs():
    from clusters import case_names
    from known_gaps import GAPS

    cases = all_cases()
    for strategy, gaps in GAPS.items():
        runs = (
            set(case_names(strategy))
            if strategy in ("multi_worker", "parameter_server")
            else set(cases)
        )
        assert set(gaps) <= runs, (strategy, sorted(set(gaps) - runs))
        assert all(why.strip() for why in gaps.values()), strategy
