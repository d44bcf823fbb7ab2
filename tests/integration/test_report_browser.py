"""The demo's report as a reader sees it: opened in headless Chromium with no network,
it shows the drift of the shifted features at the window where the shift starts."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from streamwatch import demo
from streamwatch.alerting.policy import isoformat
from tests import chromium
from tests.conftest import DemoRun

pytestmark = pytest.mark.integration


class Page(HTMLParser):
    """What the DOM holds: per model section, its figures and its alert rows."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ""
        self.distributions: dict[str, dict[str, str]] = {}  # model -> subject -> window
        self.svgs = 0
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("data-model"):
            self.model = str(a["data-model"])
        elif tag == "figure" and a.get("class") == "distribution":
            shown = self.distributions.setdefault(self.model, {})
            shown[str(a["data-subject"])] = str(a["data-window"])
        elif tag == "svg":
            self.svgs += 1
        elif tag == "tr":
            self._row = [self.model]
        elif tag == "td":
            self._cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "td":
            self._cell = False

    def handle_data(self, data: str) -> None:
        if self._cell and self._row is not None and data.strip():
            self._row.append(data.strip())


@pytest.fixture(scope="module")
def page(demo_run: DemoRun) -> Page:
    parsed = Page()
    parsed.feed(chromium.dom(demo_run.report))
    return parsed


def window_of(hour: int) -> str:
    start = demo.START + hour * 3600
    return f"{isoformat(start)} to {isoformat(start + 3600)}"


def test_each_shifted_feature_is_drawn_at_the_window_where_the_shift_starts(page: Page) -> None:
    shifted = {(m, s) for m, d, s in demo.EXPECTED if d == "feature_drift"}
    assert shifted == {("fraud", "amount"), ("fraud", "country"), ("eta", "traffic_index")}
    for model, subject in shifted:
        assert page.distributions[model][subject] == window_of(demo.DRIFT_WINDOWS[0])
    # The features that did not shift are not among what moved.
    drawn = {(m, s) for m, shown in page.distributions.items() for s in shown}
    for unshifted in ("age", "n_items", "account_age_days", "channel", "device"):
        assert ("fraud", unshifted) not in drawn
    assert ("eta", "distance_km") not in drawn


def test_the_alert_history_shows_each_expected_alert_firing_in_its_window(page: Page) -> None:
    fired = {
        (row[0], row[4], row[5]): row[1]
        for row in page.rows
        if len(row) >= 6 and row[2] == "firing"
    }
    for (model, detector, subject), hours in demo.EXPECTED.items():
        started = fired[(model, detector, subject)]
        assert started in {isoformat(demo.START + h * 3600) for h in hours}, (model, subject)


def test_the_charts_are_rendered_and_a_screenshot_shows_them(
    page: Page, demo_run: DemoRun, tmp_path: Path
) -> None:
    assert page.svgs >= 20
    shot = chromium.screenshot(demo_run.report, tmp_path / "report.png")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 100_000  # a page of charts, not a blank one


def test_the_report_prints_a_page_per_model(demo_run: DemoRun, tmp_path: Path) -> None:
    printed = chromium.pdf(demo_run.report, tmp_path / "report.pdf").read_bytes()
    assert printed.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", printed))
    assert pages >= 2  # each model starts on a page of its own
