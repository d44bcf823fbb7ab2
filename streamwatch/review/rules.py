"""Which events of a batch the review rules select, and the measures they read.

A rule selects an event when every condition it sets holds; a rule that sets none
selects every event. An event selected by several rules is requested with the largest
of their shares as its probability. Everything is computed on the batch's columns at
once: a loop runs over rules and columns, never over events.

The measures a condition reads are per event, NaN where not measurable:

- ``score``: the binary classifier's score;
- ``margin``: the two likeliest classes' probabilities apart (``|2s - 1|`` from a score);
- ``entropy``: the class probabilities' entropy in bits;
- ``mahalanobis``: the squared distance to the reference's centre;
- ``out_of_range``: how many numeric features lie outside the reference's range, as data
  quality reads it: beyond its fine grid's outer edges, the reference sample's 1/128 and
  127/128 quantiles (:func:`ranges_of`; its extremes are single events' values, which
  no state keeps);
- ``unseen``: how many categorical features hold a category the reference has not seen.

Class probabilities are an event's ``probability[c]`` outputs where it has two or more
(missing ones are left out), else its score and one minus it.

>>> import numpy as np
>>> from streamwatch.batch import Batch, Columns
>>> from streamwatch.config import OutOfDistributionSettings, ReviewRule
>>> from streamwatch.detectors.ood import Mahalanobis
>>> scores = Columns({"score": np.array([0.1, 0.45, 0.55, 0.9])})
>>> batch = Batch(np.zeros(4), Columns(), scores)
>>> rules = {"uncertain": ReviewRule(score_between=(0.4, 0.6), share=0.5)}
>>> reference = Reference(Mahalanobis(OutOfDistributionSettings()), {}, None)
>>> matched = match(rules, batch, reference, firing=None)
>>> matched.probability.tolist()
[0.0, 0.5, 0.5, 0.0]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from streamwatch.batch import Batch, Columns, FloatArray, ObjectArray
from streamwatch.config import ReviewRule
from streamwatch.detectors.ood import Mahalanobis
from streamwatch.severity import Severity

BoolArray = NDArray[np.bool_]
PROBABILITY = "probability["


@dataclass(frozen=True, slots=True)
class Reference:
    """What out-of-distribution conditions compare with: the inputs' Mahalanobis fit
    (unfitted: ``mahalanobis`` never holds), each numeric feature's least and greatest
    value, and each categorical feature's categories (None: no reference yet, so
    ``unseen`` never holds)."""

    inputs: Mahalanobis
    ranges: Mapping[str, tuple[float, float]]
    seen: Mapping[str, Collection[str]] | None


@dataclass(frozen=True, slots=True)
class Matched:
    """What the rules made of a batch, per event.

    ``probability`` is the largest share of the rules that select an event (0 where
    none does); ``measures`` holds the measures the rules read (see :func:`measured`)."""

    probability: FloatArray
    selected_by: dict[str, BoolArray]
    measures: dict[str, FloatArray]


def ranges_of(edges: Mapping[str, FloatArray]) -> dict[str, tuple[float, float]]:
    """Each numeric feature's range: the outer edges of its fine grid."""
    return {name: (float(e[0]), float(e[-1])) for name, e in edges.items() if e.size}


def measured(rule: ReviewRule) -> list[str]:
    """The names of the measures a rule's conditions read, in a fixed order."""
    reads = {
        "score": rule.score_between is not None,
        "margin": rule.margin_below is not None,
        "entropy": rule.entropy_above is not None,
        "mahalanobis": rule.mahalanobis,
        "out_of_range": rule.out_of_range,
        "unseen": rule.unseen,
    }
    return [name for name, read in reads.items() if read]


def match(
    rules: Mapping[str, ReviewRule],
    batch: Batch,
    reference: Reference,
    firing: Severity | None,
) -> Matched:
    """The events each rule selects, and each event's probability of a request.

    ``firing`` is the worst severity of the model's alerts firing now (None: none)."""
    n = batch.n
    needed = {name for rule in rules.values() for name in measured(rule)}
    classes = _class_probabilities(batch.outputs, n) if needed & {"margin", "entropy"} else None
    measures: dict[str, FloatArray] = {}
    if "score" in needed:
        measures["score"] = batch.outputs.numeric.get("score", np.full(n, np.nan))
    if "margin" in needed:
        measures["margin"] = np.full(n, np.nan) if classes is None else _margin(classes)
    if "entropy" in needed:
        measures["entropy"] = np.full(n, np.nan) if classes is None else _entropy(classes)
    if "mahalanobis" in needed:
        measures["mahalanobis"] = _distances(reference.inputs, batch.features, n)
    if "out_of_range" in needed:
        measures["out_of_range"] = _out_of_range(batch.features, reference.ranges, n)
    if "unseen" in needed:
        measures["unseen"] = _unseen(batch.features, reference.seen, n)
    probability = np.zeros(n)
    selected_by: dict[str, BoolArray] = {}
    for name, rule in rules.items():
        selected = selected_by[name] = _selects(rule, batch, measures, reference, firing)
        probability[selected] = np.maximum(probability[selected], rule.share)
    return Matched(probability, selected_by, measures)


