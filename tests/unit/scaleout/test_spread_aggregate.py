"""A spread model's aggregate: the partitions' labelled windows merged in partition
order once due in every partition (or after the timeout), the sequential detectors fed
window by window, and its state through a checkpoint. (Its closed windows, and the
whole against one engine, are in test_spread.py.)"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from streamwatch.detectors import Finding, registry
from streamwatch.detectors.base import LabelledBatch
from streamwatch.detectors.entry import Entry, Registry
from streamwatch.events import decode_batch
from streamwatch.pipeline.labelled import Labelled
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor
from streamwatch.pipeline.reference import load_reference
from streamwatch.scaleout.spread import Part, Partial
from streamwatch.scaleout.spread_aggregate import Aggregate
from streamwatch.scaleout.spread_outcomes import Share
from streamwatch.windows import WindowBounds
from tests.unit.scaleout.test_spread import PARTITIONS, START, settings, stream, write_reference

FIRST = START // 60  # the first window's index
SIZE = 1800  # messages of the stream the partitions read: six minutes and their labels
DUE = 5  # windows whose labels are due in every partition then


class Seen:
    """A sequential detector that remembers what it was fed, in order."""

    name = "seen"

    def __init__(self) -> None:
        self.fed: list[tuple[list[int], list[float]]] = []  # (windows, delays) per batch

    def observe(self, labels: LabelledBatch) -> None:
        self.fed.append((labels.joined.window.tolist(), labels.joined.delay.tolist()))

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]:
        return []

    def snapshot(self) -> Any:
        return self.fed

    def restore(self, state: Any) -> None:
        self.fed = [(list(w), list(d)) for w, d in state]


SEEN = Registry(
    [*registry.default(), Entry("seen", "sequential", lambda c: Seen(), "hint", "look at")]
)


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    return write_reference(tmp_path)


def judge(tmp: Path, reference: Path, detectors: Registry | None = None) -> ModelMonitor:
    s = settings(tmp, "e", reference)
    return ModelMonitor("s", s, load_reference(reference, s)["s"], detectors)


def published(monitor: ModelMonitor) -> dict[int, list[Partial]]:
    """Each partition's records, having read its share of the labelled stream."""
    messages = stream(labelled=True)[:SIZE]
    records = {}
    for p in range(PARTITIONS):
        part = Part(monitor, p)
        mine = decode_batch([m for m in messages if m[1].partition == p], 10**6).columns
        labels = mine.take(mine.labelled).events()
        part.process(mine.take(~mine.is_label), labels)
        records[p] = part.partials("x")
    return records


def outcomes(windows: list[ClosedWindow]) -> list[ClosedWindow]:
    return [w for w in windows if w.role == "outcomes"]


def test_labelled_windows_wait_for_every_partitions_labels_then_merge_in_order(
    tmp_path: Path, reference: Path
) -> None:
    records = published(judge(tmp_path, reference))
    labelled = {p: [r.outcomes[0] for r in rs if r.outcomes] for p, rs in records.items()}
    # A record says its partition passed its window, and its labels that window's end
    # plus the horizon; the last says how far both have come.
    for rs in records.values():
        for r in rs[:-1]:
            if r.outcomes:
                end = (r.outcomes[0] + 1) * 60.0
                assert (r.watermark, r.clock) == (end, end + 30.0)
        assert rs[-1].clock > rs[-2].clock
    assert labelled[0] == labelled[1] == labelled[2] == list(range(FIRST, FIRST + DUE))

    aggregate = Aggregate(judge(tmp_path, reference), PARTITIONS, timeout=60.0)
    for p in (2, 0):
        for r in records[p]:
            aggregate.receive(r, now=1000.0)
    # Partition 1 has not published: its labels are not due for the aggregate.
    assert outcomes(aggregate.due(now=1059.0)) == []
    merged = outcomes(aggregate.due(now=1060.0))
    assert [w.bounds.index for w in merged] == labelled[0]
    for w in merged:
        (found,) = [f for f in w.findings if f.detector == "aggregation"]
        assert (found.subject, found.value, found.severity.value) == (
            "labelled_partitions",
            1.0,
            "warning",
        )
        assert "without partitions 1: their labels of the window were not due" in (
            found.explanation
        )
        (coverage,) = [f for f in w.findings if f.detector == "labels"]
        assert 0 < coverage.details["labels"] < 150  # two partitions' of the window's
    for r in records[1]:  # too late: its windows are evaluated
        aggregate.receive(r)
    assert aggregate.labelled == {}
    assert outcomes(aggregate.due()) == []

    # All three: evaluated at once, the merge of the three in partition order.
    complete = Aggregate(judge(tmp_path, reference), PARTITIONS, timeout=60.0)
    for p in (1, 2, 0):
        for r in records[p]:
            complete.receive(r)
    shares = {index: dict(by_partition) for index, by_partition in complete.labelled.items()}
    merged = outcomes(complete.due())
    assert [w.bounds.index for w in merged] == labelled[0]
    for w in merged:
        (found,) = [f for f in w.findings if f.detector == "aggregation"]
        assert (found.value, found.severity.value) == (0.0, "ok")
        (coverage,) = [f for f in w.findings if f.detector == "labels"]
        mine = shares[w.bounds.index].values()
        assert coverage.details["labels"] == sum(s.coverage.labels for s in mine) == 150
        assert coverage.details["predictions"] == 150
    # Fewer labels than REFERENCE__MIN_EVENTS: every window pooled into the outcome
    # reference, each the merge of its partitions in partition order.
    judged = complete.judge
    expected = Labelled(judged.settings.detectors, judged.outcomes.entries)
    for index in labelled[0]:
        window = Labelled(judged.settings.detectors, judged.outcomes.entries)
        for p in range(PARTITIONS):
            window.merge(shares[index][p].state)
        expected.merge(window)
    pool = judged.outcomes.pool
    assert pool.state is not None
    assert not pool.complete
    assert pool.state.snapshot() == expected.snapshot()


