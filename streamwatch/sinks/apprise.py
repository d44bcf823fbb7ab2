"""``kind=apprise``: chat and email through apprise (mailto://, slack://, tgram://, ...).

One ``apprise.Apprise`` per sink holds its URLs. apprise blocks on the network and says
only *that* a delivery failed, not why (its own log has the detail), so the call runs on
the sink's worker thread and is given up after ``timeout``; every failure is retryable.
The URLs carry credentials: apprise masks them in its log (``secure_logging``), and our
messages name a URL by its scheme alone.

Services that take markdown get the markdown body. Those that take HTML (email) get it
as HTML made here: apprise would make the HTML itself, but then it makes an email's
plain-text part from that HTML with a converter that starts a line at every ``<code>``
(``apprise.conversion.html.HTMLConverter.BLOCK_TAGS``): "Model\nfraud\n, window ...".
Ours sets code spans in a monospace ``<span>``, which reads the same and stays inline.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import apprise
from apprise.conversion import convert_between

from streamwatch.alerting.policy import Notification
from streamwatch.config import AppriseSinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks import render
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult


class _BelowDebug(logging.Filter):
    """Drops apprise's TRACE records (below DEBUG): it logs every URL it parses there,
    password and tokens in clear, whatever ``secure_logging`` says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.DEBUG


_NO_TRACE = _BelowDebug()

_MONOSPACE = '<span style="font-family: monospace">'


def takes_html(service: apprise.NotifyBase) -> bool:
    """Whether apprise would turn markdown into HTML for ``service``: HTML is the first
    format it declares (a tuple of them since apprise 2) and markdown is not one."""
    declared = service.notify_format
    formats = tuple(declared) if isinstance(declared, tuple | list) else (declared,)
    return formats[0] == apprise.NotifyFormat.HTML and apprise.NotifyFormat.MARKDOWN not in formats


def html(markdown: str) -> str:
    """``markdown`` as HTML whose plain-text conversion keeps code spans inline."""
    markdown_to_html = apprise.NotifyFormat.MARKDOWN, apprise.NotifyFormat.HTML
    rendered: str = convert_between(*markdown_to_html, markdown)  # type: ignore[no-untyped-call]
    return rendered.replace("<code>", _MONOSPACE).replace("</code>", "</span>")


class AppriseSink:
    """Sends each notification's title and body to every URL of the sink: markdown, or
    HTML to the services that take HTML."""

    def __init__(self, name: str, settings: AppriseSinkSettings) -> None:
        self.name = name
        self.timeout = settings.timeout
        logging.getLogger("apprise").addFilter(_NO_TRACE)  # added once however many sinks
        # Masked logging is apprise's default; pinned here because our URLs hold secrets.
        asset = apprise.AppriseAsset(secure_logging=True)
        self._markdown = apprise.Apprise(asset=asset)  # chat: slack://, tgram://, ...
        self._html = apprise.Apprise(asset=asset)  # email: mailto://, ...
        with warnings.catch_warnings():
            # The first add loads every plugin; the email one imports imghdr (for PGPy),
            # deprecated since Python 3.11. Not ours to fix, and warnings are errors in CI.
            warnings.filterwarnings("ignore", "'imghdr' is deprecated", DeprecationWarning)
            # The settings tried each URL with apprise when they were loaded.
            for number, url in enumerate(settings.urls, start=1):
                service = apprise.Apprise.instantiate(url.get_secret_value(), asset=asset)
                if service is None:  # settings made without validation
                    raise ConfigError(f"sink {name}: apprise cannot use URL {number}")
                (self._html if takes_html(service) else self._markdown).add(service)
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
        title, markdown = render.title(notification), render.body(notification)
        # Every service is tried, as one apprise call tries all its URLs: a chat service
        # that is down must not keep the email from going out.
        sent = []
        if len(self._markdown):
            sent.append(
                self._markdown.notify(
                    title=title, body=markdown, body_format=apprise.NotifyFormat.MARKDOWN
                )
            )
        if len(self._html):
            sent.append(
                self._html.notify(
                    title=title, body=html(markdown), body_format=apprise.NotifyFormat.HTML
                )
            )
        # A bool before apprise 2, a result that is truthy on success since.
        return all(bool(result) for result in sent)

    def close(self) -> None:
        # A call past its deadline is left to finish on its own (its sockets time out).
        self._worker.shutdown(wait=False, cancel_futures=True)
