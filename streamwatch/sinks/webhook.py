"""``kind=webhook``: Alertmanager's webhook payload (version 4) of a model's alerts, what
changed and what still fires, signed the Standard Webhooks way
(https://www.standardwebhooks.com): ``webhook-id`` is the notification id, the same on
every retry, so a receiver can drop a duplicate; ``webhook-signature`` is an
HMAC-SHA256 of ``id.timestamp.body`` over the exact bytes sent.

:func:`post_signed_json` is the signed POST on its own, shared with the retrain sink.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from streamwatch.alerting.policy import Notification
from streamwatch.config import WebhookSinkSettings, webhook_signer
from streamwatch.sinks.base import DeliveryResult
from streamwatch.sinks.http import Http


def signer(secret: SecretStr | None) -> Webhook | None:
    """The signer of a ``whsec_...`` secret, or None without one. The settings refused an
    unusable secret when they were loaded (config.webhook_signer, which this calls)."""
    return None if secret is None else webhook_signer(secret.get_secret_value())


def signed_headers(
    signing: Webhook | None, message_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """``Content-Type`` and the Standard Webhooks headers of ``body``."""
    timestamp = int(time.time() if now is None else now)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
    }
    if signing is not None:
        # The library signs text: the body is UTF-8 (msgspec's output), so decoding and
        # re-encoding gives back the very bytes that go on the wire.
        when = datetime.fromtimestamp(timestamp, UTC)
        headers["webhook-signature"] = signing.sign(message_id, when, body.decode())
    return headers


def post_signed_json(
    http: Http,
    url: str,
    body: bytes,
    message_id: str,
    signing: Webhook | None,
    headers: dict[str, str] | None = None,
) -> DeliveryResult:
    """POST ``body`` (JSON bytes) with Standard Webhooks headers, as a delivery result."""
    sent = {**(headers or {}), **signed_headers(signing, message_id, body)}
    return http.deliver("POST", url, data=body, headers=sent)


class WebhookSink:
    """POSTs each notification to ``settings.url``, signed when a secret is set.

    Examples
    --------
    >>> from streamwatch.config import WebhookSinkSettings
    >>> settings = WebhookSinkSettings(kind="webhook", url="http://127.0.0.1:9/hook")
    >>> sink = WebhookSink("ops", settings)
    >>> sink.name, sink.signing is None
    ('ops', True)
    >>> sink.close()
    """

    def __init__(self, name: str, settings: WebhookSinkSettings) -> None:
        self.name = name
        self.url = settings.url.get_secret_value()
        self.signing = signer(settings.secret)
        extra = {key: value.get_secret_value() for key, value in settings.headers.items()}
        self.http = Http(name, settings.timeout, extra)

    def send(self, notification: Notification) -> DeliveryResult:
        body = msgspec.json.encode(notification.to_dict(receiver=self.name))
        return post_signed_json(self.http, self.url, body, notification.id, self.signing)

    def close(self) -> None:
        self.http.close()
