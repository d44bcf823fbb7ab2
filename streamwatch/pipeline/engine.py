"""The loop: poll → decode → route → window → detect → alert → checkpoint → commit.

Only wiring lives here; each stage is its own module. The same engine runs for every
source (Kafka, replay files, the demo).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import msgspec
from threadpoolctl import threadpool_limits

from streamwatch.alerting.dispatcher import STOP_WAIT, Dispatcher
from streamwatch.alerting.outbox import Carried, Outbox
from streamwatch.alerting.policy import AlertPolicy, Notification, isoformat, report_link
from streamwatch.alerting.routing import Router
from streamwatch.config import Settings
from streamwatch.detectors import Severity
from streamwatch.errors import ChangelogError, ConfigError, EncodeError, StateError
from streamwatch.events import BadEvent, Decoded, Event, decode_batch, gc_paused
from streamwatch.observe import history
from streamwatch.observe.health import Health
from streamwatch.observe.logs import RateLimited
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.admission import Admission
from streamwatch.pipeline.by_model import by_model
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor, Processed
from streamwatch.pipeline.reference import Pinned
from streamwatch.scaleout import spread
from streamwatch.scaleout.spread import Aggregate, Part
from streamwatch.sinks import RoutedSink
from streamwatch.sources import Message, Source
from streamwatch.state.store import Offsets, StateStore, copies, covers, encode, partition_scope

if TYPE_CHECKING:
    from streamwatch.scaleout.changelog import Changelog

log = logging.getLogger("streamwatch.engine")

POLL_RECORDS = 5000
EXIT_MARGIN = 6.0  # seconds of the grace period kept to close the consumer (bounded: 3 s)
# Detectors with a subject per feature or slice: too many series for a gauge.
PER_FEATURE = frozenset({"feature_drift", "data_quality", "slice_performance", "fairness"})
_ORIGIN, _TOPIC = itemgetter(1), attrgetter("topic")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one processed batch produced, for callers that watch (CLI, tests)."""

    closed: list[ClosedWindow]
    notifications: list[Notification]


