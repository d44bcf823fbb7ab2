from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI machines are shared and slow: examples are bounded by count, not by a deadline.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

# Tests build their own Settings; stray STREAMWATCH_ variables must not leak in. The
# test tooling's own (an existing broker, the broker jar cache) are SW_ ones: every
# STREAMWATCH_ variable is a setting, and an unknown one is an error.
for name in [n for n in os.environ if n.upper().startswith("STREAMWATCH_")]:
    del os.environ[name]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``streamwatch demo`` run once: its output directory and what it printed."""
    from streamwatch.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--out", str(out)])
    return DemoRun(code, out, printed.getvalue())


@dataclass(frozen=True)
class DemoRun:
    code: int
    out: Path
    printed: str

    @property
    def state(self) -> Path:
        return self.out / "state.sqlite"

    @property
    def report(self) -> Path:
        return self.out / "report.html"
