"""``kind=kafka``: each alert record as JSON on a topic, for other systems to consume.

The value is the alert's Alertmanager-shaped record plus ``"notification"`` (its id);
the key is the alert fingerprint, so one alert's history stays in one partition, in
order; the ``streamwatch-notification-id`` header repeats the id, the same on every
retry, so consumers can drop a duplicate. A send waits for every record to be
acknowledged by all in-sync replicas, for ``timeout`` at most.

The producer is made on the first send, not at start: a broker that is down then must
not stop the daemon, only fail (and later retry) the deliveries.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.util import ensure_valid_topic_name

from streamwatch.alerting.policy import Alert, Notification
from streamwatch.config import KafkaSettings, KafkaSinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult
from streamwatch.sources.kafka import client_config

NOTIFICATION_HEADER = "streamwatch-notification-id"
Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


class KafkaSink:
    """Produces the alerts of each notification to ``settings.topic``."""

    def __init__(self, name: str, settings: KafkaSinkSettings, kafka: KafkaSettings) -> None:
        try:
            ensure_valid_topic_name(settings.topic)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"sink {name}: {exc}") from None
        self.name = name
        self.topic = settings.topic
        self.timeout = settings.timeout
        bootstrap = settings.bootstrap_servers or kafka.bootstrap_servers
        self.client = client_config(kafka.model_copy(update={"bootstrap_servers": bootstrap}))
        self._config = {**self.client, **_bounded(int(self.timeout * 1000)), "acks": "all"}
        self._producer: KafkaProducer | None = None

    def send(self, notification: Notification) -> DeliveryResult:
        headers = [(NOTIFICATION_HEADER, notification.id.encode())]
        return self.produce(
            [
                (a.fingerprint.encode(), _record(a, notification), headers)
                for a in notification.alerts
            ]
        )

    def produce(self, records: list[Record]) -> DeliveryResult:
        """Produce ``records`` (key, value, headers) and wait for every acknowledgement."""
        deadline = time.monotonic() + self.timeout
        try:
            producer = self._connected()
        except KafkaError as exc:
            return DeliveryFailed(self.name, f"cannot reach Kafka: {_describe(exc)}", True)
        try:
            pending = [
                producer.send(self.topic, key=key, value=value, headers=headers)
                for key, value, headers in records
            ]
            for record in pending:
                record.get(timeout=max(deadline - time.monotonic(), 0.0))
        except KafkaError as exc:
            return DeliveryFailed(self.name, f"not acknowledged: {_describe(exc)}", True)
        return Delivered(self.name)

    def _connected(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self._config)
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.timeout)
            self._producer = None


def _bounded(timeout_ms: int) -> dict[str, Any]:
    """Client timeouts that keep one send within the sink's ``timeout`` (the source's
    ``connect_timeout`` is for the consumer, which may wait)."""
    half = max(timeout_ms // 2, 1)
    return {
        # Reaching the cluster and then the topic's metadata share the deadline: a
        # send blocks for at most both, before any record is handed over.
        "bootstrap_timeout_ms": half,
        "max_block_ms": half,
        # The producer gives up on a record about when we report it failed, rather
        # than minutes later, after the outbox has sent it again.
        "request_timeout_ms": timeout_ms,
        "delivery_timeout_ms": timeout_ms,
    }


def _record(alert: Alert, notification: Notification) -> bytes:
    return msgspec.json.encode({**alert.to_dict(), "notification": notification.id})


def _describe(exc: KafkaError) -> str:
    # kafka-python's errors name their class in str() already, when they have a message.
    return str(exc) or type(exc).__name__
