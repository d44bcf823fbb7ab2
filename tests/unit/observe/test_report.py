"""The report, the status summary and alert links, over the demo's state file."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamwatch import demo
from streamwatch.alerting.policy import sample_notification
from streamwatch.config import ReportSettings, ServerSettings, Settings
from streamwatch.observe import history, report, status
from streamwatch.observe.health import Health, serve
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.sinks.render import body
from streamwatch.sources import ReplaySource
from streamwatch.state.store import StateStore
from tests.conftest import DemoRun

SHIFT_WINDOW = "2026-11-22T06:00:00Z"


def test_the_report_is_one_file_that_fetches_nothing(demo_run: DemoRun) -> None:
    page = demo_run.report.read_text()
    assert "<script" not in page
    assert "<link" not in page
    assert "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "default-src 'none'" in page  # and the browser is told so
    assert page.count("<svg") >= 20  # the charts are in the page


def test_the_report_of_one_model_at_one_window(demo_run: DemoRun) -> None:
    page = report.page(demo_run.state, {"model": "eta", "window": SHIFT_WINDOW}).decode()
    assert 'data-model="eta"' in page
    assert 'data-model="fraud"' not in page
    shown = re.findall(r'class="distribution" data-subject="([^"]+)" data-window="([^"]+)"', page)
    assert shown == [
        ("traffic_index", f"{SHIFT_WINDOW} to 2026-11-22T07:00:00Z"),
        ("prediction", f"{SHIFT_WINDOW} to 2026-11-22T07:00:00Z"),
    ]
    later = report.select(demo_run.state, "fraud", "3h")
    assert {r.start for r in later} == {demo.START + h * 3600 for h in (7, 8, 9)}


def test_status_names_each_model_its_last_window_and_firing_alerts(demo_run: DemoRun) -> None:
    text = status.summary(demo_run.state)
    for model in ("fraud", "eta"):
        assert f"model {model}" in text
    assert text.count("last window   2026-11-22T09:00:00Z to 2026-11-22T10:00:00Z") == 2
    for model, detector, subject in demo.EXPECTED:
        if detector not in ("concept_drift",):  # ADWIN's alarm resolves the next window
            section = text[text.index(f"model {model}") :]
            assert f"{detector} · {subject}" in section.split("\n\n")[0]
    assert "labels        19% of the last evaluated window's" in text


def test_report_and_status_refuse_a_missing_state_file(tmp_path: Path) -> None:
    from streamwatch.errors import StateError

    with pytest.raises(StateError, match="no state file"):
        report.select(tmp_path / "none.sqlite", None, None)
    with pytest.raises(StateError, match="no state file"):
        status.summary(tmp_path / "none.sqlite")


def test_the_daemon_serves_the_report_its_alerts_link_to(demo_run: DemoRun) -> None:
    server = serve(ServerSettings(port=0), CollectorRegistry(), Health(60.0), demo_run.state)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        link = f"{base}/report?model=fraud&window={SHIFT_WINDOW}"
        with urllib.request.urlopen(link, timeout=30) as response:
            page = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/html")
        assert 'data-subject="amount"' in page
        assert 'data-model="eta"' not in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/report?window=yesterday", timeout=30)
        assert refused.value.code == 400
        refused.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_alerts_say_what_to_look_at_and_link_to_their_window(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    path.write_bytes(b"\n".join(demo.generate().lines) + b"\n")
    base = "https://streamwatch.example.com/"
    settings = Settings(
        window=demo.settings().window,
        labels=demo.settings().labels,
        report=ReportSettings(base_url=base),
        alerts={"redact": ["amount"]},
    )
    store, source = StateStore(tmp_path / "state.sqlite", settings), ReplaySource([path])
    outcomes = Engine(settings, [], Metrics(CollectorRegistry())).run(source, store)
    store.close()
    source.close()
    notifications = [n for o in outcomes for n in o.notifications]
    assert notifications
    for n in notifications:
        assert n.link is not None
        assert n.link.startswith(f"{base}report?model={n.model}&window=")
        assert n.to_dict("x")["commonAnnotations"]["report_url"] == n.link
        assert f"Report: {n.link}" in body(n)
        assert body(n).count("Look at ") == 1
    # A redacted feature is named by its alias in the history too, and not drawn.
    records = history.read(tmp_path / "state.sqlite", model="fraud")
    subjects = {s.subject for r in records for s in r.statistics}
    assert "amount" not in subjects
    assert any(s.startswith("redacted-") for s in subjects)
    assert "country" in {d.subject for r in records for d in r.distributions}
    assert "amount" not in {d.subject for r in records for d in r.distributions}


def test_look_at_names_the_evidence_for_each_detector() -> None:
    n = sample_notification(1_795_305_600.0)
    line = n.look_at()
    assert line.startswith("Look at ")
    assert line.endswith(".")
    subjects = {a.labels["subject"] for a in n.alerts}
    assert all(subject in line for subject in subjects)
    assert "report_url" not in n.to_dict("x")["commonAnnotations"]
    assert "report_url" in replace(n, link="https://x/report").to_dict("x")["commonAnnotations"]


def test_moved_priors_and_breaching_slices_are_flagged() -> None:
    from streamwatch.observe.history import Statistic, WindowRecord

    priors = {"prior[0]": 0.6, "prior_low[0]": 0.55, "prior_high[0]": 0.65}
    priors |= {"prior_reference[0]": 0.8, "prior[1]": 0.4, "prior_low[1]": 0.35}
    priors |= {"prior_high[1]": 0.45, "prior_reference[1]": 0.2}
    shift = Statistic(
        "label_shift", "estimated_priors", "l1_shift", 0.4, 0.2, "critical", 900, 1000,
        details=priors,
    )  # fmt: skip
    slices = [
        Statistic("slice_performance", "region=NA", "accuracy", 0.2, 0.15, "critical", 0, 300),
        Statistic("slice_performance", "region=EU", "accuracy", 0.01, 0.05, "ok", 0, 700),
    ]
    records = [
        WindowRecord("fraud", 0.0, 3600.0, "evaluated", 1000, [shift]),
        WindowRecord("fraud", 0.0, 3600.0, "outcomes", 0, slices),
    ]
    page = report.render(records, "test")
    table = page[page.index('<table class="priors">') : page.index("</table>")]
    assert table.count('class="flagged"') == 2  # both intervals leave out the reference
    assert "55.0% to 65.0%" in table
    slice_table = page[page.index('<table class="slices">') :]
    rows = re.findall(
        r'<tr class="([^"]*)">(.*?)</tr>', slice_table[: slice_table.index("</table>")], re.S
    )
    assert [("region=NA" in row, "region=EU" in row) for cls, row in rows if cls == "flagged"] == [
        (True, False)
    ]
    assert len(rows) == 2
