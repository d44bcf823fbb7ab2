"""``kind=apprise``: chat and email through apprise (mailto://, slack://, tgram://, ...).

One ``apprise.Apprise`` per sink holds its URLs. apprise blocks on the network and says
only *that* a delivery failed, not why (its own log has the detail), so the call runs on
the sink's worker thread and is given up after ``timeout``; every failure is retryable.
The URLs carry credentials: apprise masks them in its log (``secure_logging``), and our
messages name a URL by its scheme alone.
"""

from __future__ import annotations

import logging
import re
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import apprise

from streamwatch.alerting.policy import Notification
from streamwatch.config import AppriseSinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks import render
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult

# apprise's own idea of a scheme. It logs what does not start with one in clear (as a
# file path), so such a value is refused before apprise sees it.
_SCHEME = re.compile(r"^\s*([a-z0-9]{1,32})://", re.IGNORECASE)


class _BelowDebug(logging.Filter):
    """Drops apprise's TRACE records (below DEBUG): it logs every URL it parses there,
    password and tokens in clear, whatever ``secure_logging`` says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.DEBUG


_NO_TRACE = _BelowDebug()


def scheme(url: str) -> str | None:
    """The scheme of an apprise URL (``mailto``): the one part that is never a secret."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


class AppriseSink:
    """Sends each notification's title and markdown body to every URL of the sink."""

    def __init__(self, name: str, settings: AppriseSinkSettings) -> None:
        self.name = name
        self.timeout = settings.timeout
        logging.getLogger("apprise").addFilter(_NO_TRACE)  # added once however many sinks
        # Masked logging is apprise's default; pinned here because our URLs hold secrets.
        self._apprise = apprise.Apprise(asset=apprise.AppriseAsset(secure_logging=True))
        with warnings.catch_warnings():
            # The first add loads every plugin; the email one imports imghdr (for PGPy),
            # deprecated since Python 3.11. Not ours to fix, and warnings are errors in CI.
            warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
            for number, url in enumerate(settings.urls, start=1):
                kind = scheme(url.get_secret_value())
                if kind is None:
                    raise ConfigError(f"sink {name}: URL {number} does not start with scheme://")
                if not self._apprise.add(url.get_secret_value()):
                    raise ConfigError(f"sink {name}: apprise cannot use URL {number} ({kind}://)")
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sink-{name}")
        self._running: Future[bool] | None = None

    def send(self, notification: Notification) -> DeliveryResult:
        if self._running is not None and not self._running.done():
            # An earlier call outlived its deadline; queueing behind it would only time
            # out again, and then deliver late, after we reported a failure.
            return DeliveryFailed(self.name, "an earlier delivery is still running", True)
        self._running = self._worker.submit(self._notify, notification)
        try:
            delivered = self._running.result(timeout=self.timeout)
        except FutureTimeout:
            return DeliveryFailed(self.name, f"no answer within {self.timeout:g} s", True)
        except Exception as exc:  # apprise and its plugins raise anything
            return DeliveryFailed(self.name, f"apprise raised {type(exc).__name__}", True)
        if not delivered:
            return DeliveryFailed(self.name, "apprise reported a failed delivery", True)
        return Delivered(self.name)

    def _notify(self, notification: Notification) -> bool:
        # A bool before apprise 2, a result that is truthy on success since.
        return bool(
            self._apprise.notify(
                title=render.title(notification),
                body=render.body(notification),
                body_format=apprise.NotifyFormat.MARKDOWN,
            )
        )

    def close(self) -> None:
        # A call past its deadline is left to finish on its own (its sockets time out).
        self._worker.shutdown(wait=False, cancel_futures=True)
