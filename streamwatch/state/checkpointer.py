"""The checkpointer: what is processed becomes durable, in numbered steps, and comes
back on restore.

Alone, the state is one scope, written to the state file. Scaled out, each changed
partition's state is a scope, written to the state file and then to the changelog; a
partition stays changed (its offsets uncommitted) until the changelog has it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from streamwatch.errors import ChangelogError
from streamwatch.events import Offsets
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.processor import Processor
from streamwatch.state.store import ENGINE, StateStore, encode, partition_scope

if TYPE_CHECKING:
    pass

log = logging.getLogger("streamwatch.engine")


class Checkpointer:
    def __init__(self, processor: Processor, metrics: Metrics) -> None:
        self.processor = processor
        self.positions = processor.positions
        self.ownership = processor.ownership
        self.spread = processor.spread
        self.conclusion = processor.conclusion
        self.changelog = processor.spread.changelog
        self.metrics = metrics
        self.at: float | None = None  # monotonic time of the last checkpoint
        metrics.checkpoint_age.set_function(self._age)

    def checkpoint(self, store: StateStore, partitions: Collection[int] | None = None) -> Offsets:
        """Write what was processed (scaled out: of the partitions changed since their
        last checkpoint, or of those of ``partitions``); return the offsets that are
        durable, to commit."""
        started = time.monotonic()
        self.sent()  # a partition's state carries its notifications until sent
        due = self.ownership.due(self.positions.changed, partitions)  # None: the whole
        closed = self.conclusion.closed or []
        try:
            # 1. The spread models' windows closed in these partitions, to their owners:
            #    before the partitions' state, which no longer holds them, is written.
            self.spread.publish(due or ())
            # 2. Their state and the closed windows' history, to the state file.
            states = self.states(due)
            store.save_scopes(states, closed=closed, lag=self.metrics.lags())
            closed.clear()
            # 3. To the changelog, if there is one.
            if self.changelog is not None and due is not None:
                self.changelog.write({p: states[partition_scope(p)] for p in due})
        except ChangelogError as exc:
            log.warning(
                "offsets not committed: the changelog write failed", extra={"error": str(exc)}
            )
        else:
            # 4. Durable: their notifications may go, their offsets be committed.
            self.positions.saved(due)
            self.conclusion.release(self.ownership.models(due))
        self.at = time.monotonic()
        self.metrics.checkpoint_seconds.observe(self.at - started)
        return self.positions.durable()

    def states(self, partitions: list[int] | None) -> dict[str, tuple[bytes, Offsets]]:
        """Each scope's state, encoded, and the offsets it covers."""
        if partitions is None:
            return {ENGINE: (encode(self.state(None)), self.positions.of(None))}
        return {
            partition_scope(p): (encode(self.state([p])), self.positions.of([p]))
            for p in partitions
        }

    def state(self, partitions: Collection[int] | None) -> dict[str, Any]:
        """The state of the models kept with ``partitions`` (``None``: the whole)."""
        models = self.ownership.models(partitions)
        return {
            "models": self.processor.snapshot(models),
            **self.conclusion.snapshot(models),
            **self.spread.snapshot(partitions or (), models or ()),
        }

    def restore(self, state: Mapping[str, Any], offsets: Mapping[tuple[str, int], int]) -> None:
        """Take on a checkpoint's state: the whole, or one partition's (beside the others
        held)."""
        self.processor.restore(state["models"])
        self.conclusion.restore(state)
        self.positions.update(offsets)

    def sent(self) -> bool:
        """Scaled out: mark changed the partitions of models with a notification sent
        since the last look (their state carries it no more); whether there are any."""
        partitions = self.ownership.partitions(self.conclusion.dispatcher.sent())
        self.positions.changed.update(partitions)
        return bool(partitions)

    def _age(self) -> float:
        return math.nan if self.at is None else time.monotonic() - self.at
