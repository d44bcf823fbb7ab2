"""Severity of a finding or an alert: ok < warning < critical."""

from __future__ import annotations

from enum import Enum


class Severity(Enum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def threshold(self, warning: float, critical: float) -> float:
        """The threshold a finding of this severity reports: the one it crossed, or
        the warning threshold when it is ok."""
        return critical if self is Severity.CRITICAL else warning

    def note(self, evidence: str = "") -> str:
        """The end of an explanation: nothing when ok, else `` (warning, p = 0.001)``."""
        if self is Severity.OK:
            return ""
        return f" ({self.value}, {evidence})" if evidence else f" ({self.value})"

    @classmethod
    def of(cls, value: float, warning: float, critical: float) -> Severity:
        if value >= critical:
            return cls.CRITICAL
        if value >= warning:
            return cls.WARNING
        return cls.OK


_RANK = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
