from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

from streamwatch import demo
from streamwatch.cli import main
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


def test_the_demo_with_review_shows_the_verdicts_weighted_and_observed(tmp_path: Path) -> None:
    """``demo --review``: fraud's doubtful predictions requested, a reviewer answering
    each with its true outcome; the alerts are the demo's all the same, and each window's
    accuracy from the verdicts is reported weighted (an estimate for all predictions)
    and observed (the agreement on the reviewed, chosen for doubt: too low)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["demo", "--review", "--out", str(tmp_path / "out")])
    text = printed.getvalue()
    assert code == 0, text
    rows = re.findall(
        r"^  (\d\d):00 +(\d+) +([\d.]+)% \(([\d.]+)% to ([\d.]+)%\) +([\d.]+)% +([\d.]+)%$",
        text,
        re.M,
    )
    assert [int(r[0]) for r in rows] == list(range(demo.HOURS))
    verdicts, weighted, low, high, observed, truth = (
        [float(r[i]) for r in rows] for i in range(1, 7)
    )
    assert min(verdicts) >= 30
    covered = sum(lo <= t <= hi for lo, t, hi in zip(low, truth, high, strict=True))
    assert covered >= 8  # 95% intervals: all ten with chance 0.6, eight or more 0.99
    bias = (sum(observed) - sum(truth)) / len(rows)
    assert bias < -5  # points: the reviewed are the doubtful ones
    assert abs(sum(weighted) - sum(truth)) / len(rows) < abs(bias)
    page = (tmp_path / "out" / "report.html").read_text()
    table = page[page.index('<table class="review">') :]
    assert table[: table.index("</table>")].count("<tr>") == demo.HOURS + 1  # and its header
    requests = (tmp_path / "out" / "reviews.jsonl").read_text().splitlines()
    first = json.loads(requests[0])
    assert set(first["features"]) <= {"amount", "country"}
    assert len({json.loads(line)["event_id"] for line in requests}) == len(requests)
