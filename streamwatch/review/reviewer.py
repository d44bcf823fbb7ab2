"""One model's human review: which of its predictions are requested, and the verdicts.

Each event's chance of being requested is the largest share of the rules that select it
(rules.py), times a pace: ``REVIEW__MAX_PER_HOUR`` (less two standard deviations) over
the chances summed in the previous hour of event time, when they summed to more. It is
requested when its draw, fixed by its id (request.py), falls below that: the same events
whatever the batching, while the budget holds.

Within an hour of event time no more than the budget is requested. Where a batch's
draws would spend more, it goes to the highest priorities (chance over draw: the rules'
shares say what matters most, so give the uncertain a larger share than a baseline
sample), and each kept event's chance is divided by the priority of the first one left
out: priority sampling (Duffield, Lund and Thorup, 2007), whose chances stay known, so
that weighing verdicts by them stays unbiased. (Dropping the least uncertain instead
would leave a baseline sample's events a chance no one knows.) An hour's budget spent
before its end leaves its last events no chance: the pace keeps that rare, and the
``review`` finding's ``represented`` says how much of the window the weights account for.

A verdict is a label event with ``"source": "review"``. It joins the request it answers
(its prediction and its chance), never the label join: its window's tally weighs it by
its chance (estimate.py). The tally is reported as the window's ``review`` finding
``REVIEW__HORIZON`` after the window's end by the verdicts' own event time, whether or
not the model ever gets labels; verdicts after that are late.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamwatch.batch import Batch, FloatArray
from streamwatch.config import Settings
from streamwatch.detectors.base import Finding
from streamwatch.events import Event
from streamwatch.review.estimate import Tally, estimate
from streamwatch.review.request import ReviewRequest, uniforms
from streamwatch.review.rules import Reference, match, measured
from streamwatch.severity import Severity
from streamwatch.windows import IdArray, WindowBounds

HOUR = 3600.0
EARLY_HOURS = 24  # verdicts before their request: as many as a day's budget wait
NAME = "review"


@dataclass(slots=True)
class Counts:
    """What the reviewer did since it was last asked, for the metrics: requests by
    rule, verdicts by fate, and the share of the latest hour's budget used."""

    requested: dict[str, int] = field(default_factory=dict)
    over_budget: int = 0
    budget_used: float = 0.0
    joined: int = 0
    unsolicited: int = 0  # on an event never requested, answered already, or long forgotten
    late: int = 0  # its window was reported already


