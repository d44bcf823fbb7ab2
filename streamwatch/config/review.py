"""Human review: which predictions are sent to reviewers (``REVIEW__...``, per model too).

A rule selects an event when every condition it sets holds; a rule that sets none
selects every event (a uniform sample, at ``share``). An event selected by several
rules is requested once, with the largest of their shares as its probability.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from streamwatch.config.base import Duration, Section
from streamwatch.severity import Severity

Share = Annotated[float, Field(gt=0.0, le=1.0)]


def _alerting(severity: Severity | None) -> Severity | None:
    if severity is Severity.OK:
        raise ValueError("a rule samples while an alert fires: warning or critical")
    return severity


class ReviewRule(Section):
    """One named rule: its conditions (all must hold) and the share of the events they
    select that is requested."""

    score_between: tuple[float, float] | None = Field(
        None, description="uncertain: the score lies in [low, high] (a binary classifier)"
    )
    margin_below: float | None = Field(
        None, gt=0, le=1, description="uncertain: the two likeliest classes differ by less"
    )
    entropy_above: float | None = Field(
        None, ge=0, description="uncertain: the class probabilities' entropy, in bits"
    )
    mahalanobis: bool = Field(
        False, description="out of distribution: beyond the reference's Mahalanobis quantile"
    )
    out_of_range: bool = Field(
        False,
        description="out of distribution: a numeric feature outside the reference's range "
        "(its 1/128 to 127/128 quantiles, as data quality reads it)",
    )
    unseen: bool = Field(
        False, description="out of distribution: a category the reference has not seen"
    )
    segments: dict[str, str] = Field(
        default_factory=dict, description="segment -> value; a high-risk slice"
    )
    features: dict[str, str] = Field(
        default_factory=dict, description="categorical feature -> value; a high-risk slice"
    )
    above: dict[str, float] = Field(
        default_factory=dict, description="numeric feature -> the value it exceeds"
    )
    below: dict[str, float] = Field(
        default_factory=dict, description="numeric feature -> the value it is under"
    )
    while_alert: Annotated[Severity | None, AfterValidator(_alerting)] = Field(
        None, description="only while an alert of this severity or worse fires for the model"
    )
    share: Share = Field(1.0, description="the probability that a selected event is requested")

    @model_validator(mode="after")
    def _band(self) -> ReviewRule:
        band = self.score_between
        if band is not None and not 0.0 <= band[0] <= band[1] <= 1.0:
            raise ValueError("score_between is [low, high] with 0 <= low <= high <= 1")
        return self


class ReviewSettings(Section):
    """Predictions routed to human reviewers, and what their verdicts tell."""

    rules: dict[str, ReviewRule] = Field(
        default_factory=dict, description="name -> a rule; none: nothing is reviewed"
    )
    max_per_hour: int = Field(
        100, ge=1, description="requests per model and hour of event time at most"
    )
    features: list[str] = Field(
        default_factory=list,
        description="features a request carries (redacted ones never); none by default",
    )
    horizon: Duration = Field(
        3600.0,
        gt=0,
        description="how long after a window's end its verdicts are awaited (verdicts' time)",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="the level of the weighted accuracy's interval"
    )