class Engine:
    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[RoutedSink],
        metrics: Metrics,
        reference: Mapping[str, Pinned] | None = None,
        outbox: Outbox | None = None,
        changelog: Changelog | None = None,
    ) -> None:
        # numpy's BLAS would spread each small product (a batch's Mahalanobis distances)
        # over every core, spinning more than it computes: the engine runs on one.
        threadpool_limits(limits=1, user_api="blas")
        self.settings = settings
        self.metrics = metrics
        self.reference = reference or {}
        self.models: dict[str, ModelMonitor] = {}
        self.admission = Admission(settings)  # the allow-list; idle models let go
        self.policy = AlertPolicy(settings.alerts)
        self.outbox = outbox or Outbox()
        self.router = Router(sinks, settings.alerts.silences, self.outbox)
        self.dispatcher = Dispatcher(self.outbox, sinks, metrics, settings.outbox.max_age)
        # With durable state, a notification is held until the checkpoint that covers its
        # window is: whoever restores an older state makes it again, never twice.
        self._hold = False
        self._held: dict[str, list[str]] = {}  # model -> notifications held since
        self.positions: dict[tuple[str, int], int] = {}  # next offset to process
        # Scaled out (a changelog): state is kept, saved and moved per source partition.
        self.changelog = changelog
        self.homes: dict[str, int] = {}  # model -> the partition its events come through
        self._dirty: set[int] = set()  # partitions processed since their last checkpoint
        # Spread models (keyed by event id): a part per partition, merged by the instance
        # that owns the model in the partials topic (spread.py).
        self.spread = frozenset(settings.state.spread_models)
        unpinned = sorted(self.spread - self.reference.keys())
        if unpinned:
            raise ConfigError(f"spread models {unpinned} have no events in REFERENCE__PATH")
        self.parts: dict[tuple[str, int], Part] = {}
        self.aggregates: dict[str, Aggregate] = {}
        self._judges: dict[str, ModelMonitor] = {}
        self.stopping = threading.Event()
        self.health = Health(settings.server.liveness_timeout)
        self._stop_requested: float | None = None
        self._checkpointed_at: float | None = None
        self._closed: list[history.WindowRecord] | None = None  # since the last checkpoint
        metrics.checkpoint_age.set_function(self._checkpoint_age)
        self._bad_log = RateLimited()

    def stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM): not ready, stop polling, finish the
        batch, checkpoint, commit, then deliver for what is left of the grace period."""
        self.health.draining = True
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self.stopping.set()

    # -- the loop -------------------------------------------------------------------

    def run(
        self,
        source: Source,
        store: StateStore | None = None,
        progress: Callable[[int], object] = lambda n: None,
        keep: bool = True,
    ) -> list[Outcome]:
        """Process the source until it ends (then close every window) or :attr:`stopping`
        is set (then checkpoint what was processed and stop). Return what each batch
        produced if ``keep`` (a daemon, which runs for months, keeps none)."""
        self.dispatcher.start()
        self._hold = store is not None
        if store is not None and self.settings.history.enabled:
            self._closed = []  # kept until each checkpoint writes them
        try:
            try:
                outcomes = self._loop(source, store, progress, keep)
            finally:
                self._drain()
            if store is not None and self._note_sent():
                self._save(source, store)  # what the drain sent leaves the state
            return outcomes
        finally:
            self.dispatcher.stop(min(self._drain_budget(), STOP_WAIT))

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

    def _checkpoint_age(self) -> float:
        at = self._checkpointed_at
        return math.nan if at is None else time.monotonic() - at

    def _loop(
        self,
        source: Source,
        store: StateStore | None,
        progress: Callable[[int], object],
        keep: bool,
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        kept = outcomes.append if keep else lambda outcome: None
        last_checkpoint, uncommitted = time.monotonic(), False
        while not self.stopping.is_set():
            messages = source.poll(POLL_RECORDS)
            self.health.polled()
            if self.dispatcher.failure is not None:
                raise self.dispatcher.failure  # the outbox's file failed a worker
            if store is not None and self._note_sent():
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
            elif self.aggregates:  # windows whose missing partitions timed out
                kept(self._conclude(self._aggregated()))
            if store is None:
                source.commit(self.positions)
            elif (self._dirty or uncommitted) and (
                time.monotonic() - last_checkpoint >= self.settings.state.checkpoint_interval
            ):
                # Changed partitions (processed, restored ahead of the changelog, or not
                # written to it) and refused commits are saved again, even with no input.
                uncommitted = not self._save(source, store)
                last_checkpoint = time.monotonic()
        if store is not None:
            self._save(source, store)
        return outcomes

    def _save(self, source: Source, store: StateStore) -> bool:
        """Checkpoint, then commit what it covers; whether committed. Not while a dead
        letter is unacknowledged: a checkpoint past its bad message would skip it after a
        crash, the letter lost (the next checkpoint tries again)."""
        if not source.settle():
            return False
        return source.commit(self.checkpoint(store))

    def process(self, messages: Sequence[Message], source: Source | None = None) -> Outcome:
        for topic, count in Counter(map(_TOPIC, map(_ORIGIN, messages))).items():
            self.metrics.consumed.labels(topic).inc(count)
        fresh, partials = self._unseen(messages), []
        if self.spread and self.changelog is not None:
            topic = self.settings.state.partials_topic
            partials = [m for m in fresh if m[1].topic == topic]
            fresh = [m for m in fresh if m[1].topic != topic] if partials else fresh
        with gc_paused():
            bad, closed = self._window(fresh)
        if partials:
            bad += self._receive(partials)
        if self.aggregates:
            closed += self._aggregated()
        if bad and source is not None:
            source.dead_letter(bad)
        return self._conclude(closed)

    def finish(self) -> Outcome:
        """End of input: close every open window of every model."""
        closed = []
        for model_id, monitor in self.models.items():
            closed += self._account(model_id, monitor.flush())
        return self._conclude(closed)

    # -- state ----------------------------------------------------------------------

    def checkpoint(self, store: StateStore, partitions: Collection[int] | None = None) -> Offsets:
        """Write everything processed so far (scaled out: of the partitions changed since
        their last checkpoint, or of ``partitions``); return the offsets that are durable
        (to commit)."""
        started = time.monotonic()
        closed = self._closed or []
        self._note_sent()  # a partition's state carries its notifications until sent
        if self.changelog is None:
            store.save(self.snapshot(), self.positions, closed=closed, lag=self.metrics.lags())
            self._dirty.clear()
            closed.clear()
            self._release(list(self._held))
        elif self._checkpoint_partitions(store, self.changelog, partitions, closed):
            closed.clear()  # else kept for the next checkpoint
        self._checkpointed_at = time.monotonic()
        self.metrics.checkpoint_seconds.observe(self._checkpointed_at - started)
        return {tp: o for tp, o in self.positions.items() if tp[1] not in self._dirty}

    def _checkpoint_partitions(
        self,
        store: StateStore,
        changelog: Changelog,
        partitions: Collection[int] | None,
        closed: list[history.WindowRecord],
    ) -> bool:
        """Each changed partition's state to the state file, then to the changelog; a
        partition stays changed (its offsets uncommitted) until the changelog has it.
        Return whether the state file was written (with ``closed``)."""
        wanted = set(self._dirty) if partitions is None else self._dirty & set(partitions)
        saved = False
        try:
            self._publish(changelog, wanted)
            states = {p: self.partition_state(p) for p in sorted(wanted)}
            scopes = {partition_scope(p): state for p, state in states.items()}
            store.save_scopes(scopes, closed=closed, lag=self.metrics.lags())
            saved = True
            changelog.write(states)
        except ChangelogError as exc:
            log.warning(
                "offsets not committed: the changelog write failed", extra={"error": str(exc)}
            )
            return saved
        self._dirty -= wanted
        self._release([m for m, home in self.homes.items() if home in wanted])
        return True

    def _release(self, models: Collection[str]) -> None:
        """The held notifications of ``models``, whose windows' state is durable now."""
        ids = [i for m in models for i in self._held.pop(m, ())]
        if ids and self.outbox.release(ids):
            self.dispatcher.wake()

    def _note_sent(self) -> bool:
        """Scaled out: mark changed the partitions of models with a notification sent
        since the last look (their state carries it no more); whether there are any."""
        sent = self.dispatcher.sent()
        if self.changelog is None or not sent:
            return False
        self._dirty.update(self.homes[m] for m in sent if m in self.homes)
        return True

    def _publish(self, changelog: Changelog, partitions: Collection[int]) -> None:
        """The spread models' windows closed in ``partitions``, to their owners: before
        the partitions' state, which no longer holds them, goes to the changelog."""
        sent = {part: part.partials(changelog.shape) for part in self._parts(partitions)}
        records = [partial for partials in sent.values() for partial in partials]
        if records:
            changelog.publish(records)
        for part, partials in sent.items():
            if partials:
                part.published_up_to(partials[-1].watermark)

    def snapshot(self) -> dict[str, Any]:
        return {
            "models": {model_id: m.snapshot() for model_id, m in self.models.items()},
            "policy": self.policy.snapshot(),
            "router": self.router.snapshot(),
            "outbox": self.outbox.undelivered(None),
        }

    def restore(self, state: Mapping[str, Any], offsets: Offsets) -> None:
        """Take on a checkpoint's state: the engine's, or one partition's (beside the
        others held)."""
        for model_id, model_state in state["models"].items():
            monitor = ModelMonitor(model_id, self.settings, self.reference.get(model_id))
            monitor.restore(model_state)
            self.models[model_id] = monitor
        self.policy.restore(state["policy"])
        self.router.restore(state["router"])
        # Notifications of the windows this state closed: sent, or to send (held here
        # when the crash came between the checkpoint and their release).
        carried = [Carried(*row) for row in state.get("outbox", ())]
        self.outbox.adopt(carried)
        if self.outbox.release([row.id for row in carried]):
            self.dispatcher.wake()
        self.positions.update(offsets)

    # -- partitions (scaled out) ----------------------------------------------------

    def partition_state(self, partition: int) -> tuple[bytes, Offsets]:
        """One partition's state, encoded, and the offsets it covers."""
        models = [m for m, home in self.homes.items() if home == partition]
        state = {
            "models": {m: self.models[m].snapshot() for m in models if m in self.models},
            "policy": self.policy.snapshot(models),
            "router": self.router.snapshot(models),
            "parts": {part.judge.model_id: part.snapshot() for part in self._parts({partition})},
            "aggregates": {m: a.snapshot() for m, a in self.aggregates.items() if m in models},
            "outbox": self.outbox.undelivered(models),
        }
        return encode(state), {tp: o for tp, o in self.positions.items() if tp[1] == partition}

    def acquire(self, partitions: Collection[int], store: StateStore) -> Offsets:
        """Partitions assigned: restore each one's state from the state file or the
        changelog, whichever covers more; return the positions to resume from."""
        assert self.changelog is not None
        held = {p for _, p in self.positions} | set(self.homes.values())
        new = sorted(set(partitions) - held)
        remote = self.changelog.read(new)
        if self.spread:  # partials are read from the start, whatever AUTO_OFFSET_RESET says
            topic = self.settings.state.partials_topic
            self.positions.update({(topic, p): 0 for p in new})  # unless restored below
        for partition in new:
            local, logged = copies(store, partition, remote.get(partition))
            if local is not None and (logged is None or covers(local.offsets, logged[1])):
                state, offsets, origin = local.state, local.offsets, "state file"
                if logged is None or logged[1] != offsets:
                    self._dirty.add(partition)  # the changelog is behind: catch it up
            elif logged is not None:
                state, offsets = msgspec.msgpack.decode(logged[0]), logged[1]
                origin = "changelog"
                store.save_scopes({partition_scope(partition): logged})  # the local copy
            else:
                continue
            self.restore(state, offsets)
            aggregates = self._restore_spread(partition, state)
            self.homes.update(dict.fromkeys([*state["models"], *aggregates], partition))
            log.info(
                "partition restored",
                extra={"partition": partition, "from": origin, "models": sorted(state["models"])},
            )
        return dict(self.positions)

    def _restore_spread(self, partition: int, state: Mapping[str, Any]) -> list[str]:
        """Restore a partition's parts and aggregates of spread models (older records
        have none); return the models aggregated here. Those of models that are no
        longer spread are left out: their windows would be published to no one."""
        parts, aggregates = state.get("parts", {}), state.get("aggregates", {})
        gone = sorted((parts.keys() | aggregates.keys()) - self.spread)
        if gone:
            log.warning(
                "state of models no longer spread left out",
                extra={"models": gone, "partition": partition},
            )
        for model_id in parts.keys() & self.spread:
            self._part(model_id, partition).restore(parts[model_id])
        owned = [model_id for model_id in aggregates if model_id in self.spread]
        for model_id in owned:
            self._aggregate(model_id).restore(aggregates[model_id])
        return owned

    def release(self, partitions: Collection[int], store: StateStore) -> Offsets:
        """Partitions revoked: checkpoint them, then let their state go; return their
        offsets that are durable (to commit)."""
        # Their notifications go with their state, sent by the next owner alone: none
        # released here, none sent after the state says what was.
        models = [m for m, home in self.homes.items() if home in partitions]
        for model_id in models:
            self._held.pop(model_id, None)
        self.dispatcher.hold_back(models)
        durable = self.checkpoint(store, partitions)
        # Where the changelog has them now, a copy here would only mislead ``status``.
        store.drop([partition_scope(p) for p in partitions if p not in self._dirty])
        self._forget(partitions)
        return {tp: o for tp, o in durable.items() if tp[1] in partitions}

    def lose(self, partitions: Collection[int], store: StateStore) -> Offsets:
        """Partitions lost (this instance fell out of the group, and another owns them
        now): let their state go unsaved, since writing it would overwrite the new
        owner's newer state in the changelog."""
        self.dispatcher.hold_back([m for m, home in self.homes.items() if home in partitions])
        store.drop([partition_scope(p) for p in partitions])
        self._forget(partitions)
        return {}

    def _forget(self, partitions: Collection[int]) -> None:
        models = {m for m, home in self.homes.items() if home in partitions}
        for model_id in models:
            del self.homes[model_id]
            self.models.pop(model_id, None)
            self._held.pop(model_id, None)  # made again by whoever takes the partition
            self.aggregates.pop(model_id, None)
        for part in self._parts(partitions):
            del self.parts[part.judge.model_id, part.partition]
        self.policy.forget(models)
        self.router.forget(models)
        # Their undelivered notifications went with the partitions' state (or are made
        # again from it): sent by the partitions' next owner, not from here.
        self.outbox.move(models)
        self.dispatcher.let_through(models)
        for tp in [tp for tp in self.positions if tp[1] in partitions]:
            del self.positions[tp]
        self._dirty -= set(partitions)

    # -- stages ---------------------------------------------------------------------

    def _unseen(self, messages: Sequence[Message]) -> Sequence[Message]:
        """Drop what was processed before (redelivered after a restart or rebalance) and
        advance the positions past this batch."""
        positions, before = self.positions, dict(self.positions)
        fresh = []
        for message in messages:
            origin = message[1]
            key = (origin.topic, origin.partition)
            if origin.offset >= before.get(key, -1):
                fresh.append(message)
                if origin.offset >= positions.get(key, -1):
                    positions[key] = origin.offset + 1
        # Changed: the partitions whose position moved (per partition, not per message).
        self._dirty.update(p for (t, p), o in positions.items() if o != before.get((t, p)))
        skipped = len(messages) - len(fresh)
        if skipped:
            self.metrics.redelivered.inc(skipped)
        return fresh

    def _window(self, messages: Sequence[Message]) -> tuple[list[BadEvent], list[ClosedWindow]]:
        latest = time.time() + self.settings.window.max_future
        decoded = decode_batch(messages, self.settings.max_message_bytes, latest)
        bad = list(decoded.bad)
        decoded = self.admission.known(decoded, bad)
        if self.changelog is not None:
            decoded = self._at_home(decoded, bad)
        closed: list[ClosedWindow] = []
        for model_id, events in by_model(decoded.events).items():
            if model_id in self.spread and self.changelog is not None:
                bad += self._spread(model_id, events.positions, decoded)
                continue
            monitor = self._monitor(model_id)
            if monitor is None:
                detail = f"more than {self.settings.max_models} models"
                bad += [
                    BadEvent("model_limit", detail, decoded.raw[i], decoded.origins[i])
                    for i in events.positions
                ]
                continue
            closed += self._account(model_id, monitor.process(events.predictions, events.labels))
            self.admission.seen(monitor)
        closed += self._let_go()
        for event in bad:
            self._reject(event)
        return bad, closed

    def _let_go(self) -> list[ClosedWindow]:
        """Models idle for ``MODEL_IDLE_TTL``: their open windows closed, their slots
        freed (admission.py). Their alerts, home and held notifications stay until a
        checkpoint has covered those windows (or they come back)."""
        retired, held, dirty = self.admission.retired, self._held, self._dirty
        gone = [m for m in retired if m not in held and self.homes.get(m) not in dirty]
        gone = [m for m in gone if m not in self.models]
        if gone:
            self.policy.forget(gone)
            self.router.forget(gone)
            for model_id in gone:
                self.homes.pop(model_id, None)
        retired[:] = [m for m in retired if m not in gone and m not in self.models]
        closed = []
        for model_id in self.admission.idle(self.models):
            closed += self._account(model_id, self.models.pop(model_id).let_go())
            retired.append(model_id)
            if model_id in self.homes:
                dirty.add(self.homes[model_id])  # its state goes with the next checkpoint
        return closed

    def _at_home(self, decoded: Decoded, bad: list[BadEvent]) -> Decoded:
        """Scaled out, a model's state lives with one partition: its events that come
        through another are bad (keyed by something else than their model id)."""
        homes, kept, limit = self.homes, [], self.settings.max_models
        for i, (event, origin) in enumerate(zip(decoded.events, decoded.origins, strict=True)):
            if event.model_id in self.spread:
                kept.append(i)
                continue
            home = homes.get(event.model_id)
            if home is None and len(homes) < limit:  # past it: a model_limit dead letter
                home = homes[event.model_id] = origin.partition
            if home is None or home == origin.partition:
                kept.append(i)
            else:
                detail = (
                    f"model {event.model_id!r} is kept with partition {home}: key its events by "
                    "model id, so that they all come through one partition"
                )
                bad.append(BadEvent("model_spread", detail, decoded.raw[i], origin))
        if len(kept) == len(decoded.events):
            return decoded
        return Decoded(
            [decoded.events[i] for i in kept],
            [decoded.raw[i] for i in kept],
            [decoded.origins[i] for i in kept],
            decoded.bad,
        )

    def _spread(self, model_id: str, positions: list[int], decoded: Decoded) -> list[BadEvent]:
        """A spread model's predictions into the part of the partition each came
        through; its labels are bad: their outcomes would need merging too."""
        bad, by_partition = [], dict[int, list[Event]]()
        for i in positions:
            event, origin = decoded.events[i], decoded.origins[i]
            if event.is_label:
                detail = f"labels of spread model {model_id!r} are not evaluated"
                bad.append(BadEvent("spread_label", detail, decoded.raw[i], origin))
            else:
                by_partition.setdefault(origin.partition, []).append(event)
        for partition, predictions in by_partition.items():
            self._account(model_id, self._part(model_id, partition).process(predictions))
        return bad

    def _receive(self, partials: Sequence[Message]) -> list[BadEvent]:
        """Partials of the spread models this instance owns (by their partition of the
        partials topic), kept until their windows can be merged."""
        assert self.changelog is not None
        bad = []
        for value, origin in partials:
            try:
                partial = spread.decode(value, self.changelog.shape)
                if partial.model not in self.spread:
                    raise StateError(f"{partial.model!r} is not in STATE__SPREAD_MODELS here")
                self._aggregate(partial.model).receive(partial)
            except StateError as exc:
                bad.append(BadEvent("bad_partial", str(exc), value, origin))
                continue
            self.homes[partial.model] = origin.partition
        for event in bad:
            self._reject(event)
        return bad

    def _aggregated(self) -> list[ClosedWindow]:
        """The owned spread models' windows that are complete, merged and evaluated."""
        closed = []
        for model_id, aggregate in self.aggregates.items():
            evaluated = aggregate.due()
            if evaluated:
                self._dirty.add(self.homes[model_id])
                closed += evaluated
        return closed

    def _judge(self, model_id: str) -> ModelMonitor:
        """A spread model's monitor: its pinned schema, grid and reference (no state)."""
        judge = self._judges.get(model_id)
        if judge is None:
            judge = ModelMonitor(model_id, self.settings, self.reference[model_id])
            self._judges[model_id] = judge
        return judge

    def _part(self, model_id: str, partition: int) -> Part:
        part = self.parts.get((model_id, partition))
        if part is None:
            part = self.parts[model_id, partition] = Part(self._judge(model_id), partition)
        return part

    def _parts(self, partitions: Collection[int]) -> list[Part]:
        return [part for (_, p), part in self.parts.items() if p in partitions]

    def _aggregate(self, model_id: str) -> Aggregate:
        aggregate = self.aggregates.get(model_id)
        if aggregate is None:
            assert self.changelog is not None
            timeout = self.settings.state.aggregate_timeout
            aggregate = Aggregate(self._judge(model_id), self.changelog.partitions, timeout)
            self.aggregates[model_id] = aggregate
        return aggregate

    def _account(self, model_id: str, processed: Processed) -> list[ClosedWindow]:
        self.metrics.events.labels(model_id).inc(processed.windowed)
        self.metrics.late_events.labels(model_id).inc(processed.late)
        labels = processed.labels
        self.metrics.labels.labels(model_id, "joined").inc(labels.joined)
        self.metrics.labels.labels(model_id, "unknown").inc(labels.unknown)
        self.metrics.labels.labels(model_id, "late").inc(labels.late)
        return processed.closed

    def _monitor(self, model_id: str) -> ModelMonitor | None:
        """The model's monitor, made on first sight; ``None`` past the model limit."""
        monitor = self.models.get(model_id)
        if monitor is None:
            if len(self.models) >= self.settings.max_models:
                return None
            pinned = self.reference.get(model_id)
            monitor = self.models[model_id] = ModelMonitor(model_id, self.settings, pinned)
        return monitor

    def _conclude(self, closed: list[ClosedWindow]) -> Outcome:
        notifications = []
        for window in sorted(closed, key=lambda w: (w.bounds.end, w.model)):
            if window.role == "outcomes":
                self.metrics.outcomes_evaluated.labels(window.model).inc()
            else:
                self.metrics.windows_closed.labels(window.model, window.role).inc()
            for f in window.findings:
                self.metrics.findings.labels(f.model, f.detector, f.severity.value).inc()
                if f.detector not in PER_FEATURE:
                    labels = (f.model, f.detector, f.subject, f.statistic)
                    self.metrics.statistic.labels(*labels).set(f.value)
            _log_window(window)
            notification = self.policy.observe(window.model, window.bounds, window.findings)
            base_url = self.settings.report.base_url
            if notification is not None and base_url:
                link = report_link(base_url, window.model, window.bounds)
                notification = replace(notification, link=link)
            if self._closed is not None:
                self._closed.append(self._record(window, notification))
            if notification is not None:
                for alert in notification.alerts:
                    detector = alert.labels["detector"]
                    self.metrics.alerts.labels(window.model, detector, alert.status).inc()
                try:
                    self.router.route(notification, "held" if self._hold else "pending")
                except EncodeError as e:
                    # A bug in what a detector reported must not stop the loop for good
                    # (the same window is rebuilt after every restart): say so, go on.
                    self.metrics.unencodable.labels(window.model).inc()
                    log.error("notification not stored", extra={"error": str(e)})
                    continue
                if self._hold:
                    self._held.setdefault(window.model, []).append(notification.id)
                notifications.append(notification)
        if notifications:
            self.dispatcher.wake()
        return Outcome(closed, notifications)

    def _record(
        self, window: ClosedWindow, notification: Notification | None
    ) -> history.WindowRecord:
        """The window's history record, with names redacted as in its alerts."""
        redact = self.settings.alerts.redact
        shown = [d for d in window.distributions if d.subject not in redact]
        findings = map(self.policy.redacted, window.findings)
        return history.record(replace(window, distributions=shown), findings, notification)

    def _reject(self, bad: BadEvent) -> None:
        self.metrics.bad_events.labels(bad.reason).inc()
        suppressed = self._bad_log.allow(bad.reason)
        if suppressed is not None:
            log.warning(
                "bad event",
                extra={
                    "reason": bad.reason,
                    "detail": bad.detail[:200],
                    "origin": f"{bad.origin.topic}:{bad.origin.partition}:{bad.origin.offset}",
                    "suppressed_since_last": suppressed,
                },
            )


def _log_window(window: ClosedWindow) -> None:
    """One line per closed window: what it held and a digest of every statistic, so
    that two runs over the same input can be compared window by window."""
    statistics = sorted(
        (f.detector, f.subject, f.statistic, f"{f.value:.6g}", f.severity.value)
        for f in window.findings
    )
    log.info(
        "window closed",
        extra={
            "model": window.model,
            "window_start": isoformat(window.bounds.start),
            "window_end": isoformat(window.bounds.end),
            "role": window.role,
            "events": window.n,
            "findings": len(window.findings),
            "breaches": sum(f.severity is not Severity.OK for f in window.findings),
            "digest": hashlib.sha256(msgspec.json.encode(statistics)).hexdigest()[:16],
        },
    )
