"""The webhook sink against a real HTTP receiver on 127.0.0.1 that checks signatures
the way a receiver would, with its own HMAC (not the signing library)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest
import requests
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from streamwatch.alerting.policy import Alert, Notification
from streamwatch.config import WebhookSinkSettings
from streamwatch.sinks.base import Delivered, DeliveryFailed
from streamwatch.sinks.webhook import WebhookSink
from streamwatch.windows import WindowBounds
from tests.integration.receivers import Received, Receiver, Reply, receiving, verifying

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"a shared secret of 32 bytes.....").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody else's secret of 32 b..").decode()
WINDOW = WindowBounds(3, 1_795_305_600.0, 1_795_309_200.0)


def notification(model: str = "fraud") -> Notification:
    def alert(subject: str, severity: str, value: float) -> Alert:
        labels = {
            "alertname": "FeatureDrift",
            "model": model,
            "detector": "feature_drift",
            "subject": subject,
            "statistic": "wasserstein",
            "severity": severity,
        }
        return Alert(
            status="firing",
            labels=labels,
            summary=f"{severity}: feature drift on {subject} of {model}",
            # Not ASCII: the bytes signed must be the UTF-8 bytes sent.
            description=f"feature '{subject}' drifted: 0.1 → {value}",
            starts_at=WINDOW.end,
            ends_at=None,
            fingerprint=hashlib.sha256(subject.encode()).hexdigest()[:16],
            value=value,
            threshold=0.1,
            window=WINDOW,
        )

    alerts = (alert("amount", "critical", 0.4), alert("größe", "warning", 0.12))
    return Notification("0123456789abcdef" * 2, model, WINDOW, alerts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving(verifying(SECRET)) as server:
        yield server


def sink(url: str, secret: str | None = SECRET, timeout: float = 5.0) -> WebhookSink:
    settings = WebhookSinkSettings(
        kind="webhook",
        url=url,
        secret=SecretStr(secret) if secret else None,
        headers={"X-Team": SecretStr("ml-platform"), "Authorization": SecretStr("Bearer t0k3n")},
        timeout=timeout,
    )
    return WebhookSink("ops", settings)


def test_a_signed_alertmanager_payload_arrives_and_verifies(receiver: Receiver) -> None:
    n = notification()
    webhook = sink(receiver.url)
    before = int(time.time())
    assert webhook.send(n) == Delivered("ops")
    webhook.close()

    [got] = receiver.requests
    assert got.path == "/hooks/streamwatch"
    assert got.headers["content-type"] == "application/json"
    # The bytes signed are the bytes sent: the receiver's own HMAC agreed (204).
    assert got.body == msgspec.json.encode(n.to_dict(receiver="ops"))
    assert got.headers["webhook-id"] == n.id
    assert before <= int(got.headers["webhook-timestamp"]) <= time.time()
    assert got.headers["webhook-signature"].startswith("v1,")
    Webhook(SECRET).verify(got.body, got.headers)  # and the reference library agrees
    assert got.headers["x-team"] == "ml-platform"
    assert got.headers["authorization"] == "Bearer t0k3n"

    payload = json.loads(got.body)
    assert payload["version"] == "4"
    assert payload["status"] == "firing"
    assert payload["receiver"] == "ops"
    assert payload["groupKey"] == '{}:{model="fraud"}'
    assert payload["groupLabels"] == {"model": "fraud"}
    assert payload["commonLabels"] == {
        "alertname": "FeatureDrift",
        "detector": "feature_drift",
        "model": "fraud",
        "statistic": "wasserstein",
    }
    assert [a["labels"]["subject"] for a in payload["alerts"]] == ["amount", "größe"]
    first = payload["alerts"][0]
    assert first["status"] == "firing"
    assert first["annotations"]["summary"] == "critical: feature drift on amount of fraud"
    assert first["startsAt"] == "2026-11-22T01:00:00Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z"


def test_a_body_tampered_in_transit_fails_verification(receiver: Receiver) -> None:
    webhook = sink(receiver.url)
    assert webhook.send(notification()) == Delivered("ops")
    webhook.close()
    [got] = receiver.requests
    replay = {k: v for k, v in got.headers.items() if k.startswith("webhook-")}
    replay["content-type"] = "application/json"

    tampered = got.body.replace(b'"critical"', b'"warning"')
    assert tampered != got.body
    assert requests.post(receiver.url, data=tampered, headers=replay, timeout=5).status_code == 401
    # The same headers with the genuine body still verify: only the change was caught.
    assert requests.post(receiver.url, data=got.body, headers=replay, timeout=5).status_code == 204


def test_a_wrong_secret_is_rejected_and_not_retried(receiver: Receiver) -> None:
    webhook = sink(receiver.url, secret=OTHER_SECRET)
    result = webhook.send(notification())
    webhook.close()
    assert isinstance(result, DeliveryFailed)
    assert not result.retryable
    assert "401" in result.reason
    assert OTHER_SECRET not in result.reason
    assert len(receiver.requests) == 1


def test_two_sends_of_one_notification_carry_the_same_webhook_id(receiver: Receiver) -> None:
    webhook = sink(receiver.url)
    n = notification()
    assert webhook.send(n) == Delivered("ops")
    assert webhook.send(n) == Delivered("ops")
    webhook.close()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [n.id, n.id]
    assert receiver.requests[0].body == receiver.requests[1].body


def test_without_a_secret_there_is_no_signature() -> None:
    with receiving(lambda got: (200, {})) as plain:
        webhook = sink(plain.url, secret=None)
        assert webhook.send(notification()) == Delivered("ops")
        webhook.close()
        [got] = plain.requests
        assert "webhook-signature" not in got.headers
        assert got.headers["webhook-id"] == notification().id


def test_503_with_retry_after_is_retryable_after_that_many_seconds() -> None:
    with receiving(lambda got: (503, {"Retry-After": "7"})) as busy:
        result = sink(busy.url).send(notification())
    assert isinstance(result, DeliveryFailed)
    assert result.sink == "ops"
    assert result.retryable
    assert result.retry_after == 7.0
    assert "503" in result.reason


def test_400_is_not_retryable() -> None:
    with receiving(lambda got: (400, {})) as strict:
        result = sink(strict.url).send(notification())
    assert isinstance(result, DeliveryFailed)
    assert not result.retryable
    assert result.retry_after is None


def test_a_closed_port_is_retryable_and_returns_within_the_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook = sink(f"http://127.0.0.1:{port}/hook", timeout=2.0)
    started = time.monotonic()
    result = webhook.send(notification())
    assert time.monotonic() - started < 2.0
    assert isinstance(result, DeliveryFailed)
    assert result.retryable
    assert "t0k3n" not in result.reason


def test_a_receiver_slower_than_the_timeout_is_retryable() -> None:
    released = threading.Event()

    def slow(got: Received) -> Reply:
        released.wait(5.0)
        return 204, {}

    with receiving(slow) as sluggish:
        started = time.monotonic()
        result = sink(sluggish.url, timeout=0.3).send(notification())
        elapsed = time.monotonic() - started
        released.set()
    assert isinstance(result, DeliveryFailed)
    assert result.retryable
    assert elapsed < 1.0
