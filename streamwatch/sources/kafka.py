"""Kafka: a consumer-group source on kafka-python 3.x, with a dead-letter producer.

Offsets are never committed automatically: the engine commits what its checkpoint
covers. Rebalance callbacks run on kafka-python's IO thread, where a blocking call
raises; so the listener is asynchronous: it hands the engine's part (checkpoint the
revoked partitions; scaled out, restore the assigned ones) to a worker thread, waits
for it without blocking the IO loop, and awaits ``commit_async`` for what was revoked.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from kafka import (
    AsyncConsumerRebalanceListener,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError

from streamwatch.config import KafkaSettings
from streamwatch.errors import SourceError
from streamwatch.events import BadEvent, Polled
from streamwatch.observe.metrics import Metrics
from streamwatch.sources.base import Hooks, Offsets, Outage
from streamwatch.sources.dead_letters import (
    HEADER_ROOM,
    Delivery,
    Letter,
    dead_letters_of,
    settled,
)

log = logging.getLogger("streamwatch.kafka")

POLL_TIMEOUT_MS = 1000
# Commits and closing are bounded, so that a broker that is gone can neither stall the
# loop past /livez's patience nor a shutdown past its grace period (engine.EXIT_MARGIN).
COMMIT_TIMEOUT_MS = 10_000
STOPPING_COMMIT_TIMEOUT_MS = 4_000
CLOSE_TIMEOUT_MS = 3_000
# A batch takes well under a second to process; five minutes leaves a wide margin.
MAX_POLL_INTERVAL_MS = 300_000
WORKER_WAIT = 0.02  # seconds between looks at a rebalance's worker from the IO loop


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """What every client (consumer, producer, admin) needs to reach the cluster."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": "streamwatch",
        "security_protocol": settings.security_protocol,
        "bootstrap_timeout_ms": int(settings.connect_timeout * 1000),
    }
    if settings.sasl_mechanism is not None:
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            config["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    if settings.ssl_cafile is not None:
        config["ssl_cafile"] = str(settings.ssl_cafile)
    return config


def assignors(
    settings: KafkaSettings, partitioned: bool
) -> tuple[type[AbstractPartitionAssignor], ...]:
    """Scaled out, cooperative rebalancing moves only the partitions that change owner.
    With several topics, partition N of each must stay together (a model's labels join
    its predictions), which the range assignor guarantees and the sticky ones do not.
    (One group cannot mix the two protocols: a single instance keeps range.)"""
    if partitioned and len(settings.topics) == 1:
        return (CooperativeStickyAssignor,)
    return (RangePartitionAssignor,)


_VALUE, _OFFSET = attrgetter("value"), attrgetter("offset")  # read in C, record by record


def _values(records: Sequence[Any]) -> list[bytes]:
    values = list(map(_VALUE, records))
    return [v or b"" for v in values] if None in values else values  # a tombstone: empty


class _Rebalance(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Hands the engine's part of a rebalance (checkpoint what is revoked, restore what
    is assigned) to a worker thread, and waits for it on kafka-python's IO loop, so
    heartbeats go on meanwhile. The main thread is parked in ``poll``: the state is still."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self.source.closing:
            # After a stop the engine has checkpointed and committed already; after an
            # error, what it holds may be a batch half processed: not to be saved. (And
            # an await here is not bounded by close()'s timeout.)
            names = partition_names(revoked)
            log.info("partitions revoked at shutdown", extra={"partitions": names})
            return
        log.info("partitions revoked", extra={"partitions": partition_names(revoked)})
        offsets = await self._in_worker(self.source.revoke, revoked)
        for tp in revoked:  # another instance reports their lag now
            with contextlib.suppress(KeyError):
                self.source.metrics.lag.remove(tp.topic, str(tp.partition))
        commit = {
            tp: OffsetAndMetadata(offsets[(tp.topic, tp.partition)], "", -1)
            for tp in revoked
            if (tp.topic, tp.partition) in offsets
        }
        if commit:
            try:
                await self.source.consumer.commit_async(offsets=commit)
            except KafkaError as exc:
                log.warning("commit on revocation failed", extra={"error": str(exc)})

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # Out of the group (session expired): others own them already; nothing to
        # commit, and their state must not be written over the new owners'.
        log.warning("partitions lost", extra={"partitions": partition_names(lost)})
        if not self.source.closing:
            await self._in_worker(self.source.hooks.lost, lost)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": partition_names(assigned)})
        # Start where our state ends, when that is past the committed offset (a crash
        # between checkpoint and commit); seek only sets the fetch position.
        known = await self._in_worker(self.source.hooks.resume, assigned)
        for tp in assigned:
            position = known.get((tp.topic, tp.partition))
            if position is not None:
                self.source.consumer.seek(tp, position)

    async def _in_worker(
        self, work: Callable[[Collection[int]], Offsets], partitions: set[TopicPartition]
    ) -> Offsets:
        done: dict[str, Any] = {}

        def run() -> None:
            try:
                done["offsets"] = work({tp.partition for tp in partitions})
            except BaseException as exc:  # handed to the main thread at the next poll
                done["error"] = exc

        worker = threading.Thread(target=run, name="streamwatch-rebalance", daemon=True)
        worker.start()
        while worker.is_alive():
            await self.source.consumer._net.sleep(WORKER_WAIT)
        if "error" in done:
            self.source.failure = done["error"]
            return {}
        offsets: Offsets = done["offsets"]
        return offsets


class KafkaSource:
    """Consumes ``settings.topics`` in group ``settings.group_id``."""

    def __init__(
        self,
        settings: KafkaSettings,
        metrics: Metrics,
        stopping: threading.Event,
        hooks: Hooks,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stopping = stopping
        self.hooks = hooks
        self.closing = False  # from close() on, rebalance callbacks leave the state be
        self.failure: BaseException | None = None  # of the engine's part of a rebalance
        self.outage = Outage(stopping)
        self.dead_letters = dead_letters_of(settings, _DeadLetterProducer, metrics)
        self.consumer = self._connect()

    def _connect(self) -> KafkaConsumer:
        delay = 1.0
        while True:
            try:
                consumer = KafkaConsumer(
                    **client_config(self.settings),
                    group_id=self.settings.group_id,
                    enable_auto_commit=False,
                    auto_offset_reset=self.settings.auto_offset_reset,
                    max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
                    max_partition_fetch_bytes=self.settings.max_fetch_bytes,
                    fetch_max_bytes=self.settings.max_fetch_bytes,
                    group_instance_id=self.settings.group_instance_id,
                    partition_assignment_strategy=assignors(self.settings, self.hooks.partitioned),
                )
            except KafkaError as exc:
                log.error(
                    "cannot reach Kafka; retrying",
                    extra={
                        "bootstrap_servers": self.settings.bootstrap_servers,
                        "error": str(exc),
                        "retry_in_seconds": delay,
                    },
                )
                if self.stopping.wait(delay):
                    raise SourceError("stopped before Kafka could be reached") from exc
                delay = min(delay * 2, 30.0)
                continue
            consumer.subscribe(list(self.settings.topics), listener=_Rebalance(self))
            log.info("subscribed", extra={"topics": list(self.settings.topics)})
            return consumer

    @property
    def ready(self) -> bool:
        """Partitions are assigned. (kafka-python drops its bootstrap connection once it
        knows the cluster, so ``bootstrap_connected`` says nothing about health; while
        the cluster is gone it logs its connection errors, as JSON lines like ours.)"""
        return bool(self.consumer.assignment())

    def poll(self, max_records: int) -> Polled:
        try:
            batches = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=max_records)
        except KafkaError as exc:
            # kafka-python handles most connection errors itself, but not all (e.g.
            # KafkaConnectionError 111 while a killed broker is away).
            if not exc.retriable:
                raise
            self.outage.failed("poll", exc)
            batches = {}
        if batches:
            self.outage.over()
        if self.failure is not None:
            raise self.failure
        self._measure_lag(batches)
        return Polled.of_runs(
            (tp.topic, tp.partition, _values(records), list(map(_OFFSET, records)))
            for tp, records in batches.items()
        )

    def _measure_lag(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Per assigned partition: its end (as of the last fetch) less the next offset
        to process, after this batch."""
        positions = self.hooks.positions()
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            records = batches.get(tp)
            next_offset = (
                records[-1].offset + 1 if records else positions.get((tp.topic, tp.partition))
            )
            if end is not None and next_offset is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(end - next_offset, 0))

    def revoke(self, partitions: Collection[int]) -> Offsets:
        """The engine's part of a revocation, then what to commit for it: nothing while
        a dead letter is not acknowledged (on a worker thread: the loop is parked)."""
        offsets = self.hooks.revoked(partitions)
        return offsets if settled(self.dead_letters, COMMIT_TIMEOUT_MS / 1000) else {}

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        if self.dead_letters is not None:
            self.dead_letters.send(bad, wait=self.settings.connect_timeout)

    def settle(self) -> bool:
        timeout = STOPPING_COMMIT_TIMEOUT_MS if self.stopping.is_set() else COMMIT_TIMEOUT_MS
        return settled(self.dead_letters, timeout / 1000)

    def commit(self, offsets: Offsets) -> bool:
        """Make dead letters durable, then commit ``offsets`` of our partitions."""
        if not self.settle():
            return False
        timeout = STOPPING_COMMIT_TIMEOUT_MS if self.stopping.is_set() else COMMIT_TIMEOUT_MS
        assigned = self.consumer.assignment()
        commit = {
            tp: OffsetAndMetadata(offsets[(tp.topic, tp.partition)], "", -1)
            for tp in assigned
            if (tp.topic, tp.partition) in offsets
        }
        if not commit:
            return True
        try:
            self.consumer.commit(offsets=commit, timeout_ms=timeout)
        except KafkaError as exc:  # retried at the next checkpoint
            self.outage.failed("commit", exc, wait=False)
            return False
        self.outage.over()
        return True

    def close(self) -> None:
        self.closing = True
        if self.dead_letters is not None:
            self.dead_letters.close(CLOSE_TIMEOUT_MS / 1000)
        self.consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)


class _DeadLetterProducer:
    """kafka-python's producer to the dead-letter topic, made on first use. Its request
    limit is what the source fetches (and room for headers): a bad message that could be
    fetched goes whole if the topic takes it (its ``max.message.bytes``, unknown here,
    says so by refusing); larger ones go as stubs.

    Not idempotent: kafka-python takes a record the topic refuses for its size as a
    fatal error of an idempotent producer, and fails everything sent after it, for good.
    The price is a dead letter written twice, rarely (a retry after a lost answer)."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self._producer: KafkaProducer | None = None

    def _client(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                **client_config(self.settings),
                acks="all",
                enable_idempotence=False,
                max_request_size=self.settings.max_fetch_bytes + HEADER_ROOM,
                # Not a minute in send() waiting for metadata while the broker is away.
                max_block_ms=int(self.settings.connect_timeout * 1000),
            )
        return self._producer

    def send(self, letter: Letter, delivery: Delivery) -> None:
        try:
            future = self._client().send(self.topic, value=letter.value, headers=letter.headers)
        except KafkaError as exc:
            if not exc.retriable and not self.refused(exc):  # closed or fatal: a new one
                self.close(0)
            raise
        future.add_callback(delivery.acknowledged)
        future.add_errback(delivery.failed)

    def flush(self, timeout: float) -> None:
        if self._producer is not None:
            self._producer.flush(timeout=timeout)

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, MessageSizeTooLargeError | RecordListTooLargeError)

    def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=timeout)


def partition_names(partitions: Iterable[Any]) -> list[str]:
    """ "topic:partition" of each (either client's TopicPartition), sorted, for logs."""
    return sorted(f"{tp.topic}:{tp.partition}" for tp in partitions)
