"""Delivery: one worker thread per sink sends what the outbox holds, apart from the loop.

A worker sends what is due, with the sink's own timeout. A retryable failure (network,
429, 5xx) is tried again after an exponential backoff with full jitter, capped by the
sink's ``retry_cap`` (so that delivery resumes within that long of the receiver's
recovery) and at least the receiver's ``Retry-After``, until the row is older than
``OUTBOX__MAX_AGE`` (or past the sink's ``max_attempts``, when one is set); then, or on
a failure that cannot succeed, the row is dead and counted. Rows left pending by a
shutdown or a crash are sent after restart. While the daemon drains at shutdown, a sink
that is failing gets no new attempts: its rows stay pending for the next start.

A sink that holds what fires (:class:`Resumable`, Alertmanager's) is told the firing alerts of a
restored state and the models that went elsewhere.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol, runtime_checkable

from streamwatch.alerting.outbox import Item, Outbox, Row
from streamwatch.alerting.policy import Alert
from streamwatch.alerting.routing import hears
from streamwatch.errors import StateError
from streamwatch.observe.metrics import Metrics
from streamwatch.review.request import ReviewRequest
from streamwatch.sinks import Delivered, DeliveryFailed, DeliveryResult, RoutedSink
from streamwatch.sinks.base import ReviewSink

log = logging.getLogger("streamwatch.outbox")

IDLE_POLL = 1.0  # a worker looks for due rows at least this often
STOP_WAIT = 5.0  # seconds a stopping worker may take to finish its attempt


@runtime_checkable
class Resumable(Protocol):
    """A sink that keeps telling its receiver what fires."""

    def resume(self, standing: Mapping[str, Sequence[Alert]]) -> None:
        """The alerts firing per model in a restored state."""

    def forget(self, models: Collection[str]) -> None:
        """``models`` are not this instance's to tell about any more."""


