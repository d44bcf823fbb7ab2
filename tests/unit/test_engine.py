from __future__ import annotations

import io
import json

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.engine import Engine
from streamwatch.events import Origin
from streamwatch.metrics import Metrics
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.log import LogSink
from tests.factories import event, origin


def engine(out: io.StringIO | None = None) -> Engine:
    settings = Settings(window=WindowSettings(size="1m", allowed_lateness=0.0))
    sinks = [RoutedSink(LogSink("log", out or io.StringIO()), Severity.WARNING)]
    return Engine(settings, sinks, Metrics(CollectorRegistry()))


garbage = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.sampled_from(
        [
            b"{",
            b"null",
            b"[]",
            b'{"event_id": 1}',
            event(score=2.0),
            event(model_id=""),
            b'{"event_id":"a","model_id":"m","timestamp":1,"score":0.5,"features":{"x":[1]}}',
        ]
    ),
)


@given(st.lists(garbage, max_size=40), st.integers(0, 2**32))
def test_garbage_around_good_events_is_counted_and_never_stops_the_engine(
    junk: list[bytes], seed: int
) -> None:
    good = [event(f"g{i}", timestamp=i * 1000, features={"x": float(i % 7)}) for i in range(60)]
    messages = []
    for i, raw in enumerate(good):
        messages.append((raw, origin(2 * i)))
        if i < len(junk):
            messages.append((junk[i], origin(2 * i + 1)))
    e = engine()
    e.process(messages)
    e.finish()
    metrics = e.metrics
    bad = metrics.total("streamwatch_bad_events")
    windowed = metrics.total("streamwatch_events")
    # Every message is accounted for: windowed, or bad (junk that happens to be a valid
    # event is windowed too, under its own model).
    assert windowed + bad + metrics.total("streamwatch_label_events") == len(messages)
    assert metrics.total("streamwatch_events", model="m") >= 60


def test_a_drifting_stream_alerts_through_the_sink() -> None:
    out = io.StringIO()
    e = engine(out)
    # 20 one-minute windows of 150 events; feature x jumps by 3 sd from minute 12.
    messages: list[tuple[bytes, Origin]] = []
    for minute in range(20):
        for i in range(150):
            x = ((i * 7919) % 150) / 150.0 + (3.0 if minute >= 12 else 0.0)
            raw = event(f"{minute}-{i}", timestamp=minute * 60_000 + i * 400, features={"x": x})
            messages.append((raw, origin(len(messages))))
    outcomes = [e.process(messages[k : k + 500]) for k in range(0, len(messages), 500)]
    outcomes.append(e.finish())
    fired = [
        (n.window.index, a.labels["subject"])
        for o in outcomes
        for n in o.notifications
        for a in n.alerts
    ]
    assert fired == [(12, "x")]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["labels"]["subject"], line["labels"]["severity"]) for line in lines] == [
        ("x", "critical")
    ]
    assert e.metrics.total("streamwatch_windows_closed") == 20
    assert e.metrics.total("streamwatch_alerts", status="firing") == 1


def test_events_of_models_past_the_limit_are_dead_letters() -> None:
    settings = Settings(max_models=2)
    e = Engine(settings, [], Metrics(CollectorRegistry()))
    messages = [(event(f"{m}{i}", model_id=m), origin(i)) for i in range(3) for m in "abc"]
    e.process(messages)
    assert set(e.models) == {"a", "b"}
    assert e.metrics.total("streamwatch_bad_events", reason="model_limit") == 3
