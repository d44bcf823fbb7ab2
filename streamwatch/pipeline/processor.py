"""The processor: decode → admission → ownership → by model → the models' monitors
(and the spread models' parts); what it gives back is the windows that closed."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from streamwatch.config import Settings
from streamwatch.events import BadEvent, Polled, decode_batch, gc_paused
from streamwatch.events.reader import Reader
from streamwatch.pipeline.admission import Admission
from streamwatch.pipeline.by_model import by_model
from streamwatch.pipeline.conclusion import Conclusion
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor, Processed
from streamwatch.pipeline.positions import Positions
from streamwatch.pipeline.reference import Pinned
from streamwatch.scaleout.ownership import Alone, Ownership, Partitioned
from streamwatch.scaleout.spread_models import SpreadModels

if TYPE_CHECKING:
    from streamwatch.scaleout.changelog import Changelog


class Processor:
    def __init__(
        self,
        settings: Settings,
        reference: Mapping[str, Pinned],
        changelog: Changelog | None,
        positions: Positions,
        conclusion: Conclusion,
    ) -> None:
        self.settings = settings
        self.reference = reference
        self.models: dict[str, ModelMonitor] = {}
        self.reader = Reader()  # Arrow's, with the shape of the events so far
        self.admission = Admission(settings)  # the allow-list; idle models let go
        self.ownership: Ownership = (
            Alone()
            if changelog is None
            else Partitioned(frozenset(settings.state.spread_models), settings.max_models)
        )
        self.positions = positions
        self.conclusion = conclusion
        self.accounting = conclusion.accounting
        self.spread = SpreadModels(
            settings, reference, changelog, self.ownership, positions, self.accounting
        )

    def process(self, messages: Polled) -> tuple[list[BadEvent], list[ClosedWindow]]:
        """The bad messages of a batch, and the windows it closed."""
        events, partials = self.spread.partials(messages)
        with gc_paused():
            bad, closed = self._window(events)
        if partials:
            bad += self.spread.receive(partials)
        return bad, closed + self.spread.aggregated()

    def finish(self) -> list[ClosedWindow]:
        """End of input: close every open window of every model."""
        closed = []
        for model_id, monitor in self.models.items():
            closed += self._processed(model_id, monitor.flush())
        return closed

    def tick(self) -> list[ClosedWindow]:
        """No input: the spread models' windows whose missing partitions timed out."""
        return self.spread.aggregated()

    def _window(self, messages: Polled) -> tuple[list[BadEvent], list[ClosedWindow]]:
        latest = time.time() + self.settings.window.max_future
        decoded = decode_batch(messages, self.settings.max_message_bytes, latest, self.reader)
        bad = list(decoded.bad)
        decoded = self.admission.known(decoded, bad)
        decoded = self.ownership.admit(decoded, bad)
        closed: list[ClosedWindow] = []
        columns = decoded.columns
        for model_id, events in by_model(columns).items():
            if self.spread.spreads(model_id):
                self.spread.process(model_id, columns.take(events.positions))
                continue
            monitor = self._monitor(model_id)
            if monitor is None:
                detail = f"more than {self.settings.max_models} models"
                bad += [columns.bad(i, "model_limit", detail) for i in events.positions]
                continue
            monitor.firing = self.conclusion.policy.worst(model_id)  # for review rules
            closed += self._processed(model_id, monitor.process(events.predictions, events.labels))
            self.admission.seen(monitor)
        closed += self._let_go()
        return bad, closed

    def _processed(self, model_id: str, processed: Processed) -> list[ClosedWindow]:
        """What a monitor processed: its review requests stored, its counts counted."""
        self.conclusion.review(processed.requests)
        return self.accounting.processed(model_id, processed)

    def _let_go(self) -> list[ClosedWindow]:
        """Models idle for ``MODEL_IDLE_TTL``: their open windows closed, their slots
        freed (admission.py). Their alerts, home and held notifications stay until a
        checkpoint has covered those windows (or they come back)."""
        retired, held, homes = self.admission.retired, self.conclusion.held, self.ownership.homes
        changed = self.positions.changed
        gone = [m for m in retired if m not in held and homes.get(m) not in changed]
        gone = [m for m in gone if m not in self.models]
        if gone:
            self.conclusion.forget(gone)
            for model_id in gone:
                homes.pop(model_id, None)
        retired[:] = [m for m in retired if m not in gone and m not in self.models]
        closed = []
        for model_id in self.admission.idle(self.models):
            closed += self._processed(model_id, self.models.pop(model_id).let_go())
            retired.append(model_id)
            if model_id in homes:
                changed.add(homes[model_id])  # its state goes with the next checkpoint
        return closed

    def _monitor(self, model_id: str) -> ModelMonitor | None:
        """The model's monitor, made on first sight; ``None`` past the model limit."""
        monitor = self.models.get(model_id)
        if monitor is None:
            if len(self.models) >= self.settings.max_models:
                return None
            pinned = self.reference.get(model_id)
            settings = self.settings.for_model(model_id)
            monitor = self.models[model_id] = ModelMonitor(model_id, settings, pinned)
        return monitor

    def snapshot(self, models: Collection[str] | None) -> dict[str, Any]:
        """The monitors' state of ``models`` (``None``: all)."""
        chosen = self.models if models is None else [m for m in models if m in self.models]
        return {model_id: self.models[model_id].snapshot() for model_id in chosen}

    def restore(self, models: Mapping[str, Any]) -> None:
        for model_id, state in models.items():
            settings = self.settings.for_model(model_id)
            monitor = ModelMonitor(model_id, settings, self.reference.get(model_id))
            monitor.restore(state)
            self.models[model_id] = monitor

    def forget(self, models: Collection[str]) -> None:
        for model_id in models:
            self.models.pop(model_id, None)
