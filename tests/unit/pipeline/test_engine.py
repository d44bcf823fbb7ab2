from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamwatch.alerting.policy import Notification
from streamwatch.config import LogSinkSettings, Settings, StateSettings, WindowSettings
from streamwatch.detectors import Finding
from streamwatch.events import BadEvent, Message
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.log import LogSink
from streamwatch.state.store import StateStore
from streamwatch.windows import WindowBounds
from tests.factories import event, origin


def engine(out: io.StringIO | None = None, lateness: float = 0.0) -> Engine:
    settings = Settings(window=WindowSettings(size="1m", allowed_lateness=lateness))
    sinks = [RoutedSink(LogSink("log", out or io.StringIO()), LogSinkSettings(kind="log"))]
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


@given(
    junk=st.lists(garbage, max_size=40),
    stamps=st.lists(st.integers(0, 600_000), min_size=60, max_size=60),
    cuts=st.lists(st.integers(0, 100), max_size=4),
)
def test_every_message_is_windowed_late_or_bad_and_the_engine_never_stops(
    junk: list[bytes], stamps: list[int], cuts: list[int]
) -> None:
    # Out-of-order event times (some late), garbage between them, arbitrary batching.
    good = [event(f"g{i}", timestamp=t, features={"x": float(i % 7)}) for i, t in enumerate(stamps)]
    messages: list[Message] = []
    for i, raw in enumerate(good):
        messages.append(Message(raw, origin(len(messages))))
        if i < len(junk):
            messages.append(Message(junk[i], origin(len(messages))))
    e = engine(lateness=30.0)
    bounds = sorted({0, len(messages), *(c for c in cuts if c < len(messages))})
    for lo, hi in itertools.pairwise(bounds):
        e.process(messages[lo:hi])
    e.finish()
    summary = e.metrics.summary()
    assert summary["windowed"] + summary["late"] + summary["bad"] + summary["labels"] == len(
        messages
    )
    assert e.metrics.total("streamwatch_events", model="m") + e.metrics.total(
        "streamwatch_late_events", model="m"
    ) == len(good)


def test_a_drifting_stream_alerts_through_the_sink() -> None:
    out = io.StringIO()
    e = engine(out)
    # 20 one-minute windows of 150 events; feature x jumps by 3 sd from minute 12.
    messages: list[Message] = []
    for minute in range(20):
        for i in range(150):
            x = ((i * 7919) % 150) / 150.0 + (3.0 if minute >= 12 else 0.0)
            raw = event(f"{minute}-{i}", timestamp=minute * 60_000 + i * 400, features={"x": x})
            messages.append(Message(raw, origin(len(messages))))
    outcomes = [e.process(messages[k : k + 500]) for k in range(0, len(messages), 500)]
    outcomes.append(e.finish())
    e.dispatcher.start()  # what run() does: the outbox's workers deliver
    assert e.dispatcher.drain(10.0)
    e.dispatcher.stop()
    fired = [
        (n.window.index, a.labels["detector"], a.labels["subject"], a.labels["statistic"])
        for o in outcomes
        for n in o.notifications
        for a in n.alerts
    ]
    # The shift moves every value above the reference's range: drift and data quality.
    assert fired == [
        (12, "feature_drift", "x", "wasserstein"),
        (12, "data_quality", "x", "out_of_range"),
    ]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(line["labels"]["subject"], line["labels"]["severity"]) for line in lines} == {
        ("x", "critical")
    }
    assert e.metrics.total("streamwatch_windows_closed") == 20
    assert e.metrics.total("streamwatch_alerts", status="firing") == 2
    assert e.metrics.total("streamwatch_alerts", status="resolved") == 0


def test_events_of_models_past_the_limit_are_dead_letters() -> None:
    settings = Settings(max_models=2)
    e = Engine(settings, [], Metrics(CollectorRegistry()))
    messages = [Message(event(f"{m}{i}", model_id=m), origin(i)) for i in range(3) for m in "abc"]
    e.process(messages)
    assert set(e.processor.models) == {"a", "b"}
    assert e.metrics.total("streamwatch_bad_events", reason="model_limit") == 3


