"""The engine scaled out: state per partition, moved between engines through a changelog
(here an in-memory fake of the topic; tests/integration/test_scale_out.py runs the real
one). The changelog's records are in tests/unit/scaleout/test_changelog.py, the state
file's mode in tests/unit/state/test_store.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, StateSettings, WindowSettings
from streamwatch.errors import ChangelogError
from streamwatch.events import Message, Offsets, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.pipeline.engine import Engine
from streamwatch.state.store import StateStore
from tests.factories import Batches, FakeChangelog, event


def settings(tmp: Path, name: str) -> Settings:
    return Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        state=StateSettings(path=tmp / f"{name}.sqlite", changelog_topic="cl"),
    )


def scaled(tmp: Path, name: str, log: FakeChangelog) -> tuple[Engine, StateStore]:
    s = settings(tmp, name)
    engine = Engine(s, [], Metrics(CollectorRegistry()), changelog=log)  # type: ignore[arg-type]
    return engine, StateStore(s.state.path, s)


def stream() -> dict[int, list[Message]]:
    """Model "a" on partition 0, "b" on partition 1; b's x jumps by 3 from minute 12."""
    partitions: dict[int, list[Message]] = {0: [], 1: []}
    for minute in range(20):
        for i in range(100):
            for partition, model in enumerate("ab"):
                shift = 3.0 if model == "b" and minute >= 12 else 0.0
                x = ((i * 7919) % 100) / 100.0 + shift
                raw = event(
                    f"{model}{minute}-{i}",
                    model_id=model,
                    timestamp=minute * 60_000 + i * 600,
                    features={"x": x},
                )
                messages = partitions[partition]
                messages.append(Message(raw, Origin("t", partition, len(messages))))
    return partitions


def results(outcomes: Sequence[Produced]) -> tuple[dict[tuple[str, float, str], Any], set[str]]:
    """Each closed window's statistics by (model, start, role); notification ids. A window
    closed twice (redone after a crash) must have the same statistics both times."""
    windows: dict[tuple[str, float, str], Any] = {}
    for outcome in outcomes:
        for w in outcome.closed:
            stats = sorted((f.detector, f.subject, f.statistic, f.value) for f in w.findings)
            key = (w.model, w.bounds.start, w.role)
            assert windows.setdefault(key, (w.n, stats)) == (w.n, stats), key
    ids = {n.id for o in outcomes for n in o.notifications}
    return windows, ids


def test_a_partition_moved_twice_and_once_after_a_crash_ends_as_on_one_engine(
    tmp_path: Path,
) -> None:
    parts = stream()
    single = Engine(settings(tmp_path, "one"), [], Metrics(CollectorRegistry()))
    interleaved = [m for pair in zip(parts[0], parts[1], strict=True) for m in pair]
    expected = [single.process(interleaved[k : k + 300]) for k in range(0, len(interleaved), 300)]
    expected.append(single.finish())

    log = FakeChangelog()
    a, a_store = scaled(tmp_path, "a", log)
    b, b_store = scaled(tmp_path, "b", log)
    outcomes = [a.process(parts[0][:700] + parts[1][:700])]
    commits = {1: a.rebalance.release({1}, a_store)}  # rebalance: partition 1 moves to b
    assert set(a.processor.models) == {"a"}
    assert set(a.positions.next) == {("t", 0)}
    assert b.rebalance.acquire({1}, b_store) == {("t", 1): 700} == commits[1]
    outcomes.append(b.process(parts[1][700:1200]))
    b.checkpointer.checkpoint(b_store)
    outcomes.append(b.process(parts[1][1200:1500]))  # then b is SIGKILLed: this is lost
    c, c_store = scaled(tmp_path, "c", log)
    resumed = c.rebalance.acquire({1}, c_store)
    assert resumed == {("t", 1): 1200}  # from the changelog: c's state file has nothing
    outcomes.append(c.process(parts[1][1100:]))  # redelivered from before the checkpoint
    outcomes.append(a.process(parts[0][700:]))
    outcomes += [a.finish(), c.finish()]

    expected_windows, expected_ids = results(expected)
    windows, ids = results(outcomes)
    assert windows == expected_windows
    assert ids == expected_ids
    assert any(n.model == "b" for o in expected for n in o.notifications)  # the drift alerted
    assert c.metrics.total("streamwatch_redelivered_messages") == 100


def test_a_model_whose_events_come_through_two_partitions_is_kept_with_the_first(
    tmp_path: Path,
) -> None:
    e, _ = scaled(tmp_path, "e", FakeChangelog())
    e.process([Message(event("1", model_id="m"), Origin("t", 2, 0))])
    e.process([Message(event("2", model_id="m"), Origin("t", 5, 0))])
    assert e.ownership.homes == {"m": 2}
    assert e.metrics.total("streamwatch_bad_events", reason="model_spread") == 1


def test_offsets_are_committed_only_once_the_changelog_has_the_partition(
    tmp_path: Path,
) -> None:
    log = FakeChangelog()
    e, store = scaled(tmp_path, "e", log)
    e.process(
        [Message(event(str(i), model_id="m", timestamp=i), Origin("t", 3, i)) for i in range(10)]
    )
    log.failing = True
    assert e.checkpointer.checkpoint(store) == {}
    assert store.load("partition-3") is not None  # the state file has it
    log.failing = False
    assert e.checkpointer.checkpoint(store) == {("t", 3): 10}
    assert log.records[3][1] == {("t", 3): 10}


