"""Operational health: latency, error rate and event volume against the reference.

Latency is kept in a log-bucketed sketch (1% relative accuracy, mergeable, no values
kept). Its p95 and p99 alarm when they rose by a relative margin and the share of events
slower than the reference's quantile is significantly above what that quantile means
(5% or 1%: a one-sided binomial test); a configured p99 limit is checked the same way.
The error rate is compared one-sidedly with the reference's (Fisher's exact test). The
volume alarms when the window's event count is a factor away from what the reference's
rate (events per second of event time) predicts for the window, and a Poisson test says
so; a pinned reference file works as well as pooled windows. ``alpha`` is the level of
a window's tests together (Bonferroni over the checks made).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import binomtest, poisson

from streamwatch.batch import Batch
from streamwatch.config import OperationalSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Finding
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

GAMMA = 1.02  # bucket i holds (GAMMA^(i-1), GAMMA^i]: relative error under 1%
_LOG_GAMMA = math.log(GAMMA)
MIN_MS, MAX_MS = 1e-3, 1e8
_OFFSET = math.ceil(math.log(MIN_MS) / _LOG_GAMMA)
BUCKETS = math.ceil(math.log(MAX_MS) / _LOG_GAMMA) - _OFFSET + 1


class LatencySketch:
    """Counts of latencies in log buckets; quantiles within 1%."""

    def __init__(self) -> None:
        self.counts = np.zeros(BUCKETS, dtype=np.int64)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def update(self, latency_ms: np.ndarray) -> None:
        values = np.clip(latency_ms[np.isfinite(latency_ms)], MIN_MS, MAX_MS)
        index = np.ceil(np.log(values) / _LOG_GAMMA).astype(np.int64) - _OFFSET
        self.counts += np.bincount(np.clip(index, 0, BUCKETS - 1), minlength=BUCKETS)

    def quantile(self, q: float) -> float:
        rank = q * (self.n - 1)
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        # The bucket's midpoint in log space: within 1% of every value in it.
        return float(GAMMA ** (bucket + _OFFSET - 0.5))

    def above(self, latency_ms: float) -> int:
        """How many latencies are above ``latency_ms`` (to the bucket)."""
        bucket = math.ceil(math.log(max(latency_ms, MIN_MS)) / _LOG_GAMMA) - _OFFSET
        return int(self.counts[max(bucket, 0) + 1 :].sum())


class Operational:
    name = "operational"

    def __init__(self, settings: OperationalSettings) -> None:
        self.settings = settings
        self.latency = LatencySketch()
        self.errors = 0
        self.flagged = 0  # events that said whether they failed
        self.events = 0
        self.first, self.last = math.inf, -math.inf  # event times: the rate, how full

    def update(self, batch: Batch) -> None:
        self.events += batch.n
        if batch.n:
            self.first = min(self.first, float(batch.event_time.min()))
            self.last = max(self.last, float(batch.event_time.max()))
        columns = batch.operational.numeric
        if "latency_ms" in columns:
            self.latency.update(columns["latency_ms"])
        if "error" in columns:
            error = columns["error"]
            known = ~np.isnan(error)
            self.flagged += int(known.sum())
            self.errors += int(error[known].sum())

    def merge(self, other: Operational) -> None:
        self.latency.counts += other.latency.counts
        self.errors += other.errors
        self.flagged += other.flagged
        self.events += other.events
        self.first, self.last = min(self.first, other.first), max(self.last, other.last)

    def snapshot(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.latency.counts)
        return {
            "latency": [nonzero.tolist(), self.latency.counts[nonzero].tolist()],
            "errors": self.errors,
            "flagged": self.flagged,
            "events": self.events,
            "span": [self.first, self.last],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.latency = LatencySketch()
        index, counts = state["latency"]
        self.latency.counts[np.asarray(index, dtype=np.int64)] = counts
        self.errors, self.flagged = int(state["errors"]), int(state["flagged"])
        self.events = int(state["events"])
        self.first, self.last = (float(t) for t in state["span"])

    def evaluate(self, model: str, window: WindowBounds, reference: Operational) -> list[Finding]:
        s = self.settings
        # A window cut short (the end of input) would read as a drop: volume only counts
        # for windows whose events span most of their length.
        length = window.end - window.start
        volume = self.last - self.first >= 0.9 * length and reference.last > reference.first
        latency = min(self.latency.n, reference.latency.n) >= s.min_samples
        limit = latency and s.latency_p99_limit_ms is not None
        errors = min(self.flagged, reference.flagged) >= s.min_samples
        # ALPHA is the level of the window's tests together (Bonferroni), so that the
        # detector raises a false alarm in about one window of 1 / ALPHA.
        level = s.alpha / max(1, volume + 2 * latency + limit + errors)
        found = []
        if volume:
            found.append(self._volume(model, window, reference, length, level))
        if latency:
            found += [self._latency(model, window, reference, q, level) for q in (0.95, 0.99)]
        if limit and s.latency_p99_limit_ms is not None:
            found.append(self._limit(model, window, s.latency_p99_limit_ms, level))
        if errors:
            found.append(self._errors(model, window, reference, level))
        return found

    def _finding(
        self,
        model: str,
        window: WindowBounds,
        subject: str,
        statistic: str,
        value: float,
        thresholds: tuple[float, float],
        significant: bool,
        n_reference: int,
        n_current: int,
        text: str,
        details: dict[str, float],
    ) -> Finding:
        warning, critical = thresholds
        severity = Severity.of(value, warning, critical) if significant else Severity.OK
        return Finding(
            model=model,
            detector=self.name,
            subject=subject,
            statistic=statistic,
            value=value,
            threshold=severity.threshold(warning, critical),
            severity=severity,
            n_reference=n_reference,
            n_current=n_current,
            window=window,
            explanation=f"model '{model}': {text}" + severity.note() + ".",
            details=details,
        )

    def _latency(
        self, model: str, window: WindowBounds, ref: Operational, q: float, level: float
    ) -> Finding:
        ref_q, cur_q = ref.latency.quantile(q), self.latency.quantile(q)
        slower = self.latency.above(ref_q)
        test = binomtest(slower, self.latency.n, 1 - q, alternative="greater")
        rise = cur_q / ref_q - 1
        label = f"p{round(q * 100)}"
        return self._finding(
            model,
            window,
            f"latency_{label}",
            "relative_increase",
            rise,
            (self.settings.latency_warning, self.settings.latency_critical),
            test.pvalue <= level,
            ref.latency.n,
            self.latency.n,
            f"latency {label} {ref_q:.3g} ms → {cur_q:.3g} ms ({rise:+.0%}); "
            f"{slower / self.latency.n:.1%} of events slower than the reference's {label}",
            {"current_ms": cur_q, "reference_ms": ref_q, "p_value": float(test.pvalue)},
        )

    def _limit(self, model: str, window: WindowBounds, limit: float, level: float) -> Finding:
        slower = self.latency.above(limit)
        test = binomtest(slower, self.latency.n, 0.01, alternative="greater")
        p99 = self.latency.quantile(0.99)
        over = p99 / limit - 1
        return self._finding(
            model,
            window,
            "latency_p99_limit",
            "relative_excess",
            max(over, 0.0),
            (1e-9, self.settings.latency_critical),
            test.pvalue <= level,
            0,
            self.latency.n,
            f"latency p99 {p99:.3g} ms against a limit of {limit:g} ms",
            {"p99_ms": p99, "limit_ms": limit, "p_value": float(test.pvalue)},
        )

    def _errors(self, model: str, window: WindowBounds, ref: Operational, level: float) -> Finding:
        rate, ref_rate = self.errors / self.flagged, ref.errors / ref.flagged
        pvalue = st.higher_rate_pvalue(self.errors, self.flagged, ref.errors, ref.flagged)
        return self._finding(
            model,
            window,
            "error_rate",
            "increase",
            rate - ref_rate,
            (self.settings.error_warning, self.settings.error_critical),
            pvalue <= level,
            ref.flagged,
            self.flagged,
            f"error rate {ref_rate:.2%} → {rate:.2%}",
            {"rate": rate, "reference": ref_rate, "p_value": pvalue},
        )

    def _volume(
        self, model: str, window: WindowBounds, ref: Operational, length: float, level: float
    ) -> Finding:
        expected = ref.events / (ref.last - ref.first) * length
        factor = max(self.events, 1) / max(expected, 1)
        fold = max(factor, 1 / factor)  # a drop to a third and a tripling both read 3
        lower, upper = poisson.cdf(self.events, expected), poisson.sf(self.events - 1, expected)
        pvalue = float(min(1.0, 2 * min(lower, upper)))
        what = "flood" if factor > 1 else "drop"
        return self._finding(
            model,
            window,
            "volume",
            "fold_change",
            fold,
            (self.settings.volume_warning, self.settings.volume_critical),
            pvalue <= level,
            ref.events,
            self.events,
            f"{self.events:,} events where the reference's rate predicts {expected:,.0f} "
            f"(x{factor:.2f}{', a ' + what if fold >= self.settings.volume_warning else ''})",
            {"expected": expected, "p_value": pvalue},
        )
