"""Tumbling windows of one model: event-time with a watermark, or event-count.

A time window ``[start, end)`` closes once the watermark (the largest event time seen
minus the allowed lateness) reaches ``end``; an event whose window has closed by the
time it arrives is late: counted and dropped. The watermark is tracked per event (a
running maximum), so the result does not depend on how the stream was batched.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from streamwatch.batch import Batch, FloatArray

IdArray = NDArray[np.int64]
LATE = -1


@dataclass(frozen=True, slots=True)
class WindowBounds:
    """Where a window lies in event time (epoch seconds); ``index`` orders windows."""

    index: int
    start: float
    end: float


class WindowState(Protocol):
    def update(self, batch: Batch) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, state: Mapping[str, Any]) -> None: ...


S = TypeVar("S", bound=WindowState)


@dataclass(slots=True)
class _Open(Generic[S]):
    state: S
    n: int
    first: float  # earliest and latest event time seen, the bounds of count windows
    last: float


class Windows(ABC, Generic[S]):
    """Open windows of one model, each holding a state built by ``new_state``."""

    def __init__(self, new_state: Callable[[], S]) -> None:
        self._new_state = new_state
        self._open: dict[int, _Open[S]] = {}

    def add(self, batch: Batch) -> IdArray:
        """Put a batch's events into their windows; return each event's window index,
        -1 for the late ones (dropped)."""
        assigned, late = self._assign(batch.event_time)
        assigned[late] = LATE
        ids = assigned
        if late.any():
            keep = ~late
            batch, ids = batch.take(keep), ids[keep]
        if batch.n == 0:
            return assigned
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        for lo, hi in zip(starts, np.r_[starts[1:], len(ids)], strict=True):
            part = batch.take(order[lo:hi])
            window = self._open.get(int(ids[lo]))
            if window is None:
                window = _Open(self._new_state(), 0, math.inf, -math.inf)
                self._open[int(ids[lo])] = window
            window.state.update(part)
            window.n += part.n
            window.first = min(window.first, float(part.event_time.min()))
            window.last = max(window.last, float(part.event_time.max()))
        return assigned

    def pop_closed(self, final: bool = False) -> list[tuple[WindowBounds, S, int]]:
        """Remove and return the windows that are complete (all of them if ``final``)."""
        closed = sorted(i for i in self._open if final or self._complete(i, self._open[i]))
        result = []
        for index in closed:
            window = self._open.pop(index)
            result.append((self._bounds(index, window), window.state, window.n))
        return result

    def snapshot(self) -> dict[str, Any]:
        return {
            "clock": self._clock(),
            "open": [
                [index, w.n, w.first, w.last, w.state.snapshot()]
                for index, w in sorted(self._open.items())
            ],
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self._set_clock(snapshot["clock"])
        self._open = {}
        for index, n, first, last, state in snapshot["open"]:
            window = _Open(self._new_state(), int(n), float(first), float(last))
            window.state.restore(state)
            self._open[int(index)] = window

    @abstractmethod
    def _clock(self) -> float:
        """What the windows have seen so far: the largest event time or the event count."""

    @abstractmethod
    def _set_clock(self, value: float) -> None: ...

    @abstractmethod
    def _assign(self, event_time: FloatArray) -> tuple[IdArray, NDArray[np.bool_]]:
        """Window ids of the events, and which of them are late."""

    @abstractmethod
    def _complete(self, index: int, window: _Open[S]) -> bool: ...

    @abstractmethod
    def _bounds(self, index: int, window: _Open[S]) -> WindowBounds: ...


class TimeWindows(Windows[S]):
    """Tumbling event-time windows of ``size`` seconds, aligned to the epoch."""

    def __init__(self, new_state: Callable[[], S], size: float, lateness: float) -> None:
        super().__init__(new_state)
        if size <= 0 or lateness < 0:
            raise ValueError("window size must be positive and lateness not negative")
        self.size = size
        self.lateness = lateness
        self.max_event_time = -math.inf

    @property
    def watermark(self) -> float:
        return self.max_event_time - self.lateness

    def _clock(self) -> float:
        return self.max_event_time

    def _set_clock(self, value: float) -> None:
        self.max_event_time = float(value)

    def _assign(self, event_time: FloatArray) -> tuple[IdArray, NDArray[np.bool_]]:
        ids = np.floor(event_time / self.size).astype(np.int64)
        seen = np.maximum.accumulate(np.maximum(event_time, self.max_event_time))
        if len(seen):
            self.max_event_time = float(seen[-1])
        # Late: the window's end is at or behind the watermark when the event arrives.
        late = (ids + 1) * self.size <= seen - self.lateness
        return ids, late

    def _complete(self, index: int, window: _Open[S]) -> bool:
        return (index + 1) * self.size <= self.watermark

    def _bounds(self, index: int, window: _Open[S]) -> WindowBounds:
        return WindowBounds(index, index * self.size, (index + 1) * self.size)


class CountWindows(Windows[S]):
    """Tumbling windows of ``size`` consecutive events, in arrival order."""

    def __init__(self, new_state: Callable[[], S], size: int) -> None:
        super().__init__(new_state)
        if size < 1:
            raise ValueError("a count window holds at least one event")
        self.size = size
        self.seen = 0

    def _clock(self) -> float:
        return self.seen

    def _set_clock(self, value: float) -> None:
        self.seen = int(value)

    def _assign(self, event_time: FloatArray) -> tuple[IdArray, NDArray[np.bool_]]:
        ids: IdArray = (self.seen + np.arange(len(event_time), dtype=np.int64)) // self.size
        self.seen += len(event_time)
        return ids, np.zeros(len(event_time), dtype=np.bool_)

    def _complete(self, index: int, window: _Open[S]) -> bool:
        return window.n >= self.size

    def _bounds(self, index: int, window: _Open[S]) -> WindowBounds:
        return WindowBounds(index, window.first, window.last)