def test_a_partition_is_restored_from_whichever_copy_covers_more(tmp_path: Path) -> None:
    log = FakeChangelog()
    e, store = scaled(tmp_path, "e", log)
    e.process(
        [Message(event(str(i), model_id="m", timestamp=i), Origin("t", 0, i)) for i in range(10)]
    )
    e.checkpointer.checkpoint(store)  # both copies at 10
    log.failing = True
    e.process([Message(event("x", model_id="m", timestamp=20), Origin("t", 0, 10))])
    e.checkpointer.checkpoint(store)  # the state file at 11, the changelog still at 10
    log.failing = False
    again, _ = scaled(tmp_path, "again", log)
    assert again.rebalance.acquire({0}, store) == {("t", 0): 11}
    elsewhere, elsewhere_store = scaled(tmp_path, "elsewhere", log)
    assert elsewhere.rebalance.acquire({0}, elsewhere_store) == {("t", 0): 10}
    assert set(again.processor.models) == set(elsewhere.processor.models) == {"m"}
    copy = elsewhere_store.load("partition-0")  # kept as the local copy at once
    assert copy is not None
    assert copy.offsets == {("t", 0): 10}


def test_release_forgets_the_partitions_models_alerts_and_local_copy(tmp_path: Path) -> None:
    e, store = scaled(tmp_path, "e", FakeChangelog())
    for p, model in enumerate("ab"):
        e.process([Message(event(model, model_id=model), Origin("t", p, 0))])
    e.checkpointer.checkpoint(store)
    assert e.rebalance.release({1}, store) == {("t", 1): 1}
    assert set(e.processor.models) == {"a"}
    assert e.ownership.homes == {"a": 0}
    assert store.load("partition-1") is None
    assert store.load("partition-0") is not None


def test_a_partition_restored_from_a_state_file_ahead_of_the_changelog_catches_it_up(
    tmp_path: Path,
) -> None:
    log = FakeChangelog()
    e, store = scaled(tmp_path, "e", log)
    e.process([Message(event("1", model_id="m", timestamp=1), Origin("t", 0, 0))])
    log.failing = True
    # The state file has offset 1, the changelog nothing.
    assert e.checkpointer.checkpoint(store) == {}
    log.failing = False
    again, _ = scaled(tmp_path, "again", log)
    assert again.rebalance.acquire({0}, store) == {("t", 0): 1}
    assert log.records == {}
    # Committed only once the log has it.
    assert again.checkpointer.checkpoint(store) == {("t", 0): 1}
    assert log.records[0][1] == {("t", 0): 1}


def test_lost_partitions_are_let_go_unsaved(tmp_path: Path) -> None:
    log = FakeChangelog()
    e, store = scaled(tmp_path, "e", log)
    e.process([Message(event("1", model_id="m", timestamp=1), Origin("t", 0, 0))])
    e.checkpointer.checkpoint(store)
    e.process([Message(event("2", model_id="m", timestamp=2), Origin("t", 0, 1))])
    assert e.rebalance.lose({0}, store) == {}
    assert log.records[0][1] == {("t", 0): 1}  # the new owner's record is not written over
    assert e.processor.models == {}
    assert e.positions.next == {}
    assert store.load("partition-0") is None


def test_past_the_model_limit_no_home_is_kept(tmp_path: Path) -> None:
    s = settings(tmp_path, "e").model_copy(update={"max_models": 2})
    e = Engine(s, [], Metrics(CollectorRegistry()), changelog=FakeChangelog())  # type: ignore[arg-type]
    e.process([Message(event(m, model_id=m), Origin("t", 0, i)) for i, m in enumerate("abcd")])
    assert e.ownership.homes == {"a": 0, "b": 0}
    assert e.metrics.total("streamwatch_bad_events", reason="model_limit") == 2


class OneBatch(Batches):
    """One batch, then nothing, until the changelog has partition 0 (or 50 polls)."""

    def __init__(self, engine: Engine, log: FakeChangelog) -> None:
        batch = [
            Message(event(str(i), model_id="m", timestamp=i), Origin("t", 0, i)) for i in range(5)
        ]
        super().__init__([batch])
        self.engine, self.log = engine, log
        self.polls = 0

    def poll(self, max_records: int) -> list[Message]:
        self.polls += 1
        if 0 in self.log.records or self.polls > 50:
            self.engine.stop()
        return self.batches.pop() if self.batches else []


def test_a_failed_changelog_write_is_tried_again_while_no_input_comes(tmp_path: Path) -> None:
    log = FakeChangelog()
    s = settings(tmp_path, "e").model_copy(
        update={
            "state": StateSettings(
                path=tmp_path / "e.sqlite", changelog_topic="cl", checkpoint_interval=0
            )
        }
    )
    e = Engine(s, [], Metrics(CollectorRegistry()), changelog=log)  # type: ignore[arg-type]
    store = StateStore(s.state.path, s)
    writes = log.write

    def fail_once(states: Mapping[int, tuple[bytes, Offsets]]) -> None:
        log.write = writes  # type: ignore[method-assign]
        raise ChangelogError("broker gone")

    log.write = fail_once  # type: ignore[method-assign]
    source = OneBatch(e, log)
    try:
        e.run(source, store)
    finally:
        store.close()
    assert log.records[0][1] == {("t", 0): 5}
    assert source.polls <= 50  # written while idle, not only at the stop
