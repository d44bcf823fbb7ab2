"""A window's accuracy from its reviewed predictions: observed, and weighted to all of them.

Each event of a window is requested for review with a known probability ``pi``
(independent draws: Poisson sampling), and a verdict says whether the reviewer agreed
with the model. The observed accuracy (the share agreed) describes the reviewed
predictions only: the rules over-sample uncertain predictions, where the model is
worse, so it reads low. Weighting each verdict by ``1 / pi`` estimates the accuracy of
all the window's predictions.

The weighted estimate is the ratio (Hájek) estimator ``sum(agreed / pi) / sum(1 / pi)``.
Horvitz-Thompson, ``sum(agreed / pi) / N`` with the window's known size ``N``, is
unbiased but carries the random number of verdicts drawn at a small ``pi`` into the
estimate: on the stream of the tests (5,000 predictions a window, shares 0.5 and 0.02)
its 95% interval was 26 points wide, the ratio's 8 (linearised) or 11 (below).

Its interval is Wilson's, at an effective number of verdicts: the smaller of two.

- The linearised one, ``est (1 - est) / variance``, with the ratio's linearised variance
  ``sum((1 - pi) / pi**2 * (agreed - est)**2) / sum(1 / pi)**2``. Alone it fails where
  mistakes are rare: it reads the spread of the sparsely sampled predictions from the
  few mistakes drawn among them, near none with none drawn. The normal interval on it
  covered 94 and 62 of 100 windows on the stream of the tests (5,000 and 1,000
  predictions a window).
- The design's, ``sum(1 / pi)**2 / sum((1 - pi) / pi**2)``: the same variance with each
  verdict spread as ``est (1 - est)``, whatever was drawn. Alone it fails where the
  sparsely sampled predictions are the worse ones and spread more (84 to 93 of 100 in
  the tests' stream of that kind, 92 to 99 with both).

Wilson's interval stays inside [0, 1] and is no point at an estimate of 1. It covered
100 and 100 of 100 (96 to 100 over ten more seeds), a little wide there: the sparsely
sampled predictions, 95% right, spread less than ``est (1 - est)``. A census (every
``pi`` 1) gives the point: the accuracy is known.

>>> import numpy as np
>>> tally = Tally()
>>> tally.add(np.array([True, False, True, True]), np.array([1.0, 1.0, 0.1, 0.1]))
>>> result = estimate(tally, population=22, confidence=0.95)
>>> round(result.observed, 2), round(result.weighted, 2)
(0.75, 0.95)
>>> round(result.weighted_low, 2), round(result.weighted_high, 2)
(0.38, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm


class Tally:
    """One window's reviewed predictions, as sums that merge (up to float rounding) and
    checkpoint: the verdicts, and each weighted by ``1 / pi`` (the estimate) and by
    ``(1 - pi) / pi**2`` (its variance under Poisson sampling), all and agreed ones."""

    def __init__(self) -> None:
        self.n = 0
        self.agreed = 0
        self.weight = 0.0
        self.agreed_weight = 0.0
        self.spread = 0.0
        self.agreed_spread = 0.0

    def add(self, agreed: NDArray[np.bool_], probability: NDArray[np.float64]) -> None:
        """Count verdicts: whether each agreed, and the probability it was requested with."""
        if agreed.shape != probability.shape:
            raise ValueError("one probability per verdict")
        if not np.all((probability > 0.0) & (probability <= 1.0)):
            raise ValueError("a verdict's probability is in (0, 1]")
        agreed = agreed.astype(bool, copy=False)  # a mask, not indices, even if given 0/1
        weight = 1.0 / probability
        spread = (1.0 - probability) * weight * weight
        self.n += int(agreed.size)
        self.agreed += int(np.count_nonzero(agreed))
        self.weight += float(weight.sum())
        self.agreed_weight += float(weight[agreed].sum())
        self.spread += float(spread.sum())
        self.agreed_spread += float(spread[agreed].sum())

    def merge(self, other: Tally) -> None:
        self.n += other.n
        self.agreed += other.agreed
        self.weight += other.weight
        self.agreed_weight += other.agreed_weight
        self.spread += other.spread
        self.agreed_spread += other.agreed_spread

    def snapshot(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> Self:
        tally = cls()
        tally.n, tally.agreed = int(state["n"]), int(state["agreed"])
        for name in ("weight", "agreed_weight", "spread", "agreed_spread"):
            setattr(tally, name, float(state[name]))
        return tally


@dataclass(frozen=True, slots=True)
class Estimate:
    """A window's accuracy: observed on its verdicts, and weighted to all its predictions,
    each with its interval at ``confidence``."""

    n: int  # verdicts
    population: int  # the window's predictions
    observed: float
    observed_low: float
    observed_high: float
    weighted: float
    weighted_low: float
    weighted_high: float
    confidence: float


def estimate(tally: Tally, population: int, confidence: float) -> Estimate | None:
    """The window's accuracy from its ``tally``, with intervals; None with no verdicts."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence is in (0, 1)")
    if population < tally.n:
        raise ValueError("the verdicts are of the window's predictions: population >= n")
    if tally.n == 0:
        return None
    z = float(norm.ppf((1.0 + confidence) / 2.0))
    observed = tally.agreed / tally.n
    weighted = tally.agreed_weight / tally.weight
    # sum(spread * (agreed - weighted)**2), the square expanded (agreed is 0 or 1)
    spread = tally.agreed_spread * (1.0 - 2.0 * weighted) + weighted**2 * tally.spread
    variance = spread / tally.weight**2
    binomial = weighted * (1.0 - weighted)
    linearised = binomial / variance if binomial > 0.0 and variance > 0.0 else math.inf
    design = tally.weight**2 / tally.spread if tally.spread > 0.0 else math.inf
    return Estimate(
        tally.n,
        population,
        observed,
        *_wilson(observed, tally.n, z),
        weighted,
        *_wilson(weighted, min(linearised, design), z),
        confidence,
    )


def _wilson(share: float, n: float, z: float) -> tuple[float, float]:
    """Wilson's score interval for ``share`` of ``n`` (a point for an infinite ``n``)."""
    shrink = z * z / n
    centre = (share + shrink / 2.0) / (1.0 + shrink)
    half = z / (1.0 + shrink) * math.sqrt(share * (1.0 - share) / n + shrink / (4.0 * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)
