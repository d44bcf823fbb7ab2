"""This instance's share of the spread models (spread.py): a part per model and
partition whose events come through here, and the aggregates (spread_aggregate.py) of
the models it owns in the partials topic. Alone there are none (the config requires a
changelog)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from streamwatch.config import Settings
from streamwatch.errors import ConfigError, StateError
from streamwatch.events import BadEvent, EventColumns, Message, Polled
from streamwatch.pipeline.accounting import Accounting
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor
from streamwatch.pipeline.positions import Positions
from streamwatch.pipeline.reference import Pinned
from streamwatch.scaleout import spread
from streamwatch.scaleout.ownership import Ownership
from streamwatch.scaleout.spread import Part
from streamwatch.scaleout.spread_aggregate import Aggregate

if TYPE_CHECKING:
    from streamwatch.scaleout.changelog import Changelog

log = logging.getLogger("streamwatch.engine")


class SpreadModels:
    def __init__(
        self,
        settings: Settings,
        reference: Mapping[str, Pinned],
        changelog: Changelog | None,
        ownership: Ownership,
        positions: Positions,
        accounting: Accounting,
    ) -> None:
        self.settings = settings
        self.reference = reference
        self.changelog = changelog
        self.models = frozenset(settings.state.spread_models)
        unpinned = sorted(self.models - reference.keys())
        if unpinned:
            raise ConfigError(f"spread models {unpinned} have no events in REFERENCE__PATH")
        self.ownership = ownership
        self.positions = positions
        self.accounting = accounting
        self.parts: dict[tuple[str, int], Part] = {}
        self.aggregates: dict[str, Aggregate] = {}
        self._judges: dict[str, ModelMonitor] = {}

    def spreads(self, model_id: str) -> bool:
        """Whether ``model_id`` is spread (only ever scaled out: the config says so)."""
        return self.changelog is not None and model_id in self.models

    def partials(self, polled: Polled) -> tuple[Polled, list[Message]]:
        """The events apart from the partials (of the spread models owned here)."""
        topic = self.settings.state.partials_topic
        if not self.models or self.changelog is None or topic not in polled.topics:
            return polled, []
        of_topic = np.array([t == topic for t in polled.topics])[polled.run_of()]
        return polled.take(~of_topic), polled.take(of_topic).messages()

    def process(self, model_id: str, events: EventColumns) -> None:
        """A spread model's predictions and labels into the part of the partition each
        came through (a label, keyed by its prediction's event id, comes through the
        prediction's)."""
        partition = events.polled.partition_of()[events.at]
        predictions, labelled = ~events.is_label, events.labelled
        for p in np.unique(partition).tolist():
            here = partition == p
            labels = events.take(labelled & here).labels() if (labelled & here).any() else []
            processed = self._part(model_id, p).process(events.take(predictions & here), labels)
            self.accounting.processed(model_id, processed)

    def receive(self, partials: Sequence[Message]) -> list[BadEvent]:
        """Partials of the spread models this instance owns (by their partition of the
        partials topic), kept until their windows can be merged."""
        assert self.changelog is not None
        bad = []
        for value, origin in partials:
            try:
                partial = spread.decode(value, self.changelog.shape)
                if partial.model not in self.models:
                    raise StateError(f"{partial.model!r} is not in STATE__SPREAD_MODELS here")
                self._aggregate(partial.model).receive(partial)
            except StateError as exc:
                bad.append(BadEvent("bad_partial", str(exc), value, origin))
                continue
            self.ownership.homes[partial.model] = origin.partition
        return bad

    def aggregated(self) -> list[ClosedWindow]:
        """The owned models' windows that are complete, merged and evaluated."""
        closed = []
        for model_id, aggregate in self.aggregates.items():
            evaluated = aggregate.due()
            if evaluated:
                self.positions.changed.add(self.ownership.homes[model_id])
                closed += evaluated
        return closed

    def publish(self, partitions: Collection[int]) -> None:
        """The windows closed in ``partitions``, to their owners: before the partitions'
        state, which no longer holds them, is written."""
        if self.changelog is None:
            return
        sent = {part: part.partials(self.changelog.shape) for part in self._parts(partitions)}
        records = [partial for partials in sent.values() for partial in partials]
        if records:
            self.changelog.publish(records)
        for part, partials in sent.items():
            if partials:
                part.published_up_to(partials[-1])

    def snapshot(self, partitions: Collection[int], models: Collection[str]) -> dict[str, Any]:
        return {
            "parts": {part.judge.model_id: part.snapshot() for part in self._parts(partitions)},
            "aggregates": {m: a.snapshot() for m, a in self.aggregates.items() if m in models},
        }

    def restore(self, partition: int, state: Mapping[str, Any]) -> list[str]:
        """Restore a partition's parts and aggregates (older records have none); return
        the models aggregated here. Those of models that are no longer spread are left
        out: their windows would be published to no one."""
        parts, aggregates = state.get("parts", {}), state.get("aggregates", {})
        gone = sorted((parts.keys() | aggregates.keys()) - self.models)
        if gone:
            log.warning(
                "state of models no longer spread left out",
                extra={"models": gone, "partition": partition},
            )
        for model_id in parts.keys() & self.models:
            self._part(model_id, partition).restore(parts[model_id])
        owned = [model_id for model_id in aggregates if model_id in self.models]
        for model_id in owned:
            self._aggregate(model_id).restore(aggregates[model_id])
        return owned

    def forget(self, partitions: Collection[int], models: Collection[str]) -> None:
        for model_id in models:
            self.aggregates.pop(model_id, None)
        for part in self._parts(partitions):
            del self.parts[part.judge.model_id, part.partition]

    def _judge(self, model_id: str) -> ModelMonitor:
        """A spread model's monitor that its parts share: its pinned schema and grid (no
        state)."""
        judge = self._judges.get(model_id)
        if judge is None:
            judge = self._judges[model_id] = self._monitor(model_id)
        return judge

    def _monitor(self, model_id: str) -> ModelMonitor:
        """A spread model's monitor: its pinned schema, grid and reference."""
        settings = self.settings.for_model(model_id)
        return ModelMonitor(model_id, settings, self.reference[model_id])

    def _part(self, model_id: str, partition: int) -> Part:
        part = self.parts.get((model_id, partition))
        if part is None:
            part = self.parts[model_id, partition] = Part(self._judge(model_id), partition)
        return part

    def _parts(self, partitions: Collection[int]) -> list[Part]:
        return [part for (_, p), part in self.parts.items() if p in partitions]

    def _aggregate(self, model_id: str) -> Aggregate:
        aggregate = self.aggregates.get(model_id)
        if aggregate is None:
            assert self.changelog is not None
            timeout = self.settings.state.aggregate_timeout
            # Its own monitor: the outcome reference and sequential detectors are its.
            monitor = self._monitor(model_id)
            aggregate = Aggregate(monitor, self.changelog.partitions, timeout)
            self.aggregates[model_id] = aggregate
        return aggregate
