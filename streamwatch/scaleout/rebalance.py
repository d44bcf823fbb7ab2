"""Rebalance: partitions assigned, revoked or lost, and the sources' hooks for them.

Alone, a revocation checkpoints and nothing else moves: the state is all there is, and
its partitions come back to this instance. Scaled out, each partition's state comes
(from the state file or the changelog, whichever covers more) and goes with it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

import msgspec

from streamwatch.events import Offsets
from streamwatch.observe.health import Health
from streamwatch.sources import Hooks
from streamwatch.state.checkpointer import Checkpointer
from streamwatch.state.store import StateStore, copies, covers, partition_scope

if TYPE_CHECKING:
    pass

log = logging.getLogger("streamwatch.engine")


class Rebalance:
    def __init__(self, checkpointer: Checkpointer, health: Health) -> None:
        self.checkpointer = checkpointer
        self.changelog = checkpointer.changelog
        self.positions = checkpointer.positions
        self.ownership = checkpointer.ownership
        self.processor = checkpointer.processor
        self.spread = checkpointer.spread
        self.conclusion = checkpointer.conclusion
        self.health = health

    def hooks(self, store: StateStore) -> Hooks:
        """What the Kafka source calls when partitions move."""
        if self.changelog is None:
            # A single instance keeps its state when it falls out of the group (the
            # default ``lost``): it is all there is, and its partitions come back to it.
            return Hooks(
                positions=lambda: self.positions.next,
                revoked=lambda partitions: self.checkpointer.checkpoint(store),
            )
        return Hooks(
            positions=lambda: self.positions.next,
            revoked=lambda partitions: self.release(partitions, store),
            assigned=lambda partitions: self.acquire(partitions, store),
            lost=lambda partitions: self.lose(partitions, store),
            partitioned=True,
        )

    def acquire(self, partitions: Collection[int], store: StateStore) -> Offsets:
        """Partitions assigned: restore each one's state from the state file or the
        changelog, whichever covers more; return the positions to resume from."""
        assert self.changelog is not None
        held = self.positions.held() | set(self.ownership.homes.values())
        new = sorted(set(partitions) - held)
        remote = self.changelog.read(new)
        if self.spread.models:  # partials are read from the start (not AUTO_OFFSET_RESET)
            topic = self.spread.settings.state.partials_topic
            self.positions.update({(topic, p): 0 for p in new})  # unless restored below
        for partition in new:
            local, logged = copies(store, partition, remote.get(partition))
            if local is not None and (logged is None or covers(local.offsets, logged[1])):
                state, offsets, origin = local.state, local.offsets, "state file"
                if logged is None or logged[1] != offsets:
                    self.positions.changed.add(partition)  # the changelog is behind: catch up
            elif logged is not None:
                state, offsets = msgspec.msgpack.decode(logged[0]), logged[1]
                origin = "changelog"
                store.save_scopes({partition_scope(partition): logged})  # the local copy
            else:
                continue
            self.checkpointer.restore(state, offsets)
            aggregates = self.spread.restore(partition, state)
            self.ownership.homes.update(dict.fromkeys([*state["models"], *aggregates], partition))
            log.info(
                "partition restored",
                extra={"partition": partition, "from": origin, "models": sorted(state["models"])},
            )
        self.health.restored = True
        return dict(self.positions.next)

    def release(self, partitions: Collection[int], store: StateStore) -> Offsets:
        """Partitions revoked: checkpoint them, then let their state go; return their
        offsets that are durable (to commit)."""
        # Their notifications go with their state, sent by the next owner alone: none
        # released here, none sent after the state says what was.
        self.conclusion.leaving(self.ownership.models(partitions) or ())
        durable = self.checkpointer.checkpoint(store, partitions)
        # Where the changelog has them now, a copy here would only mislead ``status``.
        changed = self.positions.changed
        store.drop([partition_scope(p) for p in partitions if p not in changed])
        self._forget(partitions)
        return {tp: o for tp, o in durable.items() if tp[1] in partitions}

    def lose(self, partitions: Collection[int], store: StateStore) -> Offsets:
        """Partitions lost (this instance fell out of the group, and another owns them
        now): let their state go unsaved, since writing it would overwrite the new
        owner's newer state in the changelog."""
        self.conclusion.dispatcher.hold_back(self.ownership.models(partitions) or ())
        store.drop([partition_scope(p) for p in partitions])
        self._forget(partitions)
        return {}

    def _forget(self, partitions: Collection[int]) -> None:
        models = self.ownership.models(partitions) or []
        for model_id in models:
            del self.ownership.homes[model_id]
        self.processor.forget(models)
        self.spread.forget(partitions, models)
        self.conclusion.left(models)
        self.positions.forget(partitions)
