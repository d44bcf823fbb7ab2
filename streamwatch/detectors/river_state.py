"""The state of river's change detectors (concept drift's options) as plain data.

Each detector's moving parts are written as named fields with a version, and read
back into a fresh detector of the same kind and parameters; what is not exactly that
shape is refused (:class:`StateError`), never interpreted. No detector needs its
errors replayed: every field is a number, a flag or (ADWIN) a list of buckets.

- ``page_hinkley``: the running mean and the four cumulative sums.
- ``ddm``: the running error rate and the minimum (p, s) seen.
- ``eddm``: the distances between errors (count, mean, sum of squares) and the counters.
- ``adwin``: its exponential histogram, bucket by bucket. river keeps it in Rust and
  exchanges it only as bincode bytes (``__getstate__``); those are translated here, field
  by field, to and from data, and the bytes read back are checked to be what was written.

>>> from river import drift
>>> adwin = drift.ADWIN()
>>> for x in [0, 1] * 50:
...     adwin.update(x)
>>> state = snapshot("adwin", adwin)
>>> state["version"], state["width"], [len(b) for b in state["buckets"]]
(1, 100.0, [4, 4, 4, 5, 2])
>>> restored = restore("adwin", state)
>>> restored._helper.__getstate__() == adwin._helper.__getstate__()
True
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import msgspec
from river import drift
from river.drift import binary

from streamwatch.errors import StateError

VERSION = 1

KINDS: dict[str, Callable[[], Any]] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
}

I32 = 2**31 - 1
MAX_LEVELS = 62  # a bucket of level i holds 2**i errors: far beyond any stream


class _State(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    kind: str
    drift_detected: bool


class PageHinkleyState(_State):
    n: float
    mean: float
    sum_increase: float
    sum_decrease: float
    min_increase: float
    max_decrease: float


class DDMState(_State):
    warning_detected: bool
    n: float
    mean: float
    p_min: float | None
    s_min: float | None
    ps_min: float


class EDDMState(_State):
    warning_detected: bool
    distances_n: float
    distances_mean: float
    distances_s: float
    n: int
    last_error: int
    n_errors: int
    p2s_prime_max: float


class AdwinState(_State):
    total: float
    variance: float
    width: float
    total_width: float
    n_buckets: int
    max_n_buckets: int
    tick: int
    n_detections: int
    buckets: list[list[tuple[float, float]]]  # per level, its (total, variance) entries


_TYPES: dict[str, type[_State]] = {
    "adwin": AdwinState,
    "page_hinkley": PageHinkleyState,
    "ddm": DDMState,
    "eddm": EDDMState,
}


def snapshot(kind: str, detector: Any) -> dict[str, Any]:
    """``detector``'s state as plain data (msgpack-able)."""
    d = detector
    head = {"version": VERSION, "kind": kind, "drift_detected": bool(d._drift_detected)}
    fields: dict[str, Any]
    match kind:
        case "page_hinkley":
            fields = {
                "n": float(d._x_mean.n),
                "mean": float(d._x_mean._mean),
                "sum_increase": float(d._sum_increase),
                "sum_decrease": float(d._sum_decrease),
                "min_increase": float(d._min_increase),
                "max_decrease": float(d._max_decrease),
            }
        case "ddm":
            fields = {
                "warning_detected": bool(d._warning_detected),
                "n": float(d._p.n),
                "mean": float(d._p._mean),
                "p_min": None if d._p_min is None else float(d._p_min),
                "s_min": None if d._s_min is None else float(d._s_min),
                "ps_min": float(d._ps_min),
            }
        case "eddm":
            distances = d._error_distances
            fields = {
                "warning_detected": bool(d._warning_detected),
                "distances_n": float(distances.mean.n),
                "distances_mean": float(distances.mean._mean),
                "distances_s": float(distances._S),
                "n": int(d._n),
                "last_error": int(d._last_error),
                "n_errors": int(d._n_errors),
                "p2s_prime_max": float(d._p2s_prime_max),
            }
        case "adwin":
            fields = _Bincode(d._helper.__getstate__()).read()
        case _:
            raise ValueError(f"{kind!r} is not a river change detector")
    return head | fields


def restore(kind: str, state: object) -> Any:
    """A fresh detector of ``kind`` (river's default parameters) holding ``state``;
    :class:`StateError` if ``state`` is not exactly what :func:`snapshot` writes."""
    where = f"concept drift's {kind} state"
    version = state.get("version") if isinstance(state, dict) else None
    if type(version) is not int or version != VERSION:
        found = f"version {version!r}" if isinstance(state, dict) else type(state).__name__
        raise StateError(f"{where} is not version {VERSION} data (found {found}); refused")
    try:
        s = msgspec.convert(state, _TYPES[kind], strict=True)
    except msgspec.ValidationError as exc:
        raise StateError(f"{where} is malformed ({exc}); refused") from None
    if s.kind != kind:
        raise StateError(f"{where} holds a {s.kind!r} detector's; refused")
    d = KINDS[kind]()
    d._drift_detected = s.drift_detected
    match s:
        case PageHinkleyState():
            _check(where, s.n >= 0 and math.isfinite(s.n) and s.n.is_integer())
            d._x_mean.n, d._x_mean._mean = s.n, s.mean
            d._sum_increase, d._sum_decrease = s.sum_increase, s.sum_decrease
            d._min_increase, d._max_decrease = s.min_increase, s.max_decrease
        case DDMState():
            _check(
                where, s.n >= 0 and math.isfinite(s.n) and (s.p_min is None) is (s.s_min is None)
            )
            d._warning_detected = s.warning_detected
            d._p.n, d._p._mean = s.n, s.mean
            d._p_min, d._s_min, d._ps_min = s.p_min, s.s_min, s.ps_min
        case EDDMState():
            _check(where, s.distances_n >= 0 and 0 <= s.last_error <= s.n and s.n_errors <= s.n)
            d._warning_detected = s.warning_detected
            distances = d._error_distances
            distances.mean.n, distances.mean._mean = s.distances_n, s.distances_mean
            distances._S = s.distances_s
            d._n, d._last_error, d._n_errors = s.n, s.last_error, s.n_errors
            d._p2s_prime_max = s.p2s_prime_max
        case AdwinState():
            fresh = _Bincode(d._helper.__getstate__())
            fresh.read()
            _check_adwin(where, s, fresh.max_buckets)
            d._helper.__setstate__(fresh.write(s))
    return d


