from __future__ import annotations

import pytest

from streamwatch import demo
from streamwatch.cli import main


def test_the_demo_fires_exactly_the_expected_alerts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "All expected alerts fired" in out
    for model, detector, subject in demo.EXPECTED:
        assert f"{model:<6} {detector:<20} {subject}" in out
    assert "bad events      4" in out
    assert "late events     20" in out


def test_the_demo_stream_is_reproducible() -> None:
    a, b = demo.generate(200, seed=1), demo.generate(200, seed=1)
    assert a.lines == b.lines
    assert a.predictions == 2 * 200 * demo.HOURS
    assert demo.generate(200, seed=2).lines != a.lines
