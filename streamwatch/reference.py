"""A pinned reference: a JSONL file of events standing for "normal" for each model.

Without one, each model's first closed windows become its reference (see ``model.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from streamwatch.batch import Batch, Schema
from streamwatch.config import Settings
from streamwatch.errors import ConfigError
from streamwatch.events import decode_batch
from streamwatch.route import route
from streamwatch.sources.replay import ReplaySource

log = logging.getLogger("streamwatch.reference")


@dataclass(frozen=True, slots=True)
class Pinned:
    """One model's reference events as columns, with the schema they were read with."""

    schema: Schema
    batch: Batch


def load_reference(path: Path, settings: Settings) -> dict[str, Pinned]:
    """Read a reference file into columns per model; bad lines are skipped and counted."""
    source = ReplaySource([path])
    schemas: dict[str, Schema] = {}
    parts: dict[str, list[Batch]] = {}
    bad = 0
    while (messages := source.poll(10_000)) is not None:
        decoded = decode_batch(messages, settings.max_message_bytes)
        bad += len(decoded.bad)
        for model_id, events in route(decoded.events).items():
            if events.predictions:
                schema = schemas.setdefault(model_id, Schema.of(model_id, settings))
                parts.setdefault(model_id, []).append(schema.build(events.predictions))
    if bad:
        log.warning("reference file has bad lines", extra={"path": str(path), "bad": bad})
    if not parts:
        raise ConfigError(f"reference file {path} holds no prediction events")
    return {m: Pinned(schemas[m], Batch.concat(batches)) for m, batches in parts.items()}
