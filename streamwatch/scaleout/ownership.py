"""Ownership: which events are this instance's, and which state scope holds each model.

Alone (one instance), everything is home and the state is one scope. Scaled out (a
changelog), a model's state lives with the partition its events come through, and is
saved, moved and restored with it; a spread model's parts are kept per partition and
its aggregate with the partition of the partials topic it is keyed to (spread.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

import numpy as np

from streamwatch.events import BadEvent, Decoded


class Ownership(Protocol):
    homes: dict[str, int]  # model -> the partition whose state holds it (scaled out)

    def admit(self, decoded: Decoded, bad: list[BadEvent]) -> Decoded:
        """The events this instance keeps; the others added to ``bad``."""
        ...

    def due(self, changed: Collection[int], partitions: Collection[int] | None) -> list[int] | None:
        """The partitions to checkpoint of ``changed`` (of ``partitions`` if given);
        ``None``: the whole state, one scope."""
        ...

    def models(self, partitions: Collection[int] | None) -> list[str] | None:
        """The models whose state lives with ``partitions``; ``None``: every model."""
        ...

    def partitions(self, models: Iterable[str]) -> set[int]:
        """The partitions whose state holds ``models`` (none alone: it is one scope)."""
        ...


class Alone:
    """One instance: every event is home, and the state is one scope."""

    def __init__(self) -> None:
        self.homes: dict[str, int] = {}  # stays empty

    def admit(self, decoded: Decoded, bad: list[BadEvent]) -> Decoded:
        return decoded

    def due(self, changed: Collection[int], partitions: Collection[int] | None) -> None:
        return None

    def models(self, partitions: Collection[int] | None) -> None:
        return None

    def partitions(self, models: Iterable[str]) -> set[int]:
        return set()


class Partitioned:
    """Scaled out: a model is kept with the first partition its events come through;
    its events through another are bad (keyed by something else than their model id),
    but a spread model's, which are kept in parts per partition."""

    def __init__(self, spread: frozenset[str], limit: int) -> None:
        self.homes: dict[str, int] = {}
        self.spread = spread
        self.limit = limit

    def admit(self, decoded: Decoded, bad: list[BadEvent]) -> Decoded:
        columns, homes = decoded.columns, self.homes
        partition = columns.polled.partition_of()[columns.at]
        away = np.zeros(columns.n, np.bool_)
        for model_id, rows in columns.rows_by_model().items():
            if model_id in self.spread:
                continue
            home = homes.get(model_id)
            if home is None and len(homes) < self.limit:  # past it: a model_limit dead letter
                home = homes[model_id] = int(partition[rows[0]])
            if home is None:
                continue
            elsewhere = rows[partition[rows] != home]
            away[elsewhere] = True
            detail = (
                f"model {model_id!r} is kept with partition {home}: key its events by "
                "model id, so that they all come through one partition"
            )
            bad += [columns.bad(i, "model_spread", detail) for i in elsewhere]
        return decoded.take(np.flatnonzero(~away)) if away.any() else decoded

    def due(self, changed: Collection[int], partitions: Collection[int] | None) -> list[int]:
        return sorted(changed if partitions is None else set(changed) & set(partitions))

    def models(self, partitions: Collection[int] | None) -> list[str]:
        if partitions is None:
            return list(self.homes)
        return [m for m, home in self.homes.items() if home in partitions]

    def partitions(self, models: Iterable[str]) -> set[int]:
        return {self.homes[m] for m in models if m in self.homes}
