"""Kafka through confluent-kafka (librdkafka), for more events per core.

The same source as :mod:`streamwatch.sources.kafka`, chosen by
``STREAMWATCH_KAFKA__CLIENT=confluent``: librdkafka fetches and parses records on its
own threads, in C, so the Python thread is left with streamwatch's own work. Offsets
are committed only for what a checkpoint covers. Rebalance callbacks run inside
``consume`` on the main thread, so the revocation callback checkpoints and commits
synchronously, and the assignment callback starts each partition where the state ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from operator import methodcaller
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streamwatch.config import KafkaSettings
from streamwatch.events import BadEvent, Polled
from streamwatch.observe.logs import RateLimited
from streamwatch.observe.metrics import Metrics
from streamwatch.sources.base import Hooks, Offsets, Outage
from streamwatch.sources.dead_letters import (
    HEADER_ROOM,
    Delivery,
    Letter,
    dead_letters_of,
    settled,
)
from streamwatch.sources.kafka import (
    CLOSE_TIMEOUT_MS,
    COMMIT_TIMEOUT_MS,
    MAX_POLL_INTERVAL_MS,
    POLL_TIMEOUT_MS,
    STOPPING_COMMIT_TIMEOUT_MS,
    partition_names,
)

log = logging.getLogger("streamwatch.kafka")
# A record larger than the fetch limits still comes whole (Kafka returns a partition's
# first record batch whatever its size), in a response past them; below the size of
# that response librdkafka drops it and fetches it again, forever: no response is
# refused for its size (librdkafka's largest value).
RECEIVE_MAX_BYTES = 2_147_483_647


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka's names for what every client needs to reach the cluster."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": "streamwatch",
        "security.protocol": settings.security_protocol,
        "socket.connection.setup.timeout.ms": int(settings.connect_timeout * 1000),
        "error_cb": _log_error,
        "logger": log,
    }
    if settings.sasl_mechanism is not None:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username
        if settings.sasl_password is not None:
            config["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.ssl_cafile is not None:
        config["ssl.ca.location"] = str(settings.ssl_cafile)
    return config


# Read in C, message by message.
_ERROR, _VALUE = methodcaller("error"), methodcaller("value")
_TOPIC, _PARTITION, _OFFSET = (
    methodcaller("topic"),
    methodcaller("partition"),
    methodcaller("offset"),
)


class ConfluentSource:
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
        self.outage = Outage(stopping)
        self.dead_letters = dead_letters_of(settings, _DeadLetterProducer, metrics)
        self.consumer = Consumer(
            {
                **client_config(settings),
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": settings.auto_offset_reset,
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                "max.partition.fetch.bytes": settings.max_fetch_bytes,
                "fetch.max.bytes": settings.max_fetch_bytes,
                "receive.message.max.bytes": RECEIVE_MAX_BYTES,
            }
        )
        self.consumer.subscribe(
            list(settings.topics), on_assign=self._assigned, on_revoke=self._revoked
        )
        log.info("subscribed", extra={"topics": list(settings.topics), "client": "confluent"})

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": partition_names(partitions)})
        # Start where our state ends, when that is past the committed offset (a crash
        # between checkpoint and commit).
        known = self.hooks.positions()
        for tp in partitions:
            position = known.get((tp.topic, tp.partition))
            if position is not None:
                tp.offset = position
        consumer.assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": partition_names(partitions)})
        if self.stopping.is_set():
            return  # closing after a stop: checkpointed and committed already
        offsets = self.hooks.revoked({tp.partition for tp in partitions})
        if settled(self.dead_letters, COMMIT_TIMEOUT_MS / 1000):
            self._commit(partitions, offsets)

    @property
    def ready(self) -> bool:
        """Partitions are assigned."""
        return bool(self.consumer.assignment())

    def poll(self, max_records: int) -> Polled:
        records = self.consumer.consume(max_records, POLL_TIMEOUT_MS / 1000)
        errors = list(map(_ERROR, records))
        if errors.count(None) != len(errors):  # consumer events among the messages
            for error in errors:
                if error is not None:
                    _log_error(error)
            records = [r for r, e in zip(records, errors, strict=True) if e is None]
        offsets = list(map(_OFFSET, records))
        if None in offsets:  # not messages after all: no place in a partition
            records = [r for r, o in zip(records, offsets, strict=True) if o is not None]
            offsets = list(map(_OFFSET, records))
        topics, partitions = list(map(_TOPIC, records)), list(map(_PARTITION, records))
        polled = Polled.of_columns(list(map(_VALUE, records)), topics, partitions, offsets)
        ends = polled.ends.tolist()
        runs = zip(polled.topics, polled.partitions, ends, strict=True)
        self._measure_lag({(t, p): int(polled.offsets[end - 1]) for t, p, end in runs})
        return polled

    def _measure_lag(self, last: dict[tuple[str, int], int]) -> None:
        """Per assigned partition: its end (as of the last fetch) less the next offset
        to process, after this batch."""
        positions = self.hooks.positions()
        for tp in self.consumer.assignment():
            key = (tp.topic, tp.partition)
            _, end = self.consumer.get_watermark_offsets(tp, cached=True) or (None, None)
            next_offset = last[key] + 1 if key in last else positions.get(key)
            if end is not None and end >= 0 and next_offset is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(end - next_offset, 0))

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
        return self._commit(self.consumer.assignment(), offsets)

    def _commit(self, partitions: list[TopicPartition], offsets: Offsets) -> bool:
        """Commit ``offsets`` of those of ``partitions`` they name."""
        commit = [
            TopicPartition(tp.topic, tp.partition, offsets[(tp.topic, tp.partition)])
            for tp in partitions
            if (tp.topic, tp.partition) in offsets
        ]
        if not commit:
            return True
        try:
            committed = self.consumer.commit(offsets=commit, asynchronous=False) or []
        except KafkaException as exc:  # retried at the next checkpoint
            self.outage.failed("commit", exc, wait=False)
            return False
        failed = [tp for tp in committed if tp.error is not None]
        if not failed:
            self.outage.over()
        else:
            log.warning(
                "offset commit failed for some partitions; retried at the next checkpoint",
                extra={"partitions": partition_names(failed)},
            )
        return not failed

    def close(self) -> None:
        if self.dead_letters is not None:
            self.dead_letters.close(CLOSE_TIMEOUT_MS / 1000)
        self.consumer.close()


class _DeadLetterProducer:
    """librdkafka's idempotent producer to the dead-letter topic, made on first use, and
    again after a fatal error. Its request limit is what the source fetches (and room for
    headers), as with kafka-python (sources/kafka.py)."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self._producer: Producer | None = None
        self._fatal = False

    def _client(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **client_config(self.settings),
                    "acks": "all",
                    "enable.idempotence": True,
                    "message.max.bytes": self.settings.max_fetch_bytes + HEADER_ROOM,
                }
            )
        return self._producer

    def send(self, letter: Letter, delivery: Delivery) -> None:
        def answered(error: KafkaError | None, _: object) -> None:
            if error is None:
                delivery.acknowledged()
                return
            self._fatal = self._fatal or error.fatal()
            delivery.failed(KafkaException(error))

        producer = self._client()
        headers: list[tuple[str, str | bytes | None]] = [*letter.headers]
        try:
            producer.produce(self.topic, value=letter.value, headers=headers, on_delivery=answered)
        except KafkaException as exc:
            self._fatal = self._fatal or exc.args[0].fatal()
            self._renew()
            raise
        producer.poll(0)  # answers so far, without waiting

    def flush(self, timeout: float) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
        self._renew()

    def _renew(self) -> None:
        """After a fatal error the producer takes nothing more: purge it (what is still
        queued fails, to be sent again) and make another at the next send."""
        if self._fatal and self._producer is not None:
            log.error("dead-letter producer failed for good; making a new one")
            self._producer.purge()
            self._producer.flush(0)
            self._producer, self._fatal = None, False

    def refused(self, error: BaseException) -> bool:
        return (
            isinstance(error, KafkaException)
            and error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
        )

    def close(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(timeout)


_errors = RateLimited()


def _log_error(error: KafkaError) -> None:
    """librdkafka's errors (the broker gone: one per connection attempt), at most one
    line per kind every 10 s."""
    suppressed = _errors.allow(error.name())
    if suppressed is not None:
        log.error(
            "Kafka client error",
            extra={
                "error": str(error),
                "fatal": error.fatal(),
                "suppressed_since_last": suppressed,
            },
        )