def _selects(
    rule: ReviewRule,
    batch: Batch,
    measures: Mapping[str, FloatArray],
    reference: Reference,
    firing: Severity | None,
) -> BoolArray:
    """The events for which every condition the rule sets holds (comparisons with NaN
    are false: an event that cannot be measured is not selected by the measure)."""
    n = batch.n
    alerting = rule.while_alert is None or (
        firing is not None and firing.rank >= rule.while_alert.rank
    )
    selected = np.full(n, alerting)
    if rule.score_between is not None:
        low, high = rule.score_between
        selected &= (measures["score"] >= low) & (measures["score"] <= high)
    if rule.margin_below is not None:
        selected &= measures["margin"] < rule.margin_below
    if rule.entropy_above is not None:
        selected &= measures["entropy"] > rule.entropy_above
    if rule.mahalanobis:
        selected &= measures["mahalanobis"] > reference.inputs.threshold
    if rule.out_of_range:
        selected &= measures["out_of_range"] >= 1
    if rule.unseen:
        selected &= measures["unseen"] >= 1
    for name, category in rule.segments.items():
        selected &= _equals(batch.segments.categorical.get(name), category, n)
    for name, category in rule.features.items():
        selected &= _equals(batch.features.categorical.get(name), category, n)
    for name, value in rule.above.items():
        selected &= batch.features.numeric.get(name, np.full(n, np.nan)) > value
    for name, value in rule.below.items():
        selected &= batch.features.numeric.get(name, np.full(n, np.nan)) < value
    return selected


def _equals(column: ObjectArray | None, category: str, n: int) -> BoolArray:
    if column is None:
        return np.zeros(n, np.bool_)
    return np.asarray(column == category, dtype=np.bool_)


def _class_probabilities(outputs: Columns, n: int) -> FloatArray | None:
    """One row per event of its class probabilities, NaN where it has none: its
    ``probability[c]`` outputs where two or more are there, else ``score, 1 - score``.
    None when the model gives neither."""
    columns = [v for k, v in outputs.numeric.items() if k.startswith(PROBABILITY)]
    score = outputs.numeric.get("score")
    if not columns and score is None:
        return None
    rows = np.full((n, max(len(columns), 2)), np.nan)
    if columns:
        rows[:, : len(columns)] = np.column_stack(columns)
    if score is not None:
        by_score = np.count_nonzero(~np.isnan(rows), axis=1) < 2
        rows[by_score] = np.nan
        rows[by_score, 0] = score[by_score]
        rows[by_score, 1] = 1.0 - score[by_score]
    return rows


def _margin(rows: FloatArray) -> FloatArray:
    """The largest probability less the second largest; NaN with fewer than two."""
    # A missing probability counts as 0: with two present, it never changes the top two.
    ordered = np.sort(np.where(np.isnan(rows), 0.0, rows), axis=1)
    margin: FloatArray = ordered[:, -1] - ordered[:, -2]
    margin[np.count_nonzero(~np.isnan(rows), axis=1) < 2] = np.nan
    return margin


def _entropy(rows: FloatArray) -> FloatArray:
    """Entropy in bits (0 log 0 = 0); NaN with fewer than two probabilities."""
    logs = np.zeros_like(rows)
    np.log2(rows, out=logs, where=rows > 0)  # NaN and 0 keep their 0: no warning
    entropy: FloatArray = 0.0 - np.where(rows > 0, rows * logs, 0.0).sum(axis=1)
    entropy[np.count_nonzero(~np.isnan(rows), axis=1) < 2] = np.nan
    return entropy


def _distances(inputs: Mahalanobis, features: Columns, n: int) -> FloatArray:
    if not inputs.fitted or not features.numeric:
        return np.full(n, np.nan)  # no fit, or no numeric feature to place events by
    return inputs.distances(features)


def _out_of_range(
    features: Columns, ranges: Mapping[str, tuple[float, float]], n: int
) -> FloatArray:
    """How many numeric features lie outside the range, below its low edge or at or
    above its high one, as the grid's open-ended bins count them (missing values do not)."""
    count = np.zeros(n)
    for name, (low, high) in ranges.items():
        values = features.numeric.get(name)
        if values is not None:
            count += (values < low) | (values >= high)
    return count


def _unseen(features: Columns, seen: Mapping[str, Collection[str]] | None, n: int) -> FloatArray:
    """How many categorical features hold a category not seen; NaN without a reference."""
    if seen is None:
        return np.full(n, np.nan)
    count = np.zeros(n)
    for name, categories in seen.items():
        values = features.categorical.get(name)
        if values is None:
            continue
        known = frozenset(categories)
        # map with a set's own lookup runs in C: no Python code per event.
        is_known = np.fromiter(map(known.__contains__, values.tolist()), np.bool_, n)
        count += (values != None) & ~is_known  # noqa: E711
    return count