def test_the_sequential_detectors_read_each_window_in_order_partition_after_partition(
    tmp_path: Path, reference: Path
) -> None:
    records = published(judge(tmp_path, reference, SEEN))
    aggregate = Aggregate(judge(tmp_path, reference, SEEN), PARTITIONS, timeout=60.0)
    every = [r for rs in records.values() for r in rs]
    random.Random(7).shuffle(every)  # received in any order before they are merged
    judged = aggregate.judge

    def new() -> Labelled:
        return Labelled(judged.settings.detectors, judged.outcomes.entries)

    expected = []
    for r in every:
        if r.outcomes:
            share = Share.unpack(r.outcomes[1], new)
            assert share.errors is not None
            assert share.errors.n > 0
            expected.append((r.outcomes[0], r.partition, share.errors))
    for r in every:
        aggregate.receive(r)
    merged = outcomes(aggregate.due())
    assert [w.bounds.index for w in merged] == list(range(FIRST, FIRST + DUE))
    in_order = sorted(expected, key=lambda e: (e[0], e[1]))  # by window, then partition
    assert [(index, p) for index, p, _ in in_order] == [
        (index, p) for index in range(FIRST, FIRST + DUE) for p in range(PARTITIONS)
    ]
    seen = judged.outcomes.sequential["seen"]
    assert isinstance(seen, Seen)
    assert seen.fed == [
        (errors.window.tolist(), errors.delay.tolist()) for _, _, errors in in_order
    ]


def test_an_aggregate_with_labelled_windows_pending_goes_through_a_checkpoint(
    tmp_path: Path, reference: Path
) -> None:
    records = published(judge(tmp_path, reference, SEEN))
    aggregate = Aggregate(judge(tmp_path, reference, SEEN), PARTITIONS, timeout=60.0)
    # Partition 0's records up to its share of the third labelled window.
    cut = next(i for i, r in enumerate(records[0]) if r.outcomes and r.outcomes[0] == FIRST + 2)
    for r in [*records[0][: cut + 1], *records[1], *records[2]]:
        aggregate.receive(r)
    before = outcomes(aggregate.due())
    assert [w.bounds.index for w in before] == [FIRST, FIRST + 1, FIRST + 2]
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(aggregate.snapshot()))
    restored = Aggregate(judge(tmp_path, reference, SEEN), PARTITIONS, timeout=60.0)
    restored.restore(state)
    assert restored.clocks == aggregate.clocks
    assert restored.judge.outcomes.evaluated_through == before[-1].bounds.index
    rest = records[0][cut + 1 :]
    for a in (aggregate, restored):
        for r in rest:
            a.receive(r)
    after, again = outcomes(aggregate.due()), outcomes(restored.due())
    assert after
    assert [w.findings for w in again] == [w.findings for w in after]
    seen = [a.judge.outcomes.sequential["seen"] for a in (aggregate, restored)]
    assert seen[0].snapshot() == seen[1].snapshot()

    # A checkpoint from before labels were merged has none of theirs.
    older = {k: state[k] for k in ("pending", "watermarks", "evaluated_through")}
    fresh = Aggregate(judge(tmp_path, reference), PARTITIONS, timeout=60.0)
    fresh.restore(older)
    assert (fresh.labelled, fresh.clocks) == ({}, {})
    assert fresh.judge.outcomes.evaluated_through == -1
