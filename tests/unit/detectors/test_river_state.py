"""The river detectors' state as data: a round trip through msgpack gives a detector that
behaves identically on what follows, and anything else is refused."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import numpy as np
import pytest

from streamwatch.config import ConceptDriftSettings
from streamwatch.detectors import river_state
from streamwatch.detectors.concept import Sequential
from streamwatch.errors import StateError
from streamwatch.join import Joined


def misses(seed: int, n: int, rates: tuple[float, ...]) -> list[int]:
    """0/1 errors, ``n`` at each error rate in turn: a change at each boundary."""
    rng = np.random.default_rng(seed)
    return [int(e) for rate in rates for e in rng.random(n) < rate]


def absolute_errors(seed: int, n: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [*np.abs(rng.normal(0, 1, n)).tolist(), *np.abs(rng.normal(0, 3, n)).tolist()]


def feed(detector: Any, errors: list[Any]) -> list[int]:
    """Where ``detector`` finds changes in ``errors``."""
    found = []
    for i, error in enumerate(errors):
        detector.update(error)
        if detector.drift_detected:
            found.append(i)
    return found


def through_msgpack(state: dict[str, Any]) -> Any:
    return msgspec.msgpack.decode(msgspec.msgpack.encode(state))


STREAMS: dict[str, list[Any]] = {
    "adwin": misses(1, 3000, (0.1, 0.4, 0.1, 0.5)),
    "page_hinkley": absolute_errors(2, 3000),
    "ddm": misses(3, 2000, (0.1, 0.5, 0.1, 0.6)),
    "eddm": misses(4, 2000, (0.05, 0.4, 0.05, 0.5)),
}


@pytest.mark.parametrize("kind", sorted(river_state.KINDS))
def test_restored_detectors_behave_identically_on_what_follows(kind: str) -> None:
    stream = STREAMS[kind]
    whole = feed(river_state.KINDS[kind](), stream)
    assert len(whole) >= 2, "the stream must change after each cut"
    # Cut before, between and right at the changes found (a drift flag pending).
    for cut in (len(stream) // 5, whole[0] + 1, len(stream) // 2 + 7):
        original = river_state.KINDS[kind]()
        feed(original, stream[:cut])
        state = river_state.snapshot(kind, original)
        restored = river_state.restore(kind, through_msgpack(state))
        assert river_state.snapshot(kind, restored) == state
        assert restored.drift_detected == original.drift_detected
        rest = stream[cut:]
        assert feed(restored, rest) == feed(original, rest)
        assert river_state.snapshot(kind, restored) == river_state.snapshot(kind, original)


def test_adwin_restored_holds_the_very_same_window() -> None:
    adwin = river_state.KINDS["adwin"]()
    feed(adwin, STREAMS["adwin"][:5000])
    restored = river_state.restore("adwin", through_msgpack(river_state.snapshot("adwin", adwin)))
    assert restored._helper.__getstate__() == adwin._helper.__getstate__()
    assert (restored.width, restored.estimation, restored.variance) == (
        adwin.width,
        adwin.estimation,
        adwin.variance,
    )


def test_adwin_on_regression_errors_round_trips() -> None:
    stream = absolute_errors(5, 2000)
    original = river_state.KINDS["adwin"]()
    feed(original, stream[:2500])
    restored = river_state.restore(
        "adwin", through_msgpack(river_state.snapshot("adwin", original))
    )
    assert feed(restored, stream[2500:]) == feed(original, stream[2500:])


def test_a_fresh_detector_round_trips() -> None:
    for kind, make in river_state.KINDS.items():
        state = river_state.snapshot(kind, make())
        assert (
            river_state.snapshot(kind, river_state.restore(kind, through_msgpack(state))) == state
        )


def test_sequential_snapshot_is_plain_data_and_restores() -> None:
    settings = ConceptDriftSettings(detector="eddm")
    detector = Sequential(settings)
    rng = np.random.default_rng(6)
    n = 3000
    label = rng.integers(0, 2, n)
    wrong = rng.random(n) < np.where(np.arange(n) < 1500, 0.05, 0.5)
    joined = Joined(
        np.arange(n) // 500,
        np.where(wrong, 1 - label, label).astype(str).astype(object),
        np.full(n, np.nan),
        label.astype(object),
        np.zeros(n),
    )
    detector.update(joined.take(np.arange(2000)), regression=False)
    encoded = msgspec.msgpack.encode(detector.snapshot())
    assert msgspec.msgpack.decode(encoded) == detector.snapshot()
    restored = Sequential(settings)
    restored.restore(msgspec.msgpack.decode(encoded))
    assert restored.changes == detector.changes
    tail = joined.take(np.arange(2000, n))
    detector.update(tail, regression=False)
    restored.update(tail, regression=False)
    assert restored.changes == detector.changes


# -- refused -----------------------------------------------------------------------


def adwin_state() -> dict[str, Any]:
    adwin = river_state.KINDS["adwin"]()
    feed(adwin, STREAMS["adwin"][:700])
    return through_msgpack(river_state.snapshot("adwin", adwin))  # type: ignore[no-any-return]


def changed(state: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(state)
    out.update(fields)
    return out


def without(state: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != name}


def refused_states() -> list[tuple[str, object]]:
    good = adwin_state()
    buckets = good["buckets"]
    return [
        ("bytes", b"\x80\x04\x95"),
        ("a list", [good]),
        ("no version", without(good, "version")),
        ("version 2", changed(good, version=2)),
        ("version true", changed(good, version=True)),
        ("another kind", changed(good, kind="ddm")),
        ("an unknown field", changed(good, extra=1)),
        ("a missing field", without(good, "tick")),
        ("a string for a number", changed(good, total="1.0")),
        ("bytes for the buckets", changed(good, buckets=b"\x00" * 64)),
        ("a bucket entry of three", changed(good, buckets=[[[1.0, 0.0, 0.0]], *buckets[1:]])),
        (
            "an over-full level",  # the width made to agree
            changed(
                good,
                buckets=[[[1.0, 0.0]] * 6, *buckets[1:]],
                width=good["width"] + 6 - len(buckets[0]),
            ),
        ),
        ("no level", changed(good, buckets=[])),
        ("an empty last level", changed(good, buckets=[*buckets, []])),
        ("a width the buckets do not add to", changed(good, width=good["width"] + 1)),
        ("an infinite total", changed(good, total=float("inf"))),
        ("a negative counter", changed(good, tick=-1)),
        ("a counter beyond i32", changed(good, n_detections=2**31)),
        ("65 levels", changed(good, buckets=[[[1.0, 0.0]]] * 65, width=2.0**65 - 1)),
    ]


@pytest.mark.parametrize(("what", "state"), refused_states(), ids=lambda v: str(v)[:40])
def test_anything_but_the_exact_shape_is_refused(what: str, state: object) -> None:
    with pytest.raises(StateError, match="refused"):
        river_state.restore("adwin", state)


def test_other_detectors_refuse_inconsistent_fields() -> None:
    ddm = through_msgpack(river_state.snapshot("ddm", river_state.KINDS["ddm"]()))
    with pytest.raises(StateError):
        river_state.restore("ddm", changed(ddm, p_min=0.1))  # s_min still unset
    eddm = through_msgpack(river_state.snapshot("eddm", river_state.KINDS["eddm"]()))
    with pytest.raises(StateError):
        river_state.restore("eddm", changed(eddm, last_error=5))  # beyond n
    ph = through_msgpack(river_state.snapshot("page_hinkley", river_state.KINDS["page_hinkley"]()))
    with pytest.raises(StateError):
        river_state.restore("page_hinkley", changed(ph, n=-1.0))


def test_sequential_refuses_the_pickled_state_of_older_versions() -> None:
    settings = ConceptDriftSettings(detector="adwin")
    with pytest.raises(StateError, match="refused"):
        Sequential(settings).restore({"detector": b"\x80\x04\x95...", "changes": []})
    with pytest.raises(StateError, match="malformed"):
        Sequential(settings).restore({"detector": adwin_state(), "changes": [[1, "2"]]})