def _check(where: str, ok: bool) -> None:
    if not ok:
        raise StateError(f"{where} has inconsistent fields; refused")


def _check_adwin(where: str, s: AdwinState, max_buckets: int) -> None:
    """What river's Rust code relies on (indexing that would panic otherwise): at least
    one level, none over-full, the last one not empty, and the width the buckets add up
    to."""
    levels = s.buckets
    finite = all(
        math.isfinite(x)
        for x in (s.total, s.variance, s.total_width, *(v for b in levels for e in b for v in e))
    )
    _check(
        where,
        finite
        and 1 <= len(levels) <= MAX_LEVELS
        and all(len(b) <= max_buckets for b in levels)
        and (len(levels) == 1 or len(levels[-1]) > 0)
        and s.width == sum(len(b) * 2.0**i for i, b in enumerate(levels))
        and all(0 <= n <= I32 for n in (s.n_buckets, s.max_n_buckets, s.tick, s.n_detections)),
    )


class _Bincode:
    """river's ``AdaptiveWindowing`` as bincode (serde's fixed-width little-endian): its
    parameters (``delta`` f64, ``clock`` i32, ``max_buckets`` u64, ``min_window_length``
    and ``grace_period`` f64), the window's sums (``total``, ``variance``, ``width``,
    ``total_width`` f64), four i32 counters, the bucket list (u64 length; per bucket
    ``max_size`` and ``current_idx`` u64, ``totals`` and ``variances`` as u64 length and
    f64s), then the Python wrapper's own copy of the parameters."""

    HEAD = struct.Struct("<diQdd")
    SUMS = struct.Struct("<ddddiiii")
    TAIL = struct.Struct("<diQii")
    U64 = struct.Struct("<Q")

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.max_buckets = 0

    def read(self) -> dict[str, Any]:
        """The fields of the bytes; RuntimeError if river's layout is not the one above
        (a river upgrade: pin the version this was written for)."""
        blob, at = self.blob, self.HEAD.size
        try:
            self.max_buckets = self.HEAD.unpack_from(blob)[2]
            *sums, n_buckets, max_n_buckets, tick, n_detections = self.SUMS.unpack_from(blob, at)
            at += self.SUMS.size
            (levels,), at = self.U64.unpack_from(blob, at), at + 8
            buckets = []
            for _ in range(levels):
                max_size, used = struct.unpack_from("<QQ", blob, at)
                at += 16
                columns = []
                for _ in range(2):
                    (length,) = self.U64.unpack_from(blob, at)
                    columns.append(struct.unpack_from(f"<{length}d", blob, at + 8))
                    at += 8 + 8 * length
                if max_size != self.max_buckets or any(len(c) != max_size + 1 for c in columns):
                    raise ValueError("a bucket of another size")
                buckets.append([(columns[0][i], columns[1][i]) for i in range(used)])
            self.TAIL.unpack_from(blob, at)
        except (struct.error, ValueError) as exc:
            raise RuntimeError(f"river's ADWIN state is not the layout expected: {exc}") from exc
        if at + self.TAIL.size != len(blob):
            raise RuntimeError("river's ADWIN state is not the layout expected: its length")
        total, variance, width, total_width = sums
        return {
            "total": total,
            "variance": variance,
            "width": width,
            "total_width": total_width,
            "n_buckets": n_buckets,
            "max_n_buckets": max_n_buckets,
            "tick": tick,
            "n_detections": n_detections,
            "buckets": [[list(e) for e in b] for b in buckets],
        }

    def write(self, s: AdwinState) -> bytes:
        """Bytes of ``s`` with the parameters of this (fresh) detector's bytes."""
        head, tail = self.blob[: self.HEAD.size], self.blob[-self.TAIL.size :]
        size = self.max_buckets + 1
        out = [
            head,
            self.SUMS.pack(
                s.total,
                s.variance,
                s.width,
                s.total_width,
                s.n_buckets,
                s.max_n_buckets,
                s.tick,
                s.n_detections,
            ),
        ]
        out.append(self.U64.pack(len(s.buckets)))
        for entries in s.buckets:
            totals = [t for t, _ in entries] + [0.0] * (size - len(entries))
            variances = [v for _, v in entries] + [0.0] * (size - len(entries))
            out.append(struct.pack("<QQ", self.max_buckets, len(entries)))
            out += [
                struct.pack(f"<Q{size}d", size, *totals),
                struct.pack(f"<Q{size}d", size, *variances),
            ]
        out.append(tail)
        return b"".join(out)