class Dispatcher:
    """One delivery worker thread per sink, sending what the outbox holds."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[RoutedSink],
        metrics: Metrics,
        max_age: float = 6 * 3600.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.sinks = sinks
        self.metrics = metrics
        self.max_age = max_age
        self.clock = clock
        self.rng = rng or random.Random()
        self._sent: set[str] = set()  # models with a row sent since the engine last asked
        self._sent_lock = threading.Lock()
        self._failing: set[str] = set()  # sinks whose last attempt failed
        # Scaled out: models whose partitions are leaving get no new attempt, and those
        # under way are waited for (the partitions' state then says what was sent).
        self._leaving: set[str] = set()
        self._sending: Counter[str] = Counter()
        self._quiet = threading.Condition()
        self._draining = threading.Event()
        self._stopping = threading.Event()
        self._wake = {routed.sink.name: threading.Event() for routed in sinks}
        self._threads: list[threading.Thread] = []
        self.failure: StateError | None = None  # a worker's, for the engine to raise

    def start(self) -> None:
        for routed in self.sinks:
            thread = threading.Thread(
                target=self._work, args=(routed,), name=f"deliver-{routed.sink.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """New rows are in the outbox."""
        for event in self._wake.values():
            event.set()

    def sent(self) -> set[str]:
        """The models with a row sent since the last call."""
        with self._sent_lock:
            sent, self._sent = self._sent, set()
        return sent

    def resume(self, standing: Mapping[str, Sequence[Alert]]) -> None:
        """Tell the sinks that hold what fires the alerts of a restored state (model ->
        its firing alerts), those each would hear."""
        for routed in self.sinks:
            if isinstance(routed.sink, Resumable):
                wanted = {
                    m: [a for a in alerts if hears(routed, a)] for m, alerts in standing.items()
                }
                routed.sink.resume(wanted)

    def forget(self, models: Collection[str]) -> None:
        for routed in self.sinks:
            if isinstance(routed.sink, Resumable):
                routed.sink.forget(models)

    def hold_back(self, models: Collection[str]) -> None:
        """No new attempts for ``models`` (their partitions are leaving); wait for those
        under way, at most a send's timeout."""
        wait = max((routed.settings.timeout for routed in self.sinks), default=0.0) + 1.0
        with self._quiet:
            self._leaving.update(models)
            self._quiet.wait_for(lambda: not any(self._sending[m] for m in models), wait)

    def let_through(self, models: Collection[str]) -> None:
        with self._quiet:
            self._leaving.difference_update(models)

    def drain(self, timeout: float) -> bool:
        """Send what is pending for the sinks that are not failing, without waiting for
        backoffs, until nothing is left (True) or ``timeout`` seconds pass (False).
        Failing sinks get no new attempts: their rows stay pending for the next start."""
        self._draining.set()
        deadline = time.monotonic() + timeout
        while True:
            healthy = [r.sink.name for r in self.sinks if r.sink.name not in self._failing]
            if not self.outbox.pending(healthy):
                return not self.outbox.pending()
            if time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(0.05)

    def stop(self, wait: float = STOP_WAIT) -> None:
        """Stop the workers after their current attempt, waiting ``wait`` seconds at most
        for all of them: a send still hanging then is left behind (a daemon thread), its
        row pending for the next start."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads.clear()
        for routed in self.sinks:
            routed.sink.close()

    def _work(self, routed: RoutedSink) -> None:
        try:
            self._deliver(routed)
        except StateError as exc:  # the outbox cannot be written: the engine stops on it
            self.failure = exc
        except sqlite3.ProgrammingError:
            if not self._stopping.is_set():
                raise
            # Left behind at stop, it came back after the outbox closed: the row stays
            # pending and is sent after the next start.

    def _deliver(self, routed: RoutedSink) -> None:
        name, wake = routed.sink.name, self._wake[routed.sink.name]
        while not self._stopping.is_set():
            draining = self._draining.is_set()
            rows = []
            if not (draining and name in self._failing):
                # Draining, a sink that answers gets what is left at once.
                rows = self.outbox.due(name, float("inf") if draining else self.clock())
            for row in rows:
                if self._stopping.is_set() or (self._draining.is_set() and name in self._failing):
                    break
                model = row.notification.model
                with self._quiet:
                    if model in self._leaving:
                        continue
                    self._sending[model] += 1
                try:
                    self._attempt(routed, row)
                finally:
                    with self._quiet:
                        self._sending[model] -= 1
                        self._quiet.notify_all()
            if not rows:
                next_due = self.outbox.next_due(name)
                wait = IDLE_POLL if next_due is None else next_due - self.clock()
                wake.wait(min(max(wait, 0.0), IDLE_POLL))
                wake.clear()

    def _attempt(self, routed: RoutedSink, row: Row) -> None:
        result = _send(routed, row.notification)
        sink, settings = routed.sink.name, routed.settings
        if isinstance(result, Delivered):
            self.outbox.mark(row, "sent")
            self._failing.discard(sink)
            with self._sent_lock:
                self._sent.add(row.notification.model)
            self.metrics.notifications.labels(sink, "sent").inc()
            return
        self._failing.add(sink)
        attempts, now = row.attempts + 1, self.clock()
        young, limit = now - row.created < self.max_age, settings.max_attempts
        if result.retryable and young and (limit is None or attempts < limit):
            backoff = self.rng.uniform(
                0, min(settings.retry_cap, settings.retry_base * 2**row.attempts)
            )
            # Retry-After is honoured up to the cap: a receiver cannot park a row forever.
            asked = min(result.retry_after or 0.0, settings.retry_cap)
            delay = max(backoff, asked)
            self.outbox.mark(row, "pending", now + delay, result.reason)
            self.metrics.notifications.labels(sink, "retried").inc()
            log.warning(
                "notification not delivered, will retry",
                extra={
                    "sink": sink,
                    "notification": row.id,
                    "attempt": attempts,
                    "retry_in_seconds": round(delay, 3),
                    "reason": result.reason,
                },
            )
            return
        self.outbox.mark(row, "dead", error=result.reason)
        self.metrics.notifications.labels(sink, "dead").inc()
        log.error(
            "notification dead",
            extra={
                "sink": sink,
                "notification": row.id,
                "attempts": attempts,
                "age_seconds": round(now - row.created, 1),
                "reason": result.reason,
                "to_send_again": f"streamwatch outbox retry --sink {sink}",
            },
        )


def _send(routed: RoutedSink, item: Item) -> DeliveryResult:
    """A sink's send, which should not raise; a bug in one must not stop its worker."""
    sink = routed.sink
    try:
        if not isinstance(item, ReviewRequest):
            return sink.send(item)
        if isinstance(sink, ReviewSink):
            return sink.request(item)
        return DeliveryFailed(sink.name, "only a review sink takes review requests", False)
    except Exception as exc:  # the worker must outlive any sink's bug
        log.exception("sink raised", extra={"sink": sink.name})
        return DeliveryFailed(sink.name, f"sink raised {type(exc).__name__}", True)
