"""Two models in one daemon with settings of their own (``MODELS__<MODEL>__...``): their
thresholds, slices, references and alert labels differ, and a feature set to be ignored
never alerts however far it moves. Driven through the engine, from real variables."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from streamwatch.config import load_settings
from streamwatch.daemon import build_engine
from streamwatch.errors import ConfigError
from streamwatch.events import Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.severity import Severity

START, MINUTE = 1_700_000_040_000, 60_000  # START: a minute's start
N = 6000  # events a minute and model
REGIONS = ("EU", "NA", "APAC")
SHIFT = 0.08  # sd: below the default warning (0.1), above fraud's own (0.03)


def minute(model: str, m: int, shift: float = 0.0) -> list[bytes]:
    """``N`` events of a binary classifier, with their labels; ``x`` at evenly spread
    normal quantiles (plus ``shift`` sd), ``user_id`` new in every event."""
    inverse = NormalDist().inv_cdf
    rows = []
    for i in range(N):
        score = ((i * 104_729) % N + 0.5) / N
        body = {
            "event_id": f"{model}-{m}-{i}",
            "model_id": model,
            "timestamp": START + m * MINUTE + i * (MINUTE // N),
            "score": score,
            "label": int((i * 31 % 1000) / 1000 < score),
            "features": {
                "x": inverse(((i * 7919) % N + 0.5) / N) + shift,
                "region": REGIONS[i % 3],
                "user_id": f"u{m}-{i}",
            },
        }
        rows.append(msgspec.json.encode(body))
    return rows


@pytest.fixture
def produced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Produced]:
    reference = tmp_path / "fraud-reference.jsonl"
    reference.write_bytes(b"\n".join(minute("fraud", -10)) + b"\n")
    variables = {
        "WINDOW__SIZE": "1m",
        "WINDOW__ALLOWED_LATENESS": "0",
        "LABELS__HORIZON": "0",
        "REFERENCE__MIN_EVENTS": str(N),  # churn: its first window
        "DETECTORS__FEATURE_DRIFT__COLUMNS__USER_ID__IGNORE": "true",
        "DETECTORS__DATA_QUALITY__COLUMNS__USER_ID__IGNORE": "true",
        "MODELS__FRAUD__REFERENCE__PATH": str(reference),
        "MODELS__FRAUD__DETECTORS__FEATURE_DRIFT__NUMERIC_WARNING": "0.03",
        "MODELS__FRAUD__DETECTORS__FEATURE_DRIFT__ALPHA": "0.05",
        "MODELS__FRAUD__DETECTORS__SLICES__FEATURES": '["region"]',
        "MODELS__FRAUD__ALERTS__LABELS__TEAM": "risk",
    }
    for name, value in variables.items():
        monkeypatch.setenv("STREAMWATCH_" + name, value)
    settings = load_settings()
    engine = build_engine(settings, [], Metrics(CollectorRegistry()))
    out, offset = [], 0
    for m in range(4):
        raws = minute("fraud", m, SHIFT if m else 0.0) + minute("churn", m, SHIFT if m else 0.0)
        out.append(
            engine.process(
                [Message(r, Origin("events", 0, offset + i)) for i, r in enumerate(raws)]
            )
        )
        offset += len(raws)
    out.append(engine.finish())
    return out


def breached(produced: list[Produced], model: str) -> set[tuple[int, str, str]]:
    return {
        (w.bounds.index - START // MINUTE, f.detector, f.subject)
        for p in produced
        for w in p.closed
        if w.model == model
        for f in w.findings
        if f.severity is not Severity.OK
    }


def test_the_strict_model_alerts_on_a_small_drift_the_other_does_not(
    produced: list[Produced],
) -> None:
    # fraud's reference is its own file: its first window is judged, and is quiet.
    assert {(i, d, s) for i, d, s in breached(produced, "fraud") if d == "feature_drift"} == {
        (1, "feature_drift", "x"),
        (2, "feature_drift", "x"),
        (3, "feature_drift", "x"),
    }
    assert breached(produced, "churn") == set()
    alerts = [a for p in produced for n in p.notifications for a in n.alerts]
    assert {(a.labels["model"], a.labels["subject"], a.labels.get("team")) for a in alerts} == {
        ("fraud", "x", "risk")
    }
    # churn's reference is its first window, pooled; fraud's pinned one pools nothing.
    roles = {
        (w.model, w.bounds.index - START // MINUTE, w.role) for p in produced for w in p.closed
    }
    assert ("churn", 0, "reference") in roles
    assert ("fraud", 0, "evaluated") in roles


def test_only_the_model_that_slices_by_a_feature_has_its_slices_judged(
    produced: list[Produced],
) -> None:
    def slices(model: str) -> set[str]:
        return {
            f.subject
            for p in produced
            for w in p.closed
            if w.model == model
            for f in w.findings
            if f.detector == "slice_performance"
        }

    assert {f"region={r}" for r in REGIONS} <= slices("fraud")
    assert not any(s.startswith("region") for s in slices("churn"))


def test_an_ignored_feature_yields_no_finding_though_every_value_is_new(
    produced: list[Produced],
) -> None:
    judged = {
        (w.model, f.detector)
        for p in produced
        for w in p.closed
        for f in w.findings
        if f.subject == "user_id"
    }
    assert judged == set()
    # The feature is there, and its neighbours are judged.
    subjects = {
        f.subject
        for p in produced
        for w in p.closed
        for f in w.findings
        if f.detector in ("feature_drift", "data_quality")
    }
    assert {"x", "region"} <= subjects


def test_a_models_reference_file_without_its_events_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "other.jsonl"
    reference.write_bytes(b"\n".join(minute("churn", -10)[:10]) + b"\n")
    monkeypatch.setenv("STREAMWATCH_MODELS__FRAUD__REFERENCE__PATH", str(reference))
    with pytest.raises(
        ConfigError, match=r"STREAMWATCH_MODELS__FRAUD__REFERENCE__PATH: .* of model 'fraud'"
    ):
        build_engine(load_settings(), [], Metrics(CollectorRegistry()))
