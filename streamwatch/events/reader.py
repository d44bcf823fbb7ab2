"""Arrow's JSON reader, reading a whole batch of messages into one struct array.

Each message is read wrapped as ``{"m": <message>}`` on a line of its own: a message that
is not one JSON value fails the whole read (the caller then splits the batch), and a
message holding a line break is refused before reading, so that row *i* is message *i*.

Inferring a batch's shape would let a flood of new names build a table of every event
by every name (100,000 names in a 5,000-event batch: 9 GB). So a batch is read with the
shape learned so far, and fails on anything else; only small parts of a failed batch
(``SMALL_PART`` messages, ``SMALL_PART_BYTES`` at most) are read by inference, and what
they bring teaches the shape, up to ``MAX_NAMES`` names; past that (a flood of names),
the shape is learned anew from what comes next.

Arrow's reader recurses without a limit of its own: a message opening many brackets is
left to the exact path, whose decoder has one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from streamwatch.events.columns import IntArray

# Brackets a message may open and still be read by Arrow (whose reader crashes at some
# ten thousand levels); msgspec refuses a thousand (``too_deep``), so more go to it.
MAX_OPENINGS = 512
SMALL_PART = 16  # messages
SMALL_PART_BYTES = 256 * 1024
MAX_NAMES = 1024  # in the learned shape, at every level together
MAX_LEARNED_DEPTH = 8  # objects nested deeper are not learned (such messages: small parts)
_OPTIONS = pj.ReadOptions(use_threads=True, block_size=1 << 20)
_INFER = pj.ParseOptions(unexpected_field_behavior="infer")
# Fields whose integers stay integers; elsewhere (features, outputs) a number is a float.
_KEEP_INTEGERS = frozenset({"event_id", "model_version", "segments"})


def too_deep(raws: Sequence[bytes], lengths: IntArray) -> IntArray:
    """Positions of messages that may nest deeper than Arrow's reader should go: those
    opening ``MAX_OPENINGS`` brackets or more (only a message that long can)."""
    long = np.flatnonzero(lengths >= MAX_OPENINGS)
    openings = (raws[i].count(b"{") + raws[i].count(b"[") for i in long.tolist())
    return long[np.fromiter(openings, np.intp, len(long)) >= MAX_OPENINGS]


class Reader:
    """Reads batches with the shape it has learned (see the module's docstring)."""

    def __init__(self) -> None:
        self.shape = pa.struct([])
        self.names = 0
        self._strict = self._options()

    def read(self, raws: Sequence[bytes]) -> pa.StructArray | None:
        """The messages as one struct array, a row each; ``None`` where Arrow cannot read
        them so (one is not JSON, or not of the shape, or not a row like the others)."""
        body = b'}\n{"m":'.join(raws)
        if body.count(b"\n") != len(raws) - 1:
            return None  # a message holds a line break
        if not body.isascii():
            try:
                body.decode()
            except UnicodeDecodeError:
                return None
        small = len(raws) <= SMALL_PART and len(body) <= SMALL_PART_BYTES
        try:
            table = pj.read_json(
                io.BytesIO(b'{"m":' + body + b"}"),
                read_options=_OPTIONS,
                parse_options=_INFER if small else self._strict,
            )
            if table.num_rows != len(raws) or table.column_names != ["m"]:
                return None
            rows = table.column(0).combine_chunks()  # which Arrow cannot always do
        except (pa.ArrowException, ValueError):
            return None
        if not pa.types.is_struct(rows.type):
            return None
        if small:
            self._learn(rows.type)
        return rows

    def _learn(self, shape: pa.StructType) -> None:
        if self.names >= MAX_NAMES:
            self.shape, self.names = pa.struct([]), 0
        merged = _merge(self.shape, shape, self, depth=0, keep_integers=False)
        if merged != self.shape:
            self.shape = merged
            self._strict = self._options()

    def _options(self) -> pj.ParseOptions:
        schema = pa.schema([("m", self.shape)])
        return pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")


def _merge(
    known: pa.StructType, seen: pa.StructType, reader: Reader, depth: int, keep_integers: bool
) -> pa.StructType:
    fields = {f.name: f.type for f in known}
    for field in seen if depth < MAX_LEARNED_DEPTH else ():
        kind = field.type
        integers = keep_integers or (depth == 0 and field.name in _KEEP_INTEGERS)
        if pa.types.is_int64(kind) and not integers:
            kind = pa.float64()  # 1 now, 1.5 later: read both as numbers
        old = fields.get(field.name)
        if old is None:
            if reader.names >= MAX_NAMES:
                continue
            reader.names += 1
            old = pa.struct([]) if pa.types.is_struct(kind) else kind
        if pa.types.is_null(old) or (pa.types.is_int64(old) and pa.types.is_float64(kind)):
            old = kind
        if pa.types.is_struct(old) and pa.types.is_struct(kind):
            old = _merge(old, kind, reader, depth + 1, integers)
        fields[field.name] = old
    return pa.struct([pa.field(name, kind) for name, kind in fields.items()])
