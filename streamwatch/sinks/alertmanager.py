"""``kind=alertmanager``: alerts POSTed to Alertmanager's API (``/api/v2/alerts``), as
Prometheus does, so that Alertmanager groups, inhibits, silences and routes them.

A notification is delivered through the outbox like any other: its alerts (what changed)
and the model's other alerts still firing (``active``) are posted, resolved ones with
their end. Alertmanager ends a firing alert by itself once its ``endsAt`` passes, and
streamwatch's windows may be hours long, so the sink keeps the firing alerts it has
delivered and a background thread posts them again every ``resend_interval``, each
ending ``LIFETIME`` intervals later (Prometheus's choice: one lost resend does not
resolve anything; a daemon gone for good lets them end). After a restart the
dispatcher hands the sink what the restored policy says is firing (:meth:`resume`).

A cluster is posted to member by member, as Prometheus does (its members do not share
alerts): a delivery succeeds when at least one member accepts it. A member that was
away hears of the firing alerts at the next resend; one that missed a resolution ends
the alert by itself, ``LIFETIME`` intervals after it last heard of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from streamwatch.alerting.policy import Alert, Notification, isoformat
from streamwatch.config import AlertmanagerSinkSettings
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult
from streamwatch.sinks.http import Http

log = logging.getLogger("streamwatch.sinks.alertmanager")

LIFETIME = 4  # a firing alert is posted to end this many resend intervals later
_JSON = {"Content-Type": "application/json"}


class AlertmanagerSink:
    """Posts each notification's alerts to every member of an Alertmanager cluster and
    keeps the firing ones alive.

    Examples
    --------
    >>> from streamwatch.config import AlertmanagerSinkSettings
    >>> settings = AlertmanagerSinkSettings(kind="alertmanager", url="http://am:9093")
    >>> sink = AlertmanagerSink("am", settings)
    >>> sink.urls
    ('http://am:9093/api/v2/alerts',)
    >>> sink.close()
    """

    def __init__(
        self,
        name: str,
        settings: AlertmanagerSinkSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.urls = tuple(f"{url.rstrip('/')}/api/v2/alerts" for url in settings.url)
        self.resend_interval = settings.resend_interval
        self.clock = clock
        self.http = _http(name, settings)
        self._lock = threading.Lock()  # the state below
        # One post at a time (and the session is one thread's at a time): a resend must
        # not post what a send has just replaced.
        self._posting = threading.Lock()
        # model -> fingerprint -> the firing alert as posted, less its endsAt
        self._firing: dict[str, dict[str, dict[str, Any]]] = {}
        # model -> window end of the newest state applied: an older one is superseded
        self._latest: dict[str, float] = {}
        self._stopping = threading.Event()
        self._resender: threading.Thread | None = None

    def send(self, notification: Notification) -> DeliveryResult:
        with self._posting:
            return self._send(notification)

    def _send(self, notification: Notification) -> DeliveryResult:
        model, window_end, now = notification.model, notification.window.end, self.clock()
        group = [*notification.alerts, *notification.active]
        with self._lock:
            latest = self._latest.get(model)
            held = dict(self._firing.get(model, {}))
        if latest is not None and window_end < latest:
            # Delivered late (retried): a newer state of the model was applied. Only its
            # resolutions still matter, of alerts that have not fired again since.
            posted = [
                self._resolved(a, notification, now)
                for a in notification.alerts
                if a.status == "resolved" and a.fingerprint not in held
            ]
            return self._post(posted) if posted else Delivered(self.name)
        firing = {a.fingerprint: _base(a, notification) for a in group if a.status == "firing"}
        resolved = {
            a.fingerprint: self._resolved(a, notification, now)
            for a in group
            if a.status == "resolved"
        }
        # What the group no longer holds ends now; an escalated alert is among those, as
        # its severity label, which Alertmanager tells alerts apart by, changed.
        kept = [base["labels"] for base in firing.values()]
        ended = [
            {**base, "endsAt": isoformat(now)}
            for key, base in held.items()
            if base["labels"] not in kept and key not in resolved
        ]
        posted = [*(self._until(b, now) for b in firing.values()), *resolved.values(), *ended]
        result = self._post(posted)
        if isinstance(result, Delivered):
            with self._lock:
                self._latest[model] = max(window_end, self._latest.get(model, window_end))
                self._hold(model, firing)
        return result

    def resume(self, standing: Mapping[str, Sequence[Alert]]) -> None:
        """Take on the alerts firing per model in a restored state, to post them again."""
        with self._lock:
            for model, alerts in standing.items():
                firing = {a.fingerprint: _base(a) for a in alerts if a.status == "firing"}
                for alert in alerts:
                    self._latest[model] = max(alert.window.end, self._latest.get(model, 0.0))
                self._hold(model, firing)

    def forget(self, models: Collection[str]) -> None:
        """Stop posting the alerts of ``models`` (another instance holds them now)."""
        with self._lock:
            for model in models:
                self._firing.pop(model, None)
                self._latest.pop(model, None)

    def resend(self) -> DeliveryResult | None:
        """Post every firing alert again (None: there is none)."""
        with self._posting:
            now = self.clock()
            with self._lock:
                bases = [base for group in self._firing.values() for base in group.values()]
            if not bases:
                return None
            result = self._post([self._until(b, now) for b in bases])
        if isinstance(result, DeliveryFailed):
            log.warning(
                "firing alerts not posted again",
                extra={"sink": self.name, "alerts": len(bases), "reason": result.reason},
            )
        return result

    def close(self) -> None:
        self._stopping.set()
        if self._resender is not None:
            self._resender.join(self.http.timeout * len(self.urls) + 1.0)
        self.http.close()

    def _hold(self, model: str, firing: dict[str, dict[str, Any]]) -> None:
        """Keep ``firing`` as the model's alerts to post again (the lock is held)."""
        if firing:
            self._firing[model] = firing
        else:
            self._firing.pop(model, None)
        if self._firing and self._resender is None and not self._stopping.is_set():
            self._resender = threading.Thread(
                target=self._resend_every, name=f"resend-{self.name}", daemon=True
            )
            self._resender.start()

    def _resend_every(self) -> None:
        while not self._stopping.wait(self.resend_interval):
            self.resend()

    def _until(self, base: dict[str, Any], now: float) -> dict[str, Any]:
        return {**base, "endsAt": isoformat(now + LIFETIME * self.resend_interval)}

    def _resolved(self, alert: Alert, notification: Notification, now: float) -> dict[str, Any]:
        # Not later than now (an event clock ahead of this one would keep it firing) nor
        # before its start (which Alertmanager refuses).
        ends_at = alert.starts_at if alert.ends_at is None else alert.ends_at
        ends = isoformat(max(min(ends_at, now), alert.starts_at))
        return {**_base(alert, notification), "endsAt": ends}

    def _post(self, alerts: Iterable[dict[str, Any]]) -> DeliveryResult:
        """``alerts`` to every member: delivered when one at least accepts them."""
        body = msgspec.json.encode(list(alerts))
        failures = [
            (i, result)
            for i, url in enumerate(self.urls, 1)
            if isinstance(
                result := self.http.deliver("POST", url, data=body, headers=_JSON), DeliveryFailed
            )
        ]
        reasons = "; ".join(
            f"member {i}: {f.reason}" if len(self.urls) > 1 else f.reason for i, f in failures
        )
        if len(failures) < len(self.urls):
            if failures:
                log.warning(
                    "an Alertmanager did not take the alerts",
                    extra={"sink": self.name, "reason": reasons},
                )
            return Delivered(self.name)
        waits = [f.retry_after for _, f in failures if f.retry_after is not None]
        retryable = any(f.retryable for _, f in failures)
        return DeliveryFailed(self.name, reasons, retryable, max(waits, default=None))


def _base(alert: Alert, notification: Notification | None = None) -> dict[str, Any]:
    """One of Alertmanager's PostableAlerts, less its ``endsAt``. Restored alerts have no
    notification: their generator URL names the model and window they last fired in."""
    link = None if notification is None else notification.link
    model = alert.labels["model"] if notification is None else notification.model
    window = alert.window if notification is None else notification.window
    shown = alert.webhook_alert(link, model, window)
    return {key: shown[key] for key in ("labels", "annotations", "startsAt", "generatorURL")}


def _http(name: str, settings: AlertmanagerSinkSettings) -> Http:
    """Calls with the sink's bearer token or basic auth (the settings allow one of them)."""
    token, user, password = settings.token, settings.user, settings.password
    headers = {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
    http = Http(name, settings.timeout, headers)
    if user is not None and password is not None:
        http.session.auth = (user, password.get_secret_value())
    return http
