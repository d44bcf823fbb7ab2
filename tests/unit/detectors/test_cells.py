"""Probability cells: counted as the pipeline counts them, merged exactly, bounded."""

from __future__ import annotations

import msgspec
import numpy as np

from streamwatch.detectors.cells import RESOLUTION, Cells, distributions


def classes(*names: str | None) -> np.ndarray:
    return np.array(names, dtype=np.object_)


def test_merging_two_parts_counts_as_the_whole_even_as_columns_grow() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], 400)
    outputs = {f"probability[{c}]": p[:, i] for i, c in enumerate("abc")}
    names = classes(*rng.choice(list("abc"), 400))
    whole = Cells()
    whole.add(names, outputs)
    first, second = Cells(), Cells()
    first.add(names[:200], {k: v[:200] for k, v in outputs.items() if k != "probability[c]"})
    second.add(names[200:], {k: v[200:] for k, v in outputs.items()})
    first.merge(second)
    assert first.columns == ["probability[a]", "probability[b]", "probability[c]"]
    assert first.n == whole.n == 400
    # The first part had no column c: its vectors read 0 there, as a NaN would.
    missing = dict(outputs)
    missing["probability[c]"] = np.where(np.arange(400) < 200, np.nan, p[:, 2])
    expected = Cells()
    expected.add(names, missing)
    assert first.counts == expected.counts
    kept, _, counts = whole.arrays()
    assert counts.sum() == 400
    assert np.abs(kept * RESOLUTION - np.round(kept * RESOLUTION)).max() < 1e-9


def test_a_snapshot_round_trips() -> None:
    cells = Cells()
    cells.add(classes("1", "0", None), {"score": np.array([0.91, 0.1, np.nan])})
    restored = Cells.restore(msgspec.json.decode(msgspec.json.encode(cells.snapshot())))
    assert restored.counts == cells.counts
    assert restored.n == 2  # an event without a score is not counted


def test_class_names_past_the_bound_count_as_unknown() -> None:
    cells = Cells(max_classes=2)
    cells.add(classes("a", "b", "c", "d"), {"score": np.full(4, 0.5)})
    other = Cells(max_classes=2)
    other.add(classes("e"), {"score": np.array([0.5])})
    cells.merge(other)
    assert {name for name, _ in cells.counts} == {"a", "b", ""}
    assert cells.n == 5


def test_distributions_read_a_score_as_the_positive_class_probability() -> None:
    cells = Cells()
    cells.add(classes("yes", "no"), {"score": np.array([0.8, 0.3])})
    read = distributions(cells, ["no", "yes"], "yes")
    assert read is not None
    probabilities, index, _ = read
    np.testing.assert_allclose(probabilities, [[0.7, 0.3], [0.2, 0.8]])
    assert index.tolist() == [0, 1]
    assert distributions(cells, ["no", "yes", "maybe"], "yes") is None  # not binary


def test_distributions_renormalise_class_probabilities_over_the_classes() -> None:
    cells = Cells()
    outputs = {"probability[a]": np.array([0.5]), "probability[b]": np.array([0.3])}
    cells.add(classes("a"), outputs)
    read = distributions(cells, ["a", "b", "c"], "1")
    assert read is not None
    np.testing.assert_allclose(read[0], [[0.625, 0.375, 0.0]])
