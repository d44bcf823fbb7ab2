from __future__ import annotations

from streamwatch import demo
from tests.conftest import DemoRun


def test_the_demo_fires_exactly_the_expected_alerts(demo_run: DemoRun) -> None:
    assert demo_run.code == 0
    out = demo_run.printed
    assert "All expected alerts fired" in out
    for model, detector, subject in demo.EXPECTED:
        assert f"{model:<6} {detector:<21} {subject}" in out
    assert "bad events      4" in out
    assert "late events     20" in out
    # It ends by writing its report and saying how to see its status.
    assert out.rstrip().endswith(f"Status: streamwatch status --state {demo_run.state}")
    assert f"Report: {demo_run.report.resolve()}" in out
    assert demo_run.report.stat().st_size > 0


def test_the_demo_stream_is_reproducible() -> None:
    a, b = demo.generate(200, seed=1), demo.generate(200, seed=1)
    assert a.lines == b.lines
    assert a.predictions == 2 * 200 * demo.HOURS
    assert demo.generate(200, seed=2).lines != a.lines
