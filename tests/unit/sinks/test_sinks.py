from __future__ import annotations

import io
import json
from pathlib import Path

from streamwatch.alerting.policy import AlertPolicy, Notification
from streamwatch.config import FileSinkSettings, LogSinkSettings, Settings
from streamwatch.detectors import Finding, Severity
from streamwatch.sinks import Delivered, DeliveryFailed, build_sink, build_sinks
from streamwatch.sinks.file import RECENT, FileSink
from streamwatch.sinks.log import LogSink
from streamwatch.windows import WindowBounds

WINDOW = WindowBounds(1, 1_795_305_600.0, 1_795_309_200.0)


def notification() -> Notification:
    findings = [
        Finding(
            "fraud",
            detector,
            subject,
            "wasserstein",
            value,
            0.1,
            severity,
            900,
            1000,
            WINDOW,
            f"feature '{subject}' drifted",
        )
        for detector, subject, value, severity in [
            ("feature_drift", "amount", 0.4, Severity.CRITICAL),
            ("data_quality", "country", 0.12, Severity.WARNING),
        ]
    ]
    n = AlertPolicy().observe("fraud", WINDOW, findings)
    assert n is not None
    return n


def test_log_sink_writes_one_json_line_per_alert() -> None:
    out = io.StringIO()
    n = notification()
    assert LogSink("console", out).send(n) == Delivered("console")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["labels"]["subject"] for line in lines] == ["amount", "country"]
    assert lines[0]["sink"] == "console"
    assert lines[0]["notification"] == n.id
    assert lines[0]["status"] == "firing"
    assert lines[0]["window"] == {"start": "2026-11-22T00:00:00Z", "end": "2026-11-22T01:00:00Z"}
    assert {"summary", "description"} <= lines[0]["annotations"].keys()
    assert {"startsAt", "endsAt", "fingerprint", "value", "threshold"} <= lines[0].keys()


def test_log_sink_reports_a_closed_stream_as_a_failure() -> None:
    out = io.StringIO()
    out.close()
    result = LogSink("console", out).send(notification())
    assert isinstance(result, DeliveryFailed)
    assert "cannot write" in result.reason


def test_file_sink_appends_one_object_per_notification(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = FileSink("audit", path)
    first = notification()
    assert sink.send(first) == Delivered("audit")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 1
    assert records[0]["id"] == first.id
    assert records[0]["receiver"] == "audit"
    assert [a["labels"]["subject"] for a in records[0]["alerts"]] == ["amount", "country"]


def test_file_sink_appends_a_notification_sent_again_after_a_crash_once(tmp_path: Path) -> None:
    # The outbox records a delivery after the sink returns: a crash in between sends the
    # same notification again, from a new process, after other notifications.
    path = tmp_path / "alerts.jsonl"
    first = notification()
    assert FileSink("audit", path).send(first) == Delivered("audit")
    path.write_bytes(path.read_bytes() + b'{"id":"another"}\n' * 50)
    restarted = FileSink("audit", path)
    assert restarted.send(first) == Delivered("audit")
    ids = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert ids.count(first.id) == 1
    # An id only further back than the sink searches is appended again.
    path.write_bytes(path.read_bytes() + b" " * RECENT + b"\n")
    assert restarted.send(first) == Delivered("audit")
    assert path.read_text().count(first.id) == 2


def test_file_sink_failure_is_typed_and_retryable(tmp_path: Path) -> None:
    result = FileSink("audit", tmp_path / "no" / "such" / "dir.jsonl").send(notification())
    assert isinstance(result, DeliveryFailed)
    assert result.retryable


def test_sinks_are_built_by_kind_with_their_settings(tmp_path: Path) -> None:
    assert isinstance(build_sink("a", LogSinkSettings(kind="log"), Settings()), LogSink)
    audit = FileSinkSettings(kind="file", path=tmp_path / "a", min_severity=Severity.CRITICAL)
    routed = build_sinks(Settings(sinks={"audit": audit}))
    assert [(r.sink.name, r.settings) for r in routed] == [("audit", audit)]
