"""Only what is durable is delivered: with a state file, a notification is held until the
checkpoint that covers its window is written, so that whoever restores an older state
closes the window again and makes the same notification, never a second one; scaled
out, the undelivered rows travel with their partition's state."""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import Alert
from streamwatch.config import LogSinkSettings, Settings, StateSettings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.events import Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.sinks import RoutedSink
from streamwatch.sinks.log import LogSink
from streamwatch.state.store import StateStore, partition_scope
from tests.factories import Batches, FakeChangelog, event


def drifting() -> list[Message]:
    """20 one-minute windows of 150 events; feature x jumps by 3 sd from minute 12."""
    return drifting_of("m")


def drifting_of(model: str, partition: int = 0) -> list[Message]:
    messages: list[Message] = []
    for minute in range(20):
        for i in range(150):
            x = ((i * 7919) % 150) / 150.0 + (3.0 if minute >= 12 else 0.0)
            stamp = minute * 60_000 + i * 400
            raw = event(f"{model}{minute}-{i}", model_id=model, timestamp=stamp, features={"x": x})
            messages.append(Message(raw, Origin("t", partition, len(messages))))
    return messages


def scaled_out(tmp_path: Path) -> tuple[Engine, FakeChangelog]:
    """An engine with a changelog, holding notifications as ``run`` does with state."""
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0),
        state=StateSettings(path=tmp_path / "state.sqlite", changelog_topic="cl"),
    )
    sinks = [RoutedSink(LogSink("log", io.StringIO()), LogSinkSettings(kind="log"))]
    changelog = FakeChangelog()
    e = Engine(settings, sinks, Metrics(CollectorRegistry()), changelog=changelog)  # type: ignore[arg-type]
    e.conclusion.hold = True
    return e, changelog


class Recorded(Batches):
    """The messages in batches of 300, then the end; records the outbox at each poll."""

    def __init__(self, engine: Engine, messages: Sequence[Message]) -> None:
        super().__init__([list(messages[k : k + 300]) for k in range(0, len(messages), 300)])
        self.engine = engine
        self.seen: list[dict[tuple[str, str], int]] = []

    def poll(self, max_records: int) -> list[Message] | None:
        self.seen.append(self.engine.outbox.counts())
        return super().poll(max_records)


def engine(tmp_path: Path, out: io.StringIO, outbox: Outbox | None = None) -> Engine:
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0),
        state=StateSettings(path=tmp_path / "state.sqlite", checkpoint_interval="1h"),
    )
    sinks = [RoutedSink(LogSink("log", out), LogSinkSettings(kind="log"))]
    return Engine(settings, sinks, Metrics(CollectorRegistry()), outbox=outbox)


