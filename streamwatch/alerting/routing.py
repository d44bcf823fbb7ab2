"""Which sink hears which alerts: silences, severity, label matchers, retrain cooldown.

A notification is split once into what silences hold back (stored in the outbox as a
record under ``SILENCED``, never sent) and the rest; each sink then gets the alerts at
or above its ``min_severity`` whose labels match its ``matchers``, as one outbox row
under the notification's id, with the model's other alerts still firing (``active``)
that it would hear too. A retrain sink fires at most once per model per
``cooldown`` (event time; the last trigger times are part of the checkpoint).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import Alert, Notification
from streamwatch.config import RetrainSinkSettings, Silence
from streamwatch.sinks import RoutedSink

SILENCED = "(silenced)"


class Router:
    def __init__(
        self, sinks: Sequence[RoutedSink], silences: Sequence[Silence], outbox: Outbox
    ) -> None:
        self.sinks = sinks
        self.silences = silences
        self.outbox = outbox
        self.triggered: dict[str, float] = {}  # "sink/model" -> window end of the last trigger

    def route(self, notification: Notification, status: str = "pending") -> int:
        """Store the notification for every sink that wants some of it (``held`` until
        the checkpoint that covers its window is durable); return how many rows are new
        (0 when the same notification was routed before)."""
        silenced = [a for a in notification.alerts if self._silenced(a, notification.window.end)]
        if silenced:
            self.outbox.add(replace(notification, alerts=tuple(silenced)), SILENCED, "silenced")
        audible = [a for a in notification.alerts if a not in silenced]
        when = notification.window.end
        standing = [a for a in notification.active if not self._silenced(a, when)]
        added = 0
        for routed in self.sinks:
            wanted = tuple(a for a in audible if hears(routed, a))
            if not wanted or not self._cooled_down(routed, notification, wanted):
                continue
            active = tuple(a for a in standing if hears(routed, a))
            row = replace(notification, alerts=wanted, active=active)
            added += self.outbox.add(row, routed.sink.name, status)
        return added

    def _silenced(self, alert: Alert, when: float) -> bool:
        return any(
            s.starts.timestamp() <= when <= s.ends.timestamp() and _matches(alert, s.matchers)
            for s in self.silences
        )

    def _cooled_down(
        self, routed: RoutedSink, notification: Notification, alerts: tuple[Alert, ...]
    ) -> bool:
        settings = routed.settings
        if not isinstance(settings, RetrainSinkSettings):
            return True
        if not any(a.status == "firing" for a in alerts):
            return False  # a resolved alert retrains nothing
        key, now = f"{routed.sink.name}/{notification.model}", notification.window.end
        last = self.triggered.get(key)
        if last is not None and now - last < settings.cooldown:
            return False
        self.triggered[key] = now
        return True

    def snapshot(self, models: Collection[str] | None = None) -> dict[str, Any]:
        """Retrain cooldowns ("sink/model" -> last trigger): all, or of ``models`` only."""
        return {
            "triggered": {
                k: v for k, v in self.triggered.items() if models is None or _model(k) in models
            }
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.triggered.update({str(k): float(v) for k, v in state["triggered"].items()})

    def forget(self, models: Collection[str]) -> None:
        self.triggered = {k: v for k, v in self.triggered.items() if _model(k) not in models}


def _model(key: str) -> str:
    return key.split("/", 1)[1]


def hears(routed: RoutedSink, alert: Alert) -> bool:
    """Whether a sink hears ``alert``: at or above its ``min_severity``, matching its
    ``matchers``. A review sink hears none: it takes review requests."""
    settings = routed.settings
    if settings.kind == "review":
        return False
    return alert.severity.rank >= settings.min_severity.rank and _matches(alert, settings.matchers)


def _matches(alert: Alert, matchers: Mapping[str, str]) -> bool:
    """Whether the alert has every label of ``matchers`` with its value."""
    return all(alert.labels.get(k) == v for k, v in matchers.items())
