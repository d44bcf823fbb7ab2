"""The scenario suite's session: every scenario run once, two processes at a time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.scenarios.runner import Run, run_all
from tests.scenarios.streams import SCENARIOS

# Run straight through from the first event too, to compare with its resumed run.
STRAIGHT = "concept: 1/5 of labels flip"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "scenario: a realistic stream through the whole daemon (about two minutes for all "
        "of them on two cores; deselect with -m 'not scenario')",
    )


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Run], dict[str, Run]]:
    """Every scenario's run, and the straight run of ``STRAIGHT``."""
    return run_all(tmp_path_factory.mktemp("scenarios"), SCENARIOS, [STRAIGHT])


@pytest.fixture(scope="session")
def run(runs: tuple[dict[str, Run], dict[str, Run]]) -> Callable[[str], Run]:
    """The run of a scenario, by name."""
    return runs[0].__getitem__


@pytest.fixture(scope="session")
def straight(runs: tuple[dict[str, Run], dict[str, Run]]) -> Run:
    return runs[1][STRAIGHT]
