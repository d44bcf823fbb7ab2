"""What a replay (or a backfill) prints at its end, and which alerts fired."""

from __future__ import annotations

from collections.abc import Iterable

from streamwatch.alerting.policy import Alert
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.severity import Severity


def fired_at_least(outcomes: Iterable[Produced], level: Severity) -> list[Alert]:
    """Each alert that fired at ``level`` or worse, once (at its worst), in order."""
    worst: dict[str, Alert] = {}
    for outcome in outcomes:
        for notification in outcome.notifications:
            for a in notification.alerts:
                known = worst.get(a.fingerprint)
                if a.status == "firing" and (
                    known is None or a.severity.rank > known.severity.rank
                ):
                    worst[a.fingerprint] = a
    return [a for a in worst.values() if a.severity.rank >= level.rank]


def summary(metrics: Metrics, seconds: float, done: str) -> str:
    """What a run did, from its metrics; ``done`` says how (\"replayed\")."""
    reasons = {
        sample.labels["reason"]: int(sample.value)
        for metric in metrics.bad_events.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }
    detail = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    total = metrics.summary()
    rows = [
        ("events windowed", f"{total['windowed']:,}"),
        ("label events", f"{total['labels']:,}"),
        ("bad events", f"{total['bad']:,}" + (f" ({detail})" if detail else "")),
        ("late events", f"{total['late']:,}"),
        (
            "windows closed",
            f"{total['windows_closed']:,} "
            f"({metrics.total('streamwatch_windows_closed', role='reference')} reference)",
        ),
        ("alerts", f"{total['alerts_firing']} firing, {total['alerts_resolved']} resolved"),
    ]
    rate = total["windowed"] / seconds if seconds > 0 else 0.0
    head = f"{done} in {seconds:.2f} s ({rate:,.0f} events/s)"
    return "\n".join([head] + [f"  {k:<16}{v}" for k, v in rows])
