"""Shadow and canary comparison: a challenger version against the champion, per window.

When two versions of one model score the same event ids, each challenger prediction is
paired with the champion's (found in the label join's buffer; a challenger that comes
first waits for it, in a buffer bounded by count and bytes) and counted in the
champion's window: pairs, agreements on the predicted class (or value), and the sum and
sum of squares of the absolute score difference. Disagreement alarms when the lower
bound of its 95% Wilson interval passes the threshold; the score difference when its
mean passes the threshold significantly (one-sided z-test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from scipy.stats import norm

from streamwatch.config import ShadowSettings
from streamwatch.detectors.base import Finding
from streamwatch.detectors.performance import class_label
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "shadow"
Z95 = 1.959963984540054
# Memory of a waiting challenger beside its text: a dict slot, the tuple, the score.
WAITING_BYTES = 250


@dataclass(slots=True)
class _Pairs:
    n: int = 0
    agree: int = 0
    scored: int = 0
    diff: float = 0.0
    diff_sq: float = 0.0

    def merge(self, other: _Pairs) -> None:
        self.n += other.n
        self.agree += other.agree
        self.scored += other.scored
        self.diff += other.diff
        self.diff_sq += other.diff_sq


@dataclass(slots=True)
class Shadow:
    """Challenger-champion pairs per window, and challengers waiting for their champion."""

    name: ClassVar[str] = NAME
    settings: ShadowSettings
    windows: dict[int, dict[str, _Pairs]] = field(default_factory=dict)
    waiting: dict[str, tuple[str, object, float]] = field(default_factory=dict)
    evaluated_through: int = -1  # pairs for windows up to here come too late
    late: int = 0
    max_bytes: int = 64 << 20  # of ``waiting``
    waiting_bytes: int = 0

    def pair(
        self,
        window: int,
        version: str,
        champion: tuple[object, float],
        challenger: tuple[object, float],
    ) -> None:
        if window <= self.evaluated_through:
            self.late += 1  # its window was judged already: counted, not stranded
            return
        pairs = self.windows.setdefault(window, {}).setdefault(version, _Pairs())
        pairs.n += 1
        pairs.agree += _same(champion[0], challenger[0])
        if not (math.isnan(champion[1]) or math.isnan(challenger[1])):
            difference = abs(champion[1] - challenger[1])
            pairs.scored += 1
            pairs.diff += difference
            pairs.diff_sq += difference * difference

    def wait(self, event_id: str, version: str, prediction: object, score: float) -> None:
        waiting = self.waiting
        if event_id in waiting:
            self.take(event_id)
        waiting[event_id] = entry = (version, prediction, score)
        self.waiting_bytes += _waiting_bytes(event_id, entry)
        while waiting and (
            len(waiting) > self.settings.max_waiting or self.waiting_bytes > self.max_bytes
        ):
            self.take(next(iter(waiting)))  # the oldest makes room

    def take(self, event_id: str) -> tuple[str, object, float]:
        """The challenger waiting under ``event_id``, no longer waiting."""
        entry = self.waiting.pop(event_id)
        self.waiting_bytes -= _waiting_bytes(event_id, entry)
        return entry

    def merge(self, other: Shadow) -> None:
        """Add the pairs counted on another part of the stream (same windows, versions)."""
        for index, versions in other.windows.items():
            mine = self.windows.setdefault(index, {})
            for version, pairs in versions.items():
                mine.setdefault(version, _Pairs()).merge(pairs)
        self.late += other.late
        self.evaluated_through = max(self.evaluated_through, other.evaluated_through)
        for key, waiting in other.waiting.items():
            self.wait(key, *waiting)

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]:
        findings = []
        s = self.settings
        self.evaluated_through = max(self.evaluated_through, window.index)
        for version, p in sorted(self.windows.pop(window.index, {}).items()):
            if p.n < s.min_pairs:
                continue
            disagree = 1 - p.agree / p.n
            low = _wilson_low(p.n - p.agree, p.n)
            findings.append(
                _finding(
                    model,
                    window,
                    version,
                    "disagreement",
                    disagree,
                    Severity.of(low, s.disagreement_warning, s.disagreement_critical),
                    (s.disagreement_warning, s.disagreement_critical),
                    p.n,
                    f"disagrees with the champion on {disagree:.1%} of {p.n:,} events "
                    f"(95% lower bound {low:.1%})",
                )
            )
            if p.scored >= s.min_pairs:
                mean = p.diff / p.scored
                se = math.sqrt(max(p.diff_sq / p.scored - mean * mean, 0.0) / p.scored)
                pvalue = (
                    norm.sf((mean - s.score_warning) / se)
                    if se > 0
                    else float(mean <= s.score_warning)
                )
                severity = Severity.of(mean, s.score_warning, s.score_critical)
                findings.append(
                    _finding(
                        model,
                        window,
                        version,
                        "score_difference",
                        mean,
                        severity if pvalue <= s.alpha else Severity.OK,
                        (s.score_warning, s.score_critical),
                        p.scored,
                        f"scores differ from the champion's by {mean:.3f} on average",
                    )
                )
        return findings

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": [
                [index, version, p.n, p.agree, p.scored, p.diff, p.diff_sq]
                for index, versions in self.windows.items()
                for version, p in versions.items()
            ],
            "waiting": [[k, *v] for k, v in self.waiting.items()],
            "evaluated_through": self.evaluated_through,
            "late": self.late,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.windows = {}
        for index, version, n, agree, scored, diff, diff_sq in state["windows"]:
            self.windows.setdefault(int(index), {})[str(version)] = _Pairs(
                int(n), int(agree), int(scored), float(diff), float(diff_sq)
            )
        self.waiting = {str(k): (str(v), p, float(s)) for k, v, p, s in state["waiting"]}
        self.waiting_bytes = sum(_waiting_bytes(k, entry) for k, entry in self.waiting.items())
        self.evaluated_through, self.late = int(state["evaluated_through"]), int(state["late"])


def _waiting_bytes(key: str, entry: tuple[str, object, float]) -> int:
    prediction = entry[1]
    text = len(prediction) if type(prediction) is str else 0
    return WAITING_BYTES + len(key) + len(entry[0]) + text


def _same(a: object, b: object) -> bool:
    """Values within 0.1% of each other (regression), or the same class."""
    if _number(a) and _number(b):
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-9)  # type: ignore[arg-type]
    return class_label(a) == class_label(b)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wilson_low(k: int, n: int) -> float:
    """The lower end of the 95% Wilson score interval of k successes in n."""
    p = k / n
    centre = p + Z95 * Z95 / (2 * n)
    margin = Z95 * math.sqrt(p * (1 - p) / n + Z95 * Z95 / (4 * n * n))
    return max((centre - margin) / (1 + Z95 * Z95 / n), 0.0)


def _finding(
    model: str,
    window: WindowBounds,
    version: str,
    statistic: str,
    value: float,
    severity: Severity,
    thresholds: Sequence[float],
    n: int,
    text: str,
) -> Finding:
    warning, critical = thresholds
    return Finding(
        model=model,
        detector=NAME,
        subject=f"version={version}",
        statistic=statistic,
        value=value,
        threshold=severity.threshold(warning, critical),
        severity=severity,
        n_reference=0,
        n_current=n,
        window=window,
        explanation=f"model '{model}': challenger version {version} {text}" + severity.note() + ".",
    )
