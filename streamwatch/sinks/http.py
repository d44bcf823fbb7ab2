"""HTTP delivery shared by the webhook, retrain and ticket sinks: one ``requests``
session per sink, a timeout on every call, and failures told apart (retry on network
errors, 429 and 5xx, honouring ``Retry-After``; give up on anything else)."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any

import requests

from streamwatch.observe import redact
from streamwatch.sinks.base import Delivered, DeliveryFailed

USER_AGENT = "streamwatch"
_PLAIN_HEADERS = {"user-agent", "accept", "accept-encoding", "connection", "content-type"}


class HttpError(Exception):
    """A call that did not succeed, already classified for the outbox."""

    def __init__(self, failure: DeliveryFailed) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class Http:
    """Calls to one service on behalf of one sink."""

    def __init__(self, sink: str, timeout: float, headers: dict[str, str] | None = None) -> None:
        self.sink = sink
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, **(headers or {})})

    def call(
        self, method: str, url: str, ok: tuple[int, ...] = (), **kwargs: Any
    ) -> requests.Response:
        """The response of a 2xx (or an ``ok`` status); :class:`HttpError` otherwise."""
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            # The URL may hold a secret: name the kind of failure, not the request.
            raise HttpError(
                DeliveryFailed(self.sink, f"{method} failed: {type(exc).__name__}", True)
            ) from None
        if response.ok or response.status_code in ok:
            return response
        status = response.status_code
        retryable = status == 429 or status >= 500
        # An error page may echo the request: its URL's secrets and the credentials sent.
        answer = redact.text(response.text[:2000], self._secrets(url))[:200]
        reason = f"{method} answered {status} {response.reason}: {answer}"
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise HttpError(DeliveryFailed(self.sink, reason, retryable, retry_after))

    def deliver(self, method: str, url: str, **kwargs: Any) -> Delivered | DeliveryFailed:
        """One call as a delivery result."""
        try:
            self.call(method, url, **kwargs)
        except HttpError as exc:
            return exc.failure
        return Delivered(self.sink)

    def close(self) -> None:
        self.session.close()

    def _secrets(self, url: str) -> list[str]:
        """What a call to ``url`` sends that is secret: parts of the URL, the values of
        the session's headers (but the plain ones) and its basic auth password."""
        found = redact.secret_parts(url)
        for key, value in self.session.headers.items():
            if key.lower() not in _PLAIN_HEADERS and isinstance(value, str):
                # "Bearer TOKEN": the token alone too (not the scheme's name)
                found += [value, *(word for word in value.split() if len(word) >= 8)]
        auth = self.session.auth
        if isinstance(auth, tuple) and len(auth) == 2:
            found.append(str(auth[1]))
        return found


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
