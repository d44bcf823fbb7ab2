"""Issue 15's realistic scenario suite: seeded streams of a binary classifier with
changes of stated size (``streams``), the runner that sends them through the whole
daemon (``runner``), and the tests (``test_scenarios``). The detection benchmark
(``bench/detection.py``) imports the same streams and runner from here."""

from tests.scenarios.runner import Run, Suite, index, read_alerts, run_all, settings
from tests.scenarios.streams import (
    AFTER_CHANGE,
    CHANGE,
    DAY,
    DETECTORS,
    NULL_WINDOWS,
    SCENARIOS,
    SLICE,
    START,
    WIDE_NULL,
    WINDOW,
    Change,
    Scenario,
    Stream,
    Window,
    clock,
    generate,
    messages,
)

__all__ = [
    "AFTER_CHANGE",
    "CHANGE",
    "DAY",
    "DETECTORS",
    "NULL_WINDOWS",
    "SCENARIOS",
    "SLICE",
    "START",
    "WIDE_NULL",
    "WINDOW",
    "Change",
    "Run",
    "Scenario",
    "Stream",
    "Suite",
    "Window",
    "clock",
    "generate",
    "index",
    "messages",
    "read_alerts",
    "run_all",
    "settings",
]
