"""The conclusion of closed windows: the alert policy, report links, the redacted
history records, the router into the outbox, and waking the dispatcher.

With durable state, a notification is held until the checkpoint that covers its window
is written: whoever restores an older state makes it again, never twice.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from streamwatch.alerting.dispatcher import Dispatcher
from streamwatch.alerting.outbox import Carried, Outbox
from streamwatch.alerting.policy import AlertPolicy, Notification, report_link
from streamwatch.alerting.routing import Router
from streamwatch.config import Settings
from streamwatch.errors import EncodeError
from streamwatch.observe import history
from streamwatch.pipeline.accounting import Accounting
from streamwatch.pipeline.monitor import ClosedWindow
from streamwatch.review.request import ReviewRequest


@dataclass(frozen=True, slots=True)
class Produced:
    """What one processed batch produced, for callers that watch (CLI, tests)."""

    closed: list[ClosedWindow]
    notifications: list[Notification]


class Conclusion:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        outbox: Outbox,
        dispatcher: Dispatcher,
        accounting: Accounting,
    ) -> None:
        self.settings = settings
        self.policy = AlertPolicy(settings.alerts, lambda m: settings.for_model(m).alerts)
        self.router = router
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.accounting = accounting
        self.hold = False  # notifications held until a checkpoint covers them
        self.held: dict[str, list[str]] = {}  # model -> notifications held since
        self.closed: list[history.WindowRecord] | None = None  # since the last checkpoint

    def start(self, durable: bool) -> None:
        """With durable state (a store), hold notifications and keep history records
        until each checkpoint writes them."""
        self.hold = durable
        if durable and self.settings.history.enabled:
            self.closed = []

    def conclude(self, closed: list[ClosedWindow]) -> Produced:
        notifications = []
        for window in sorted(closed, key=lambda w: (w.bounds.end, w.model)):
            self.accounting.closed(window)
            notification = self.policy.observe(window.model, window.bounds, window.findings)
            base_url = self.settings.report.base_url
            if notification is not None and base_url:
                link = report_link(base_url, window.model, window.bounds)
                notification = replace(notification, link=link)
            if self.closed is not None:
                self.closed.append(self._record(window, notification))
            if notification is None:
                continue
            self.accounting.alerted(notification)
            try:
                self.router.route(notification, "held" if self.hold else "pending")
            except EncodeError as e:
                self.accounting.unencodable(window.model, e)
                continue
            if self.hold:
                self.held.setdefault(window.model, []).append(notification.id)
            notifications.append(notification)
        if closed:
            self._firing()
        if notifications:
            self.dispatcher.wake()
        return Produced(closed, notifications)

    def review(self, requests: Sequence[ReviewRequest]) -> None:
        """Store each review request for every review sink, held like a notification
        until the checkpoint that covers its batch is durable: whoever restores an older
        state chooses the same events again, and their requests are stored once."""
        sinks = [r.sink.name for r in self.router.sinks if r.settings.kind == "review"]
        status = "held" if self.hold else "pending"
        for request in requests:
            for sink in sinks:
                self.outbox.add(request, sink, status)
            if self.hold:
                self.held.setdefault(request.model, []).append(request.id)
        if requests and not self.hold:
            self.dispatcher.wake()

    def _firing(self) -> None:
        """The alerts firing now, to the gauges."""
        tracks = self.policy.tracks.values()
        self.accounting.firing(
            (t.labels["model"], t.severity) for t in tracks if t.severity is not None
        )

    def _record(
        self, window: ClosedWindow, notification: Notification | None
    ) -> history.WindowRecord:
        """The window's history record, with names redacted as in its alerts."""
        redact = self.settings.for_model(window.model).alerts.redact
        shown = [d for d in window.distributions if d.subject not in redact]
        findings = map(self.policy.redacted, window.findings)
        return history.record(replace(window, distributions=shown), findings, notification)

    def release(self, models: Collection[str] | None) -> None:
        """The held notifications of ``models`` (``None``: all), whose windows' state is
        durable now."""
        chosen = list(self.held) if models is None else models
        ids = [i for m in chosen for i in self.held.pop(m, ())]
        if ids and self.outbox.release(ids):
            self.dispatcher.wake()

    def snapshot(self, models: Collection[str] | None) -> dict[str, Any]:
        """What a state carries of ``models`` (``None``: all): their alerts, routes and
        undelivered notifications."""
        return {
            "policy": self.policy.snapshot(models),
            "router": self.router.snapshot(models),
            "outbox": self.outbox.undelivered(models),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        models = self.policy.restore(state["policy"])
        self.router.restore(state["router"])
        self._firing()
        # Receivers that hold what fires (Alertmanager) keep hearing the restored alerts.
        self.dispatcher.resume(self.policy.standing(models))
        # Notifications of the windows this state closed: sent, or to send (held here
        # when the crash came between the checkpoint and their release).
        carried = [Carried(*row) for row in state.get("outbox", ())]
        self.outbox.adopt(carried)
        if self.outbox.release([row.id for row in carried]):
            self.dispatcher.wake()

    def leaving(self, models: Collection[str]) -> None:
        """``models`` leave with their partitions: none of their notifications is released
        or sent from here any more (waiting for a send under way)."""
        for model_id in models:
            self.held.pop(model_id, None)
        self.dispatcher.hold_back(models)

    def left(self, models: Collection[str]) -> None:
        """``models`` went with their partitions' state: their undelivered notifications
        are sent by the partitions' next owner (or made again from it), not from here."""
        for model_id in models:
            self.held.pop(model_id, None)
        self.forget(models)
        self.outbox.move(models)
        self.dispatcher.let_through(models)

    def forget(self, models: Collection[str]) -> None:
        self.dispatcher.forget(models)
        self.policy.forget(models)
        self.router.forget(models)
        self.accounting.forget(models)