def test_an_event_from_the_far_future_is_bad_and_does_not_close_windows() -> None:
    e = engine()
    now_ms = int(time.time() * 1000)
    future = event("f", timestamp=now_ms + 10 * 86_400_000)  # ten days ahead of the clock
    normal = [Message(event(f"n{i}", timestamp=now_ms + i), origin(i)) for i in range(50)]
    e.process([Message(future, origin(99)), *normal])
    assert e.metrics.total("streamwatch_bad_events", reason="future_timestamp") == 1
    e.process([Message(event("n99", timestamp=now_ms + 1000), origin(100))])
    assert e.metrics.total("streamwatch_late_events") == 0


def test_huge_and_odd_values_never_raise_out_of_the_engine() -> None:
    e = engine()
    values = [1.5e308, -1.5e308, 1e-320, 0.0, -0.0, 1e99, 3.0, None, "text", True]
    messages = [
        Message(event(f"v{i}", timestamp=i * 1000, features={"x": v, "k": v}), origin(i))
        for i, v in enumerate(values * 30)
    ]
    e.process(messages)
    e.finish()
    assert e.metrics.total("streamwatch_events") == len(messages)


class RefusingSource:
    """One batch, then nothing; its first commit is refused (a rebalance under way)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.batches = [[Message(event(f"e{i}", timestamp=i), origin(i)) for i in range(5)]]
        self.commits: list[dict[tuple[str, int], int]] = []
        self.polls = 0

    def poll(self, max_records: int) -> list[Message]:
        self.polls += 1
        if len(self.commits) >= 2 or self.polls > 50:
            self.engine.stop()
        return self.batches.pop() if self.batches else []

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """None here."""

    def settle(self) -> bool:
        return True

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        self.commits.append(dict(offsets))
        return len(self.commits) > 1

    def close(self) -> None:
        """Nothing to close."""


def test_a_refused_commit_is_tried_again_while_no_input_comes(tmp_path: Path) -> None:
    settings = Settings(state=StateSettings(path=tmp_path / "s.sqlite", checkpoint_interval=0))
    e = Engine(settings, [], Metrics(CollectorRegistry()))
    source = RefusingSource(e)
    store = StateStore(settings.state.path, settings)
    try:
        e.run(source, store)
    finally:
        store.close()
    assert source.commits[:2] == [{("test", 0): 5}] * 2
    assert source.polls <= 50  # the second commit came while idle, not at the stop


def test_a_notification_that_cannot_be_encoded_is_counted_and_the_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    e = engine(out)
    observe = e.conclusion.policy.observe

    def broken(
        model: str, window: WindowBounds, findings: Iterable[Finding]
    ) -> Notification | None:
        sent = observe(model, window, findings)
        if sent is None or window.index != 12:
            return sent
        (first, *rest) = sent.alerts
        return replace(sent, alerts=(replace(first, value=object()), *rest))  # type: ignore[arg-type]

    monkeypatch.setattr(e.conclusion.policy, "observe", broken)
    messages = [
        Message(
            event(
                f"{m}-{i}", timestamp=m * 60_000 + i * 400, features={"x": i % 9 + 9 * (m >= 12)}
            ),
            origin(m * 150 + i),
        )
        for m in range(20)
        for i in range(150)
    ]
    outcome = e.process(messages)
    later = e.finish()
    assert e.metrics.total("streamwatch_unencodable_notifications", model="m") == 1
    assert e.outbox.pending() == 0  # nothing of it was stored
    assert outcome.notifications == []
    assert later.notifications == []
    assert e.metrics.total("streamwatch_windows_closed") == 20  # every window still closed


class Unsettled(RefusingSource):
    """Its dead letters are acknowledged only from its third ``settle``."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.settles = 0

    def settle(self) -> bool:
        self.settles += 1
        return self.settles >= 3

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        self.commits.append(dict(offsets))
        return True


def test_no_checkpoint_covers_bad_messages_whose_dead_letters_are_unacknowledged(
    tmp_path: Path,
) -> None:
    settings = Settings(state=StateSettings(path=tmp_path / "s.sqlite", checkpoint_interval=0))
    e = Engine(settings, [], Metrics(CollectorRegistry()))
    source = Unsettled(e)
    store = StateStore(settings.state.path, settings)
    try:
        e.run(source, store)
        assert source.settles >= 3
        assert len(source.commits) == source.settles - 2  # none before the letters settled
        checkpoint = store.load()
    finally:
        store.close()
    assert checkpoint is not None
    assert checkpoint.offsets == {("test", 0): 5}
