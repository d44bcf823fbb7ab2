"""A finding of every detector, as the detector made it, through the engine's alert
path, the durable outbox and a real file sink: no detector's numbers can stop delivery
(a slice's numpy floats once crashed the outbox's encoding)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.alerting.outbox import Outbox
from streamwatch.config import (
    DetectorSettings,
    FileSinkSettings,
    LabelSettings,
    LabelShiftSettings,
    Settings,
    ShadowSettings,
    SliceSettings,
    WindowSettings,
)
from streamwatch.detectors import Finding, Severity
from streamwatch.events import Message
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.monitor import ClosedWindow
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.file import FileSink
from tests.factories import origin
from tests.scenarios.streams import DETECTORS as EVERY_DETECTOR

# Every detector that judges (label coverage only reports, never alarms).
DETECTORS = set(EVERY_DETECTOR) - {"labels"}


def stream(rng: np.random.Generator) -> list[bytes]:
    """Twenty one-minute windows of a champion, a challenger and labels for all."""
    lines = []
    for i in range(20 * 400):
        t = i * 150  # milliseconds: 400 events a minute
        x = float(rng.normal())
        group = str(rng.choice(["a", "b"]))
        score = float(1 / (1 + np.exp(-2 * x)))
        base = {"event_id": f"e{i}", "model_id": "m", "timestamp": t}
        lines.append(
            msgspec.json.encode(
                base
                | {
                    "model_version": "1",
                    "features": {"x": x, "group": group, "n": int(rng.poisson(3))},
                    "score": score,
                    "prediction": int(score > 0.5),
                    "segments": {"region": str(rng.choice(["EU", "NA"]))},
                    "latency_ms": float(rng.gamma(4, 3)),
                    "error": bool(rng.random() < 0.01),
                }
            )
        )
        lines.append(msgspec.json.encode(base | {"model_version": "2", "score": score}))
        label = int(rng.random() < score)
        lines.append(msgspec.json.encode(base | {"label": label, "timestamp": t + 1000}))
    return lines


def test_a_finding_of_every_detector_reaches_the_file_sink(tmp_path: Path) -> None:
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        labels=LabelSettings(horizon=0.0),
        detectors=DetectorSettings(
            slices=SliceSettings(protected=("group",), min_support=50),
            shadow=ShadowSettings(champions={"m": "1"}),
            label_shift=LabelShiftSettings(estimate=True, min_samples=100),
        ),
    )
    found = Engine(settings, [], Metrics(CollectorRegistry()))
    lines = stream(np.random.default_rng(5))
    closed = found.process([Message(raw, origin(k)) for k, raw in enumerate(lines)]).closed
    closed += found.finish().closed
    made: dict[str, Finding] = {}
    for window in closed:
        for f in window.findings:
            made.setdefault(f.detector, f)
    assert made.keys() >= DETECTORS
    # Each finding as its detector made it, made to breach, through the engine's path.
    breaching = [
        ClosedWindow("m", f.window, 0, "evaluated", [replace(f, severity=Severity.WARNING)])
        for f in (made[d] for d in sorted(DETECTORS))
    ]
    path = tmp_path / "alerts.jsonl"
    file_settings = FileSinkSettings(kind="file", path=path)
    sinks = [RoutedSink(FileSink("file", path), file_settings)]
    outbox = Outbox(tmp_path / "outbox.sqlite")
    engine = Engine(settings, sinks, Metrics(CollectorRegistry()), outbox=outbox)
    sent = engine.conclusion.conclude(breaching).notifications
    assert sorted(a.labels["detector"] for n in sent for a in n.alerts) == sorted(DETECTORS)
    engine.dispatcher.start()
    assert engine.dispatcher.drain(20.0)
    engine.dispatcher.stop()
    received = [json.loads(line) for line in path.read_text().splitlines()]
    delivered = {
        a["labels"]["detector"]: a
        for n in received
        for a in n["alerts"]
        if a["fingerprint"] in n["changed"]
    }
    assert delivered.keys() == DETECTORS
    for detector, alert in delivered.items():
        assert float(alert["annotations"]["value"]) == made[detector].value
        assert alert["status"] == "firing"
    assert sorted(n["id"] for n in received) == sorted(n.id for n in sent)  # each once