def test_a_notification_is_held_until_the_checkpoint_that_covers_its_window(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    e = engine(tmp_path, out)
    source = Recorded(e, drifting())
    store = StateStore(e.settings.state.path, e.settings)
    try:
        e.run(source, store)
    finally:
        store.close()
    # The shift's window closed mid-stream; no checkpoint came before the end (1 h).
    assert source.seen[-1] == {("log", "held"): 1}
    assert all(status == "held" for seen in source.seen for _, status in seen)
    assert e.outbox.counts() == {("log", "sent"): 1}  # the last checkpoint released it
    assert len(out.getvalue().splitlines()) == 2  # one line per alert of the notification


def test_without_a_state_file_a_notification_is_sent_at_once(tmp_path: Path) -> None:
    e = engine(tmp_path, io.StringIO())
    outcome = e.process(drifting())
    assert len(outcome.notifications) == 1
    assert e.outbox.counts() == {("log", "pending"): 1}


def test_a_crash_before_the_checkpoint_makes_the_same_notification_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    first = engine(tmp_path, io.StringIO(), outbox)
    first.conclusion.hold = (
        True  # as in run() with a state file; then it dies before any checkpoint
    )
    (made,) = first.process(drifting()).notifications
    assert outbox.counts() == {("log", "held"): 1}

    out = io.StringIO()
    second = engine(tmp_path, out, outbox)
    store = StateStore(second.settings.state.path, second.settings)
    try:
        second.run(Recorded(second, drifting()), store)
    finally:
        store.close()
    assert outbox.counts() == {("log", "sent"): 1}
    assert outbox.listed()[0].id == made.id
    assert len(out.getvalue().splitlines()) == 2


def test_a_crash_between_the_checkpoint_and_the_release_loses_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    first = engine(tmp_path, io.StringIO(), outbox)
    first.conclusion.hold = True
    (made,) = first.process(drifting()).notifications
    store = StateStore(first.settings.state.path, first.settings)
    store.save(
        first.checkpointer.state(None), first.positions.next
    )  # the checkpoint, then the crash
    assert outbox.counts() == {("log", "held"): 1}

    second = engine(tmp_path, io.StringIO(), outbox)
    checkpoint = store.load()
    assert checkpoint is not None
    second.checkpointer.restore(checkpoint.state, checkpoint.offsets)
    store.close()
    assert outbox.counts() == {("log", "pending"): 1}  # the state that closed it says so
    assert [row.id for row in outbox.due("log", now=2e9)] == [made.id]


def test_a_partition_state_carries_its_undelivered_rows_to_a_successor(tmp_path: Path) -> None:
    before, _ = scaled_out(tmp_path)
    (made,) = before.process(drifting()).notifications
    assert before.ownership.homes == {"m": 0}
    encoded, offsets = before.checkpointer.states([0])[partition_scope(0)]

    successor = engine(tmp_path / "successor", io.StringIO())
    successor.checkpointer.restore(msgspec.msgpack.decode(encoded), offsets)
    assert successor.outbox.counts() == {("log", "pending"): 1}
    (row,) = successor.outbox.due("log", now=2e9)
    assert row.notification == made
    assert (
        before.checkpointer.states([1])[partition_scope(1)][0] != encoded
    )  # another partition carries none of it


def test_scaled_out_the_checkpoint_of_a_partition_releases_its_notifications_only(
    tmp_path: Path,
) -> None:
    e, changelog = scaled_out(tmp_path)
    made = e.process(drifting() + drifting_of("n", partition=1)).notifications
    assert {n.model for n in made} == {"m", "n"}
    store = StateStore(e.settings.state.path, e.settings)
    e.checkpointer.checkpoint(store, [0])  # partition 0 only: model m's
    assert {row.model for row in e.outbox.listed(status="pending")} == {"m"}
    assert {row.model for row in e.outbox.listed(status="held")} == {"n"}
    e.checkpointer.checkpoint(store)  # every partition changed
    store.close()
    assert e.outbox.counts() == {("log", "pending"): 2}
    assert changelog.records.keys() == {0, 1}


def test_a_partition_let_go_takes_its_undelivered_rows_and_a_sent_one_leaves_its_state(
    tmp_path: Path,
) -> None:
    e, changelog = scaled_out(tmp_path)
    e.process(drifting() + drifting_of("n", partition=1))
    store = StateStore(e.settings.state.path, e.settings)
    e.checkpointer.checkpoint(store)
    carried = {
        p: msgspec.msgpack.decode(blob)["outbox"] for p, (blob, _) in changelog.records.items()
    }
    assert {p: len(rows) for p, rows in carried.items()} == {0: 1, 1: 1}

    (row,) = [r for r in e.outbox.due("log", now=2e9) if r.notification.model == "m"]  # sent
    e.outbox.mark(row, "sent")
    e.dispatcher._sent.add("m")  # as the worker notes it
    e.checkpointer.checkpoint(store)  # partition 0's record carries it no more
    assert msgspec.msgpack.decode(changelog.records[0][0])["outbox"] == []

    e.rebalance.release([1], store)  # revoked: model n's row goes with the partition
    store.close()
    assert {(r.model, r.status) for r in e.outbox.listed()} == {("m", "sent"), ("n", "moved")}
    successor = engine(tmp_path / "successor", io.StringIO())
    successor.checkpointer.restore(
        msgspec.msgpack.decode(changelog.records[1][0]), changelog.records[1][1]
    )
    assert [r.notification.model for r in successor.outbox.due("log", now=2e9)] == ["n"]


def test_a_revoked_partitions_held_notifications_are_left_to_its_next_owner(
    tmp_path: Path,
) -> None:
    e, changelog = scaled_out(tmp_path)
    e.process(drifting() + drifting_of("n", partition=1))
    store = StateStore(e.settings.state.path, e.settings)
    before_move: set[tuple[str | None, str]] = set()
    move = e.outbox.move

    def watched(models: Collection[str]) -> int:
        before_move.update((r.model, r.status) for r in e.outbox.listed())
        return move(models)

    e.outbox.move = watched  # type: ignore[method-assign]
    e.rebalance.release([1], store)  # revoked before any checkpoint: model n's row still held
    store.close()
    # Never released here, not even for the moment a worker could have sent it in.
    assert before_move == {("m", "held"), ("n", "held")}
    assert {(r.model, r.status) for r in e.outbox.listed()} == {("m", "held"), ("n", "moved")}
    (carried,) = msgspec.msgpack.decode(changelog.records[1][0])["outbox"]
    assert carried[3] == "n"
    row = e.outbox.due("log", now=2e9)  # nothing of n's is due here
    assert row == []


def test_the_gauges_follow_the_closed_windows_and_the_alerts_and_go_with_their_model() -> None:
    e = Engine(
        Settings(window=WindowSettings(size="1m", allowed_lateness=0)),
        [RoutedSink(LogSink("log", io.StringIO()), LogSinkSettings(kind="log"))],
        Metrics(CollectorRegistry()),
    )
    registry = e.metrics.registry
    dead = {"sink": "log", "result": "dead"}
    assert registry.get_sample_value("streamwatch_notifications_total", dead) == 0
    assert registry.get_sample_value("streamwatch_outbox_pending", {"sink": "log"}) == 0
    messages = drifting()
    e.process(messages[: 15 * 150])  # x has drifted for three windows: an alert fires
    drift = {"model": "m", "detector": "feature_drift", "subject": "x"}
    statistic = drift | {"statistic": e.settings.detectors.feature_drift.numeric_statistic}
    assert registry.get_sample_value("streamwatch_statistic", statistic) is not None
    threshold = statistic | {"severity": "critical"}
    assert registry.get_sample_value("streamwatch_statistic_threshold", threshold) is not None
    firing = {"model": "m", "severity": "critical"}
    critical = [t for t in e.conclusion.policy.tracks.values() if t.severity is Severity.CRITICAL]
    assert any(t.labels["subject"] == "x" for t in critical)
    assert registry.get_sample_value("streamwatch_alerts_firing", firing) == len(critical)
    e.conclusion.forget(["m"])  # let go
    models = {s.labels.get("model") for f in registry.collect() for s in f.samples}
    gauges = (
        "streamwatch_statistic",
        "streamwatch_alerts_firing",
        "streamwatch_label_coverage",
        "streamwatch_label_delay",
    )
    kept = {s.name for f in registry.collect() for s in f.samples if s.name.startswith(gauges)}
    assert kept == set()
    assert "m" in models  # the counters of what it did stay


class Holding(LogSink):
    """A sink that holds what fires (as Alertmanager's does): records what it is told."""

    def __init__(self) -> None:
        super().__init__("holding", io.StringIO())
        self.standing: dict[str, list[str]] = {}
        self.forgotten: list[str] = []

    def resume(self, standing: Mapping[str, Sequence[Alert]]) -> None:
        self.standing |= {
            m: [a.labels["subject"] for a in alerts] for m, alerts in standing.items()
        }

    def forget(self, models: Collection[str]) -> None:
        self.forgotten += models


def test_a_restored_state_tells_a_holding_sink_what_still_fires_and_a_model_let_go() -> None:
    settings = Settings(window=WindowSettings(size="1m", allowed_lateness=0))
    first = Engine(settings, [], Metrics(CollectorRegistry()))
    first.process(drifting()[: 15 * 150])  # x fires
    state = first.conclusion.snapshot(None)
    sink = Holding()
    second = Engine(
        settings,
        [RoutedSink(sink, LogSinkSettings(kind="log"))],
        Metrics(CollectorRegistry()),
    )
    assert sink.standing == {}
    second.conclusion.restore(state)
    fired = [t.labels["subject"] for t in first.conclusion.policy.tracks.values() if t.severity]
    assert sink.standing == {"m": fired}
    assert set(fired) == {"x"}
    second.conclusion.forget(["m"])
    assert sink.forgotten == ["m"]
