"""The alert lifecycle: hysteresis, repeats, silences and extra labels."""

from __future__ import annotations

from pydantic import AwareDatetime, Field, model_validator

from streamwatch.config.base import Duration, Section


class Hysteresis(Section):
    """When an alert fires and resolves, counted in conclusive windows."""

    fire_after: int = Field(1, ge=1, description="breaching windows among the last of_last")
    of_last: int = Field(1, ge=1, description="the windows fire_after counts in")
    resolve_after: int = Field(1, ge=1, description="clean windows in a row that resolve")

    @model_validator(mode="after")
    def _fits(self) -> Hysteresis:
        if self.fire_after > self.of_last:
            raise ValueError(f"fire_after ({self.fire_after}) exceeds of_last ({self.of_last})")
        return self


class Silence(Section):
    """Alerts matching every label here are recorded but not sent, from starts to ends
    (event time, epoch seconds or RFC 3339)."""

    matchers: dict[str, str] = Field(
        min_length=1, description="label -> value; alerts with all of these are held back"
    )
    starts: AwareDatetime = Field(description="start, in event time")
    ends: AwareDatetime = Field(description="end, in event time")
    comment: str = Field("", description="a note for readers of the configuration")


class AlertSettings(Section):
    """The alert lifecycle (alerting/policy.py): hysteresis, repeats, silences, extra labels."""

    hysteresis: Hysteresis = Field(
        Hysteresis(), description="the hysteresis of every detector without its own"
    )
    detectors: dict[str, Hysteresis] = Field(
        default_factory=dict,
        description="detector -> its own hysteresis; keys as in the alerts' detector label",
    )
    repeat_interval: Duration = Field(
        4 * 3600.0, gt=0, description="a firing alert is repeated at most this often"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="label -> value added to every alert"
    )
    silences: tuple[Silence, ...] = Field((), description="alerts held back, recorded, not sent")
    redact: tuple[str, ...] = Field(
        (), description="feature names never written in an alert: a stable alias instead"
    )
    inhibit_equal: tuple[str, ...] = Field(
        ("model", "detector", "subject"),
        description="a critical alert inhibits the warnings that share these labels with it "
        "(Alertmanager's inhibit rule 'equal')",
    )

    def hysteresis_of(self, detector: str) -> Hysteresis:
        return self.detectors.get(detector, self.hysteresis)
