"""Which model ids are watched, and when an idle one is let go.

Model ids come from producers, so junk ids (a bug, a test, an attack) must not take the
place of real models for good:

- ``WATCH`` (or ``MODELS`` given as a list, as before models had settings of their own),
  when set, is the allow-list: events of other ids are bad (``model_unknown``) and never
  take a slot. A model's own settings (``MODELS__<MODEL>__...``) do not list it.
- ``MAX_MODELS`` slots: an id seen when they are all taken is bad (``model_limit``).
  Nothing active is ever pushed out to make room, so a flood of new ids cannot cost a
  model that is sending events its windows or its reference.
- ``MODEL_IDLE_TTL``: a model with no event for that long is let go, and its slot comes
  back. Idle is measured in event time, against the newest event the engine has seen
  (of any model), not against the wall clock: a replay of last month is not idle, and a
  daemon that was down for a day does not let every model go on restart. (Partitions
  far apart in event time, one catching up days behind the others, can make its models
  look idle: the default TTL of a week leaves room for that.) A model let go has its
  open windows closed and evaluated, so that they are recorded and alert as any other
  (model.py); then its state goes.

A flood of 100,000 ids, each seen once, therefore fills the free slots and dead-letters
the rest; once the clock has moved one TTL past the flood, its ids are let go (their
windows, still pooling a reference that goes with them, are dropped unjudged) and the
slots are free again. The models that kept sending events keep theirs throughout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from streamwatch.events import BadEvent, Decoded

if TYPE_CHECKING:
    from streamwatch.config import Settings
    from streamwatch.pipeline.monitor import ModelMonitor

log = logging.getLogger("streamwatch.admission")


class Admission:
    """The allow-list, and the event-time clocks that tell idle models."""

    def __init__(self, settings: Settings) -> None:
        # Spread models are named in the settings: allowed without being listed twice.
        listed = set(settings.watch)
        self.allowed = frozenset(listed | set(settings.state.spread_models)) if listed else None
        self.ttl = settings.model_idle_ttl
        self.newest = -math.inf  # event time
        self.retired: list[str] = []  # let go in the last batch (their alerts: forgotten next)

    def known(self, decoded: Decoded, bad: list[BadEvent]) -> Decoded:
        """The events of allowed models; the others become ``model_unknown`` in ``bad``."""
        allowed, columns = self.allowed, decoded.columns
        unknown = [] if allowed is None else [m not in allowed for m in columns.models]
        if not any(unknown):
            return decoded
        refused = np.array(unknown)[columns.model]
        for i in np.flatnonzero(refused):
            model_id = columns.models[columns.model[i]]
            detail = f"model {model_id!r} is not in STREAMWATCH_WATCH"
            bad.append(columns.bad(i, "model_unknown", detail))
        return decoded.take(np.flatnonzero(~refused))

    def seen(self, monitor: ModelMonitor) -> None:
        """A batch of the model's events processed: the clock moves with them."""
        self.newest = max(self.newest, monitor.last_event)

    def idle(self, models: Mapping[str, ModelMonitor]) -> list[str]:
        """The models with no event for a TTL, to let go."""
        newest, idle = self.newest, list[str]()
        if newest == -math.inf:
            return idle
        for model_id, monitor in models.items():
            if newest - monitor.last_event >= self.ttl:
                idle.append(model_id)
        if idle:
            log.info(
                "idle models let go",
                extra={"models": idle[:20], "count": len(idle), "idle_ttl": self.ttl},
            )
        return idle
