"""A source's batch of messages as columns: their bytes, and runs of consecutive
messages of one (topic, partition) with their offsets. No object per message: an
:class:`Origin` is made only for a message that needs one (a bad one, mostly).

A table's rows (sources/tables.py) come already read, as event rows (``rows``); their
bytes are written, as JSON, only for a row that needs them (one that decoding reads
row by row, a bad one)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload

import msgspec
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from streamwatch.events.schema import Event, Message, Origin

IntArray = NDArray[np.intp]
Index = NDArray[np.intp] | NDArray[np.bool_]


class Written(Sequence[bytes]):
    """Event rows' bytes, each written (as its JSON event) when it is read."""

    def __init__(self, rows: pa.StructArray) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self.many(np.array([i], np.intp))[0]

    def many(self, positions: IntArray) -> list[bytes]:
        """The rows at ``positions``, written (Arrow converts them together)."""
        encode = msgspec.json.encode
        return [encode(_present(row)) for row in self.rows.take(positions).to_pylist()]

    @property
    def timed(self) -> bool:
        """Whether every row's time was read as a number (a column of text Arrow cannot
        read as times is decoded row by row, as an event's)."""
        kind = self.rows.type
        index = kind.get_field_index("timestamp")
        return index >= 0 and bool(
            pa.types.is_integer(kind.field(index).type)
            or pa.types.is_floating(kind.field(index).type)
        )

    def labels(self, positions: IntArray) -> list[Event]:
        """Rows' labels as label events (what the label join reads of a prediction that
        came with its label), from the columns (their times read): no row written."""
        rows = self.rows.take(positions)
        names = [n for n in _LABEL_FIELDS if rows.type.get_field_index(n) >= 0]
        columns = [rows.field(name).to_pylist() for name in names]
        return [
            Event(**dict(zip(names, values, strict=True))) for values in zip(*columns, strict=True)
        ]


_LABEL_FIELDS = ("event_id", "model_id", "timestamp", "label", "source")


def _present(value: Any) -> Any:
    """A row as its event: absent where the table holds no value."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    return value


@dataclass(slots=True)
class Polled:
    values: Sequence[bytes]
    topics: list[str]  # of each run
    partitions: list[int]  # of each run
    ends: IntArray  # where each run ends (exclusive)
    offsets: NDArray[np.int64]  # of each message
    rows: pa.StructArray | None = None  # the messages already read, as event rows

    @classmethod
    def of(cls, messages: Sequence[Message]) -> Polled:
        """Messages one by one (tests, and sources that have them so)."""
        return cls.of_runs(
            (m.origin.topic, m.origin.partition, [m.value], [m.origin.offset]) for m in messages
        )

    @classmethod
    def of_runs(
        cls, runs: Iterable[tuple[str, int, Sequence[bytes], Sequence[int] | IntArray]]
    ) -> Polled:
        """Runs of (topic, partition, values, offsets); consecutive ones of the same
        partition become one."""
        values: list[bytes] = []
        topics: list[str] = []
        partitions: list[int] = []
        ends: list[int] = []
        offsets = []
        for topic, partition, run_values, run_offsets in runs:
            if not len(run_values):
                continue
            values += run_values
            offsets.append(np.asarray(run_offsets, np.int64))
            if topics and topics[-1] == topic and partitions[-1] == partition:
                ends[-1] = len(values)
            else:
                topics.append(topic)
                partitions.append(partition)
                ends.append(len(values))
        return cls(
            values,
            topics,
            partitions,
            np.array(ends, np.intp),
            np.concatenate(offsets) if offsets else np.empty(0, np.int64),
        )

    @classmethod
    def of_columns(
        cls,
        values: list[bytes | None],
        topics: Sequence[str],
        partitions: Sequence[int],
        offsets: Sequence[int],
    ) -> Polled:
        """Messages as a client hands them over, column by column (a value of None, a
        tombstone, is an empty message)."""
        n = len(values)
        if not n:
            return cls.of_runs([])
        if None in values:
            values = [v or b"" for v in values]
        part = np.array(partitions, np.intp)
        names = sorted(set(topics))
        if len(names) == 1:
            topic = np.zeros(n, np.intp)
        else:
            code = {name: i for i, name in enumerate(names)}
            topic = np.fromiter(map(code.__getitem__, topics), np.intp, n)
        firsts = np.flatnonzero(np.diff(part, prepend=-1) | np.diff(topic, prepend=-1))
        return cls(
            values,  # type: ignore[arg-type]  # no None left
            [names[i] for i in topic[firsts].tolist()],
            part[firsts].tolist(),
            np.append(firsts[1:], n).astype(np.intp),
            np.array(offsets, np.int64),
        )

    def __len__(self) -> int:
        return len(self.values)

    def run_of(self) -> IntArray:
        """Each message's run."""
        return np.repeat(np.arange(len(self.ends)), np.diff(self.ends, prepend=0))

    def origin(self, i: int) -> Origin:
        run = int(np.searchsorted(self.ends, i, side="right"))
        return Origin(self.topics[run], self.partitions[run], int(self.offsets[i]))

    def partition_of(self) -> IntArray:
        return np.array(self.partitions, np.intp)[self.run_of()]

    def messages(self) -> list[Message]:
        return [Message(self.values[i], self.origin(i)) for i in range(len(self))]

    def take(self, index: Index) -> Polled:
        """The messages at ``index`` (in order), as a batch."""
        positions = np.flatnonzero(index) if index.dtype == np.bool_ else index
        if len(positions) == len(self):
            return self
        runs = self.run_of()[positions]
        rows = None if self.rows is None else self.rows.take(positions)
        values = Written(rows) if rows is not None else [self.values[i] for i in positions.tolist()]
        ends = np.flatnonzero(np.diff(runs, append=-1)) + 1
        kept = runs[ends - 1] if len(ends) else runs[:0]
        return Polled(
            values,
            [self.topics[r] for r in kept.tolist()],
            [self.partitions[r] for r in kept.tolist()],
            ends.astype(np.intp),
            self.offsets[positions],
            rows,
        )

    def by_topic(self) -> dict[str, int]:
        """How many messages came from each topic."""
        counts: dict[str, int] = {}
        for topic, n in zip(self.topics, np.diff(self.ends, prepend=0).tolist(), strict=True):
            counts[topic] = counts.get(topic, 0) + n
        return counts
