"""Decoding a batch: the columnar path for all it vouches for, the exact path for the
rest, the good events put back together in arrival order."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streamwatch.events import columnar
from streamwatch.events.columns import EventColumns, IntArray
from streamwatch.events.exact import decode_each
from streamwatch.events.polled import Polled
from streamwatch.events.reader import SMALL_PART, Reader, too_deep
from streamwatch.events.schema import BadEvent, Message

# Splits of a batch Arrow cannot read, at most: enough to find a few bad messages, or to
# learn a new shape from the first small parts; past them (a flood of new names, say)
# what is left goes to the exact path.
MAX_SPLITS = 32


@dataclass(slots=True)
class Decoded:
    """A batch's good events as columns, in arrival order, and its bad messages."""

    columns: EventColumns
    bad: list[BadEvent]

    def take(self, index: IntArray) -> Decoded:
        return Decoded(self.columns.take(index), self.bad)


def decode_batch(
    messages: Polled | Sequence[Message],
    max_bytes: int,
    latest: float = math.inf,
    reader: Reader | None = None,
) -> Decoded:
    """Decode a batch of messages. Events stamped after ``latest`` (epoch seconds) are
    bad: one event from the far future would move the watermark past every window.
    ``reader``: the one that read the batches before, and learned their shape."""
    reader = Reader() if reader is None else reader
    polled = messages if isinstance(messages, Polled) else Polled.of(messages)
    if polled.rows is not None:
        return _read_rows(polled, polled.rows, max_bytes, latest)
    raws, n = polled.values, len(polled)
    lengths = np.fromiter(map(len, raws), np.intp, n)
    exact = np.zeros(n, np.bool_)
    exact[lengths > max_bytes] = True
    exact[too_deep(raws, lengths)] = True
    parts: list[EventColumns] = []
    pending, splits = [np.flatnonzero(~exact)], 0
    while pending:
        chunk = pending.pop()
        rows = reader.read(raws if len(chunk) == n else [raws[i] for i in chunk.tolist()])
        if rows is None:
            if len(chunk) <= SMALL_PART or splits == MAX_SPLITS:
                exact[chunk] = True
            else:  # split, to find the messages it cannot read (first ones first)
                half, splits = len(chunk) // 2, splits + 1
                pending += [chunk[half:], chunk[:half]]
            continue
        columns, refused = columnar.columns(rows, polled, chunk, latest)
        if refused.any():
            exact[chunk[refused]] = True
            if refused.all():
                continue
            columns = columns.take(~refused)
        parts.append(columns)
    bad: list[BadEvent] = []
    if exact.any():
        parts.append(_exact(polled, np.flatnonzero(exact), max_bytes, latest, bad))
    return Decoded(_in_order(parts, polled), bad)


def _read_rows(polled: Polled, rows: pa.StructArray, max_bytes: int, latest: float) -> Decoded:
    """A table's rows, read already: the columnar path for all it vouches for, the
    exact path (their events written as JSON) for the rest."""
    columns, refused = columnar.columns(rows, polled, np.arange(len(polled)), latest)
    if not refused.any():
        return Decoded(columns, [])
    bad: list[BadEvent] = []
    exact = _exact(polled, np.flatnonzero(refused), max_bytes, latest, bad)
    return Decoded(_in_order([columns.take(~refused), exact], polled), bad)


def _exact(
    polled: Polled, positions: IntArray, max_bytes: int, latest: float, bad: list[BadEvent]
) -> EventColumns:
    chosen = positions.tolist()
    raws = [polled.values[i] for i in chosen]
    origins = [polled.origin(i) for i in chosen]
    good, events, refused = decode_each(raws, origins, max_bytes, latest)
    bad += refused
    return EventColumns.of_events(events, polled, positions[good])


def _in_order(parts: list[EventColumns], polled: Polled) -> EventColumns:
    if not parts:
        return EventColumns.of_events([], polled)
    if len(parts) == 1:
        return parts[0]
    columns = EventColumns.concat(parts)
    return columns.take(np.argsort(columns.at, kind="stable"))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (nesting is fine).

    Decoding allocates many small containers; a collection in the middle of a large
    batch nearly halves throughput (BENCHMARKS.md) and finds nothing to free. Held
    over a whole batch, the batch's objects are freed by reference counting before
    the collector is back, so it never scans them at all.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
