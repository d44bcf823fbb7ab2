"""The outcome reference beside a pinned drift reference (outcomes.py): a pinned file of
events has no labels, so the label-based detectors take their reference from the first
labelled windows. Apart from tests/unit/test_outcomes.py for now (being edited); to be
folded into tests/unit/pipeline/test_outcomes.py when that moves."""

from __future__ import annotations

import numpy as np

from streamwatch.batch import Schema
from streamwatch.config import LabelSettings, ReferenceSettings, Settings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.events import Event, Origin, decode
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.reference import Pinned
from tests.factories import event


def test_a_pinned_reference_still_gets_label_based_detectors() -> None:
    rng = np.random.default_rng(2)
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        labels=LabelSettings(horizon=0.0),
        reference=ReferenceSettings(min_events=500),
    )

    def decoded(raws: list[bytes]) -> list[Event]:
        out = [decode(r, Origin("t", 0, 0), 1 << 20) for r in raws]
        return [e for e in out if isinstance(e, Event)]

    schema = Schema()
    pinned = Pinned(
        schema,
        schema.build(
            decoded(
                [
                    event(f"r{i}", features={"x": float(rng.normal())}, prediction=1, score=0.6)
                    for i in range(1000)
                ]
            )
        ),
    )
    monitor = ModelMonitor("m", settings, pinned)
    findings = []
    for minute in range(6):
        preds, labels = [], []
        for i in range(600):
            eid, t = f"{minute}-{i}", minute * 60_000 + i * 100
            right = rng.random() < (0.9 if minute < 3 else 0.5)
            preds.append(
                event(
                    eid, timestamp=t, features={"x": float(rng.normal())}, prediction=1, score=0.6
                )
            )
            labels.append(event(eid, timestamp=t + 60_000, label=1 if right else 0))
        processed = monitor.process(decoded(preds), decoded(labels))
        findings += [f for w in processed.closed for f in w.findings]
    findings += [f for w in monitor.flush().closed for f in w.findings]
    accuracy = [f for f in findings if f.detector == "performance" and f.subject == "accuracy"]
    assert accuracy
    assert accuracy[-1].severity is Severity.CRITICAL  # 90% -> 50%
