"""Shared settings of the property-based (hypothesis) tests under tests/fuzz.

Every fuzz test runs a fixed, derandomized set of examples: the same inputs on every
run and every machine (no example database), so a failure is reproducible and the
unit stage's runtime stays bounded. Raise ``max_examples`` locally to search harder.
"""

from hypothesis import HealthCheck, settings


def fuzz_settings(max_examples: int) -> settings:
    """Derandomized, no deadline (a loaded CI host is slow), no example database."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


def one_line(text: str) -> str:
    """The single line of ``text``; fails the test if there are zero or several, or a traceback."""
    lines = text.strip("\n").splitlines()
    assert "Traceback" not in text, text
    assert len(lines) == 1, lines
    return lines[0]
