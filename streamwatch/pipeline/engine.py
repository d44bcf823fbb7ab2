"""The loop: poll → skip what was processed → process → dead-letter → conclude →
checkpoint when due → commit.

Every stage is an object of its own (positions, processor, conclusion, accounting,
checkpointer, rebalance); the engine builds them and runs the loop. The same engine
runs for every source (Kafka, replay files, the demo), alone or scaled out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from threadpoolctl import threadpool_limits

from streamwatch.alerting.dispatcher import STOP_WAIT, Dispatcher
from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.routing import Router
from streamwatch.config import Settings
from streamwatch.events import Message, Polled
from streamwatch.observe.health import Health
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.accounting import Accounting
from streamwatch.pipeline.conclusion import Conclusion, Produced
from streamwatch.pipeline.monitor import ClosedWindow
from streamwatch.pipeline.positions import Positions
from streamwatch.pipeline.processor import Processor
from streamwatch.pipeline.reference import Pinned
from streamwatch.scaleout.rebalance import Rebalance
from streamwatch.sinks import RoutedSink
from streamwatch.sources import Source
from streamwatch.state.checkpointer import Checkpointer
from streamwatch.state.store import StateStore

if TYPE_CHECKING:
    from streamwatch.scaleout.changelog import Changelog

log = logging.getLogger("streamwatch.engine")

POLL_RECORDS = 5000
EXIT_MARGIN = 6.0  # seconds of the grace period kept to close the consumer (bounded: 3 s)


class Engine:
    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[RoutedSink],
        metrics: Metrics,
        reference: Mapping[str, Pinned] | None = None,
        outbox: Outbox | None = None,
        changelog: Changelog | None = None,
        health: Health | None = None,
    ) -> None:
        # numpy's BLAS would spread each small product (a batch's Mahalanobis distances)
        # over every core, spinning more than it computes: the engine runs on one.
        threadpool_limits(limits=1, user_api="blas")
        self.settings = settings
        self.metrics = metrics
        self.outbox = outbox or Outbox()
        self.dispatcher = Dispatcher(self.outbox, sinks, metrics, settings.outbox.max_age)
        metrics.delivering([routed.sink.name for routed in sinks], self.outbox.backlog)
        self.health = health or Health(settings.server.liveness_timeout)
        self.stopping = threading.Event()
        self._stop_requested: float | None = None
        # Scaled out (a changelog), state is kept, saved and moved per source partition.
        self.changelog = changelog
        self.accounting = Accounting(metrics, settings.metrics.max_subjects)
        self.positions = Positions()
        router = Router(sinks, settings.alerts.silences, self.outbox)
        self.conclusion = Conclusion(
            settings, router, self.outbox, self.dispatcher, self.accounting
        )
        self.processor = Processor(
            settings, reference or {}, changelog, self.positions, self.conclusion
        )
        self.ownership = self.processor.ownership
        self.checkpointer = Checkpointer(self.processor, metrics)
        self.rebalance = Rebalance(self.checkpointer, self.health)

    def stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM): not ready, stop polling, finish the
        batch, checkpoint, commit, then deliver for what is left of the grace period."""
        self.health.draining = True
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self.stopping.set()

    def run(
        self,
        source: Source,
        store: StateStore | None = None,
        progress: Callable[[int], object] = lambda n: None,
        keep: bool = True,
    ) -> list[Produced]:
        """Process the source until it ends (then close every window) or :attr:`stopping`
        is set (then checkpoint what was processed and stop). Return what each batch
        produced if ``keep`` (a daemon, which runs for months, keeps none)."""
        self.dispatcher.start()
        self.conclusion.start(durable=store is not None)
        try:
            try:
                produced = self._loop(source, store, progress, keep)
            finally:
                self._drain()
            if store is not None and self.checkpointer.sent():
                self._save(source, store)  # what the drain sent leaves the state
            return produced
        finally:
            self.dispatcher.stop(min(self._drain_budget(), STOP_WAIT))

    def _loop(
        self,
        source: Source,
        store: StateStore | None,
        progress: Callable[[int], object],
        keep: bool,
    ) -> list[Produced]:
        produced: list[Produced] = []
        kept = produced.append if keep else lambda batch: None
        last_checkpoint, uncommitted = time.monotonic(), False
        while not self.stopping.is_set():
            messages = source.poll(POLL_RECORDS)
            self.health.polled()
            if self.dispatcher.failure is not None:
                raise self.dispatcher.failure  # the outbox's file failed a worker
            if store is not None and self.checkpointer.sent():
                # Scaled out, a sent notification leaves its partition's state before more
                # is processed, so that a successor does not send it again (only a crash
                # between the send and this checkpoint does).
                uncommitted = not self._save(source, store)
            if messages is None:
                kept(self.finish())
                break
            if messages:
                with self.metrics.processing_seconds.time():
                    kept(self.process(messages, source))
                progress(len(messages))
            else:
                closed = self.processor.tick()  # windows whose missing partitions timed out
                if closed:
                    kept(self.conclusion.conclude(closed))
            if store is None:
                source.commit(self.positions.next)
            elif (self.positions.changed or uncommitted) and (
                time.monotonic() - last_checkpoint >= self.settings.state.checkpoint_interval
            ):
                # Changed partitions (processed, restored ahead of the changelog, or not
                # written to it) and refused commits are saved again, even with no input.
                uncommitted = not self._save(source, store)
                last_checkpoint = time.monotonic()
        if store is not None:
            self._save(source, store)
        return produced

    def process(
        self, messages: Polled | Sequence[Message], source: Source | None = None
    ) -> Produced:
        """One batch: what was not processed before, processed; its bad messages
        counted and dead-lettered; its closed windows concluded."""
        polled = messages if isinstance(messages, Polled) else Polled.of(messages)
        fresh = self.positions.unseen(polled)
        self.accounting.consumed(polled, len(fresh))
        bad, closed = self.processor.process(fresh)
        if bad:
            self.accounting.rejected(bad)
            if source is not None:
                source.dead_letter(bad)
        return self.conclusion.conclude(closed)

    def conclude(self, windows: Iterable[list[ClosedWindow]]) -> list[Produced]:
        """Windows evaluated elsewhere (a backfill's), concluded batch by batch as
        :meth:`run` concludes a source's, then delivered."""
        self.dispatcher.start()
        self.conclusion.start(durable=False)
        try:
            try:
                return [self.conclusion.conclude(batch) for batch in windows]
            finally:
                self._drain()
        finally:
            self.dispatcher.stop(min(self._drain_budget(), STOP_WAIT))

    def finish(self) -> Produced:
        """End of input: close every open window of every model."""
        return self.conclusion.conclude(self.processor.finish())

    def _save(self, source: Source, store: StateStore) -> bool:
        """Checkpoint, then commit what it covers; whether committed. Not while a dead
        letter is unacknowledged: a checkpoint past its bad message would skip it after a
        crash, the letter lost (the next checkpoint tries again)."""
        if not source.settle():
            return False
        return source.commit(self.checkpointer.checkpoint(store))

    def _drain(self) -> None:
        """Deliver what is pending for what is left of the grace period."""
        if not self.dispatcher.drain(self._drain_budget()):
            log.warning(
                "notifications still pending at exit; a durable outbox sends them on restart",
                extra={"pending": self.outbox.pending()},
            )

    def _drain_budget(self) -> float:
        """Seconds to wait for deliveries: what is left of the grace period after a
        stop (less a margin to close cleanly), at most ``OUTBOX__DRAIN_TIMEOUT``."""
        budget = self.settings.outbox.drain_timeout
        if self._stop_requested is not None:
            elapsed = time.monotonic() - self._stop_requested
            budget = min(budget, self.settings.server.grace_period - elapsed - EXIT_MARGIN)
        return max(budget, 0.0)