class Reviewer:
    def __init__(self, model_id: str, settings: Settings) -> None:
        self.model_id = model_id
        self.settings = settings.review
        self.labels = settings.labels
        redacted = set(settings.alerts.redact)
        self.features = [f for f in self.settings.features if f not in redacted]
        self.used: dict[int, int] = {}  # hour of event time -> requests made
        self.demand: dict[int, float] = {}  # hour -> chances summed (before the pace)
        # event id -> [window, prediction, chance, time]: requests awaiting their verdict
        # (prediction and chance None once answered; kept until their time-to-live).
        self.waiting: dict[str, list[Any]] = {}
        self.early: dict[str, list[Any]] = {}  # event id -> [label, time]: before a request
        self.tallies: dict[int, Tally] = {}  # window -> its verdicts
        self.closed_windows: dict[int, tuple[WindowBounds, int]] = {}  # and predictions
        self.reported_through = -1  # windows up to this one are reported
        self.latest = -math.inf  # the newest prediction's event time
        self.answered = -math.inf  # the newest verdict's
        self.counts = Counts()

    @property
    def enabled(self) -> bool:
        return bool(self.settings.rules)

    def select(
        self,
        batch: Batch,
        windows: IdArray,
        reference: Reference,
        firing: Severity | None,
        regression: bool,
        versions: Sequence[object] | None = None,
    ) -> list[ReviewRequest]:
        """The batch's events to request (its late events are not reviewed)."""
        if not self.enabled or batch.n == 0 or batch.event_ids is None:
            return []
        self.latest = max(self.latest, float(batch.event_time.max()))
        self._expire(self.latest)
        matched = match(self.settings.rules, batch, reference, firing)
        hours = np.floor(batch.event_time / HOUR).astype(np.int64)
        chance = matched.probability * self._pace(hours, matched.probability)
        open_ = (windows >= 0) & (chance > 0)
        if self.waiting:  # requested before: a dict lookup per id, in C (isin sorts them all)
            asked = map(self.waiting.__contains__, batch.event_ids.tolist())
            open_ &= ~np.fromiter(asked, np.bool_, batch.n)
        with np.errstate(divide="ignore"):  # a draw of 0: first in line
            priority = np.where(open_, chance / uniforms(self.model_id, batch.event_ids), 0.0)
        rows, threshold = self._within_budget(priority, hours)
        if rows.size == 0:
            return []
        chance = np.minimum(chance / threshold, 1.0)  # each one's chance, the budget's too
        predictions = _column(batch, "prediction", regression)
        requests = []
        for i in rows.tolist():
            rules = {
                name: {m: _plain(matched.measures[m][i]) for m in measured(rule)}
                for name, rule in self.settings.rules.items()
                if matched.selected_by[name][i]
            }
            for name in rules:
                self.counts.requested[name] = self.counts.requested.get(name, 0) + 1
            event_id, p = str(batch.event_ids[i]), float(chance[i])
            time = float(batch.event_time[i])
            self.waiting[event_id] = [int(windows[i]), _plain(predictions[i]), p, time]
            requests.append(
                ReviewRequest(
                    self.model_id,
                    event_id,
                    None if versions is None or versions[i] is None else str(versions[i]),
                    time,
                    int(windows[i]),
                    rules,
                    p,
                    {f: _feature(batch, f, i) for f in self.features if _has(batch, f)},
                )
            )
        answered = [
            (r.event_id, self.early.pop(r.event_id)[0])
            for r in requests
            if r.event_id in self.early
        ]
        self._join(answered)
        return requests

    def _pace(self, hours: np.ndarray, probability: FloatArray) -> FloatArray:
        """Each event's pace: the budget over its previous hour's demand (the chances it
        summed), at most 1."""
        unique, inverse = np.unique(hours, return_inverse=True)
        for hour in unique.tolist():
            self.demand[hour] = self.demand.get(hour, 0.0) + float(probability[hours == hour].sum())
        # Aimed two standard deviations below the budget: an hour the draws spend it all
        # gives its last events no chance at all.
        budget = max(self.settings.max_per_hour - 2 * math.sqrt(self.settings.max_per_hour), 1.0)
        paces = [
            min(1.0, budget / previous) if (previous := self.demand.get(h - 1, 0.0)) else 1.0
            for h in unique.tolist()
        ]
        self._forget_hours(int(unique[-1]))
        return np.array(paces)[inverse]

    def _within_budget(
        self, priority: FloatArray, hours: np.ndarray
    ) -> tuple[np.ndarray, FloatArray]:
        """The rows requested and each row's threshold: the rows whose priority (chance
        over draw) exceeds 1, those whose draw fell below their chance; where an hour's
        budget has less room, its ``room`` rows of highest priority, above the next one's
        priority (priority sampling: the chance of each becomes its chance over that
        threshold, known, so its verdict is weighed right)."""
        threshold = np.ones(len(priority))
        for hour in np.unique(hours[priority > 1.0]).tolist():
            here = hours == hour
            wanted = int((priority[here] > 1.0).sum())
            room = max(self.settings.max_per_hour - self.used.get(hour, 0), 0)
            if wanted > room:
                ranked = np.sort(priority[here])[::-1]
                threshold[here] = ranked[room]  # the first one left out
                self.counts.over_budget += wanted - room
            self.used[hour] = self.used.get(hour, 0) + min(wanted, room)
        return np.flatnonzero(priority > threshold), threshold

    def taken(self) -> Counts | None:
        """The counts since the last call (None when review is off)."""
        if not self.enabled:
            return None
        counts, self.counts = self.counts, Counts()
        if self.used:
            counts.budget_used = self.used[max(self.used)] / self.settings.max_per_hour
        return counts

    def _forget_hours(self, latest: int) -> None:
        for table in (self.used, self.demand):
            for hour in [h for h in table if h < latest - 1]:
                del table[hour]

    def verdicts(self, labels: Sequence[Event]) -> None:
        """Join verdicts to their requests; each counts once, in its window's tally. A
        verdict before its request (read from its topic ahead of the predictions', or in
        the same batch) waits for it, as a label waits for its prediction."""
        answers: dict[str, object] = {}
        for label in labels:
            self.answered = max(self.answered, label.epoch_seconds)
            event_id = str(label.event_id)
            waiting = self.waiting.get(event_id)
            if waiting is None:
                self.early[event_id] = [label.label, label.epoch_seconds]
            elif waiting[2] is None or event_id in answers:  # answered: the first counts
                self.counts.unsolicited += 1
            else:
                answers[event_id] = label.label
        # A day of requests at most wait: the oldest go, in vain.
        while len(self.early) > EARLY_HOURS * self.settings.max_per_hour:
            del self.early[next(iter(self.early))]
            self.counts.unsolicited += 1
        self._join(list(answers.items()))

    def _join(self, answers: Sequence[tuple[str, object]]) -> None:
        agreed: dict[int, list[tuple[bool, float]]] = {}
        for event_id, label in answers:
            waiting = self.waiting[event_id]
            window, prediction, chance, _ = waiting
            # Kept, answered, until its time-to-live: delivered again (at least once, or
            # replayed), the event is not requested again.
            waiting[1] = waiting[2] = None
            if window <= self.reported_through:
                self.counts.late += 1
                continue
            self.counts.joined += 1
            agreed.setdefault(window, []).append((_same(label, prediction), chance))
        for window, pairs in agreed.items():
            same, chances = zip(*pairs, strict=True)
            tally = self.tallies.setdefault(window, Tally())
            tally.add(np.array(same, np.bool_), np.array(chances, np.float64))

    def closed(self, bounds: WindowBounds, predictions: int) -> None:
        if self.enabled:
            self.closed_windows[bounds.index] = (bounds, predictions)

    def due(
        self, lateness: float, regression: bool, final: bool = False
    ) -> list[tuple[WindowBounds, list[Finding]]]:
        """The closed windows whose verdicts have had ``REVIEW__HORIZON`` by the verdicts'
        own clock (should they stop coming: by the predictions', a label time-to-live
        later, as labels are waited for), in order, with their findings; all at the end
        of input."""
        horizon = self.settings.horizon
        now = max(self.answered, self.latest - self.labels.ttl) - lateness
        reported = []
        for index, (bounds, predictions) in sorted(self.closed_windows.items()):
            if final or bounds.end + horizon <= now:
                del self.closed_windows[index]
                self.reported_through = max(self.reported_through, index)
                reported.append((bounds, self._evaluate(bounds, predictions, regression)))
        return reported

    def _evaluate(self, bounds: WindowBounds, predictions: int, regression: bool) -> list[Finding]:
        """The window's reviewed accuracy, observed and weighted: reported, never
        alerting (the verdicts are a sample chosen for doubt)."""
        tally = self.tallies.pop(bounds.index, None)
        if tally is None or regression:
            return []
        predictions = max(predictions, tally.n)  # a window never closed here: its verdicts
        found = estimate(tally, predictions, self.settings.confidence)
        if found is None:
            return []
        level = f"{self.settings.confidence:.0%}"
        return [
            Finding(
                model=self.model_id,
                detector=NAME,
                subject="accuracy",
                statistic="weighted_accuracy",
                value=found.weighted,
                threshold=0.0,
                severity=Severity.OK,
                n_reference=0,
                n_current=found.n,
                window=bounds,
                explanation=f"model '{self.model_id}': {found.n} verdicts of reviewers; "
                f"accuracy {found.weighted:.1%} weighted by each request's chance "
                f"({level} interval {found.weighted_low:.1%} to {found.weighted_high:.1%}), "
                f"an estimate for all {predictions} predictions; {found.observed:.1%} "
                "of the reviewed agreed with the model (a sample chosen for doubt).",
                details={
                    "weighted": found.weighted,
                    "weighted_low": found.weighted_low,
                    "weighted_high": found.weighted_high,
                    "observed": found.observed,
                    "observed_low": found.observed_low,
                    "observed_high": found.observed_high,
                    "verdicts": found.n,
                    "predictions": predictions,
                    # the predictions the weights account for, as a share: near 1 unless
                    # a spent budget left the window's last events no chance
                    "represented": tally.weight / predictions,
                },
            )
        ]

    def _expire(self, now: float) -> None:
        """Requests a label time-to-live old in event time wait no longer: a verdict
        after that counts as unsolicited (until then, after its window's report, late).
        Verdicts as old that no request came for are unsolicited."""
        oldest = now - self.labels.ttl
        for event_id in [k for k, w in self.waiting.items() if w[3] < oldest]:
            del self.waiting[event_id]
        gone = [k for k, (_, time) in self.early.items() if time < oldest]
        for event_id in gone:
            del self.early[event_id]
        self.counts.unsolicited += len(gone)

    def snapshot(self) -> dict[str, Any]:
        return {
            "used": [[h, n] for h, n in sorted(self.used.items())],
            "demand": [[h, d] for h, d in sorted(self.demand.items())],
            "waiting": self.waiting,
            "early": self.early,
            "tallies": [[w, t.snapshot()] for w, t in sorted(self.tallies.items())],
            "closed": [
                [b.index, b.start, b.end, n] for _, (b, n) in sorted(self.closed_windows.items())
            ],
            "reported_through": self.reported_through,
            "latest": self.latest,
            "answered": self.answered,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.used = {int(h): int(n) for h, n in state["used"]}
        self.demand = {int(h): float(d) for h, d in state["demand"]}
        self.waiting = {str(k): list(v) for k, v in state["waiting"].items()}
        self.early = {str(k): list(v) for k, v in state["early"].items()}
        self.tallies = {int(w): Tally.restore(t) for w, t in state["tallies"]}
        self.closed_windows = {
            int(i): (WindowBounds(int(i), float(start), float(end)), int(n))
            for i, start, end, n in state["closed"]
        }
        self.reported_through = int(state["reported_through"])
        self.latest, self.answered = float(state["latest"]), float(state["answered"])


def _same(label: object, prediction: object) -> bool:
    """A verdict agrees when it names the predicted class (as classes are compared)."""
    return _class(label) == _class(prediction)


def _class(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None if value is None else str(value)


def _column(batch: Batch, name: str, regression: bool) -> np.ndarray:
    group = batch.outputs.numeric if regression else batch.outputs.categorical
    return group.get(name, np.full(batch.n, None, np.object_))


def _has(batch: Batch, name: str) -> bool:
    return name in batch.features.numeric or name in batch.features.categorical


def _feature(batch: Batch, name: str, i: int) -> float | str | None:
    if name in batch.features.numeric:
        number = float(batch.features.numeric[name][i])
        return number if math.isfinite(number) else None
    value: object = batch.features.categorical[name][i]
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """A JSON-able value: NaN as null, numpy scalars as Python's."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
