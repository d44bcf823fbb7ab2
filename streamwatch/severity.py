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

    @classmethod
    def of(cls, value: float, warning: float, critical: float) -> Severity:
        if value >= critical:
            return cls.CRITICAL
        if value >= warning:
            return cls.WARNING
        return cls.OK


_RANK = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
