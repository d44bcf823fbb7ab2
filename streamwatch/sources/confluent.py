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
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streamwatch.config import KafkaSettings
from streamwatch.events import BadEvent, Origin
from streamwatch.metrics import Metrics
from streamwatch.sources.base import Hooks, Message, Offsets
from streamwatch.sources.kafka import (
    CLOSE_TIMEOUT_MS,
    MAX_POLL_INTERVAL_MS,
    POLL_TIMEOUT_MS,
    dead_letter_headers,
    partition_names,
)

log = logging.getLogger("streamwatch.kafka")


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
        self._producer: Producer | None = None
        self._undelivered = 0  # dead letters the broker refused since the last commit
        self.consumer = Consumer(
            {
                **client_config(settings),
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": settings.auto_offset_reset,
                "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
                "max.partition.fetch.bytes": settings.max_fetch_bytes,
                "fetch.max.bytes": settings.max_fetch_bytes,
                "receive.message.max.bytes": settings.max_fetch_bytes + (1 << 20),
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
        self._commit(partitions, self.hooks.revoked({tp.partition for tp in partitions}))

    @property
    def ready(self) -> bool:
        """Partitions are assigned."""
        return bool(self.consumer.assignment())

    def poll(self, max_records: int) -> list[Message]:
        records = self.consumer.consume(max_records, POLL_TIMEOUT_MS / 1000)
        messages: list[Message] = []
        last: dict[tuple[str, int], int] = {}
        for record in records:
            error = record.error()
            topic, partition, offset = record.topic(), record.partition(), record.offset()
            if error is not None or topic is None or partition is None or offset is None:
                if error is not None:  # a consumer event, not a message
                    _log_error(error)
                continue
            messages.append((record.value() or b"", Origin(topic, partition, offset)))
            last[(topic, partition)] = offset
        self._measure_lag(last)
        return messages

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
        topic = self.settings.dlq_topic
        if topic is None:
            return
        producer = self._dlq_producer()
        now = datetime.now(UTC).isoformat()
        for event in bad:
            headers: list[tuple[str, str | bytes | None]] = [*dead_letter_headers(event, now)]
            while True:
                try:
                    producer.produce(topic, value=event.raw, headers=headers)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.5)
        producer.poll(0)
        self.metrics.dead_letters.inc(len(bad))

    def _dlq_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    **client_config(self.settings),
                    "acks": "all",
                    "enable.idempotence": True,
                    "message.max.bytes": self.settings.max_fetch_bytes + (1 << 20),
                    "on_delivery": self._delivered,
                }
            )
        return self._producer

    def _delivered(self, error: KafkaError | None, _: object) -> None:
        if error is not None:
            self._undelivered += 1
            log.error("dead letter not delivered", extra={"error": str(error)})

    def commit(self, offsets: Offsets) -> bool:
        """Make dead letters durable, then commit ``offsets`` of our partitions."""
        if self._producer is not None:
            pending = self._producer.flush(self.settings.connect_timeout)
            if pending or self._undelivered:
                # Not committing means the bad messages come again: kept, not lost.
                log.error(
                    "dead letters not acknowledged; offsets not committed",
                    extra={"pending": pending, "refused": self._undelivered},
                )
                self._undelivered = 0
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
        except KafkaException as exc:
            log.warning(
                "offset commit failed; it is retried at the next checkpoint",
                extra={"error": str(exc)},
            )
            return False
        failed = [tp for tp in committed if tp.error is not None]
        if failed:
            log.warning(
                "offset commit failed for some partitions; retried at the next checkpoint",
                extra={"partitions": partition_names(failed)},
            )
        return not failed

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(CLOSE_TIMEOUT_MS / 1000)
        self.consumer.close()


def _log_error(error: KafkaError) -> None:
    log.error("Kafka client error", extra={"error": str(error), "fatal": error.fatal()})
