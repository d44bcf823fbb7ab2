"""A window's class priors estimated from a classifier's outputs, against its labelled
reference: maximum likelihood label shift (MLLS) on probabilities calibrated by
bias-corrected temperature scaling (BCTS), or Black Box Shift Estimation (BBSE) on
predicted classes.

MLLS (Saerens, Latinne and Decaestecker, 2002; Alexandari, Kundaje and Shrikumar,
ICML 2020): under label shift p(x|y) is fixed, so p_t(y|x) ∝ w_y p_s(y|x) with
w = q / p_s(y); EM alternates the posteriors and q, their mean, to the maximum of the
window's likelihood. It needs p_s(y|x) calibrated: BCTS fits the logits' temperature
and a bias per class by likelihood on the labelled reference. The source priors are the
mean calibrated prediction on the reference, as the paper has it; at the fit's optimum
this *is* the reference's label shares (the bias gradient is their difference), so the
two choices agree (``test_priors.py`` checks it). The 95% interval is a bootstrap: the
window's cells resampled (Poisson counts), and the reference's too, each reference
resample refitting BCTS by one Newton step from the fit (per-cell gradients, the exact
Hessian reused), done once per labelled reference; each of the 50 replicates is then
solved by Newton steps from the estimate, and the interval is the estimate ± 1.96
replicate deviations. Cost at 10,000 events and 3 classes on this 2-core machine (load
~6): 0.15-0.18 s a window, plus 0.25 s once per labelled reference (binary: 0.01 s and
0.05 s); ``pytest -s tests/unit/detectors/test_priors.py -k cost``.

BBSE (Lipton, Wang and Smola, 2018): the current predicted-class shares mu = C w, where
C[i, j] = p(ŷ=i, y=j) on the reference; solving for w gives q = w · p_s(y), with an
interval from a parametric bootstrap of C and mu. It needs predicted classes only: the
fallback for a model sending no probabilities.

Both refuse a classifier whose p(ŷ|y) is ill-conditioned (it confuses classes too much
for its outputs to reveal the priors). Their p-value is the one both papers detect
shift with: a chi-square test of the predicted classes against the reference's (under
label shift the priors cannot move without the predictions moving).

>>> import numpy as np
>>> confusion = {("a", "a"): 450, ("b", "a"): 50, ("a", "b"): 50, ("b", "b"): 450}
>>> estimate = bbse(confusion, {"a": 2600, "b": 7400}, np.random.default_rng(0))
>>> [round(p, 2) for p in estimate.priors], [round(p, 2) for p in estimate.reference]
([0.2, 0.8], [0.5, 0.5])
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from streamwatch.batch import FloatArray
from streamwatch.config import LabelShiftSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.cells import RESOLUTION, Cells, IntArray, distributions
from streamwatch.detectors.performance import Performance

MLLS, BBSE = "MLLS", "BBSE"
MAX_CONDITION = 50.0  # beyond this, C^-1 amplifies noise into nonsense
BOOTSTRAP = 1000  # BBSE's resamples (a solve each: cheap)
RESAMPLES = 50  # MLLS's (Newton steps each, from the estimate): a deviation to ~10%
# A probability rounded to 0 was below 1/(2 RESOLUTION): its log is floored at half that.
_FLOOR = 1 / (4 * RESOLUTION)
_TOLERANCE = 1e-6
_MAX_ITERATIONS = 2000
_NEWTON_STEPS = 4


@dataclass(frozen=True, slots=True)
class Estimate:
    classes: list[str]
    priors: list[float]  # estimated current class priors
    reference: list[float]  # the reference's class priors
    low: list[float]  # 95% bootstrap interval of the priors
    high: list[float]
    shift: float  # L1 distance between priors and reference
    pvalue: float  # of the predicted classes being distributed as in the reference
    condition: float
    method: str = BBSE


@dataclass(frozen=True, slots=True)
class Calibrator:
    """Bias-corrected temperature scaling: softmax(scale · log p + bias), bias[0] = 0."""

    scale: float
    bias: FloatArray

    @property
    def parameters(self) -> FloatArray:
        return np.concatenate([[self.scale], self.bias[1:]])

    @classmethod
    def of(cls, parameters: FloatArray) -> Calibrator:
        return cls(float(parameters[0]), np.concatenate([[0.0], parameters[1:]]))

    def apply(self, probabilities: FloatArray) -> FloatArray:
        return self.of_logits(_logits(probabilities))

    def of_logits(self, logits: FloatArray) -> FloatArray:
        z = self.scale * logits + self.bias
        calibrated: FloatArray = np.exp(z - z.max(axis=1, keepdims=True))
        calibrated /= calibrated.sum(axis=1, keepdims=True)
        return calibrated


def _logits(probabilities: FloatArray) -> FloatArray:
    logits: FloatArray = np.log(np.clip(probabilities, _FLOOR, 1.0))
    return logits


def _nll(
    parameters: FloatArray, logits: FloatArray, onehot: FloatArray, weights: FloatArray
) -> tuple[float, FloatArray]:
    """Mean weighted negative log likelihood of BCTS, and its gradient."""
    bias = np.concatenate([[0.0], parameters[1:]])
    z = parameters[0] * logits + bias
    log_s = log_softmax(z, axis=1)
    s = np.exp(log_s)
    total = weights.sum()
    nll = -float((weights * (log_s * onehot).sum(axis=1)).sum()) / total
    residual = (s - onehot) * weights[:, None]
    gradient = np.concatenate([[(residual * logits).sum()], residual.sum(axis=0)[1:]]) / total
    return nll, gradient


def fit_bcts(probabilities: FloatArray, actual: IntArray, counts: FloatArray) -> Calibrator:
    """The temperature and class biases of maximum (count-weighted) likelihood of the
    ``actual`` classes (cells of unknown class, -1, are left out)."""
    known = actual >= 0
    logits = _logits(probabilities[known])
    onehot = np.eye(probabilities.shape[1])[actual[known]]
    weights = counts[known]
    start = np.concatenate([[1.0], np.zeros(probabilities.shape[1] - 1)])
    bounds = [(1e-3, 1e3)] + [(None, None)] * (probabilities.shape[1] - 1)
    result = minimize(
        _nll, start, args=(logits, onehot, weights), jac=True, method="L-BFGS-B", bounds=bounds
    )
    return Calibrator.of(np.asarray(result.x, dtype=np.float64))


def mlls(
    calibrated: FloatArray,
    counts: FloatArray,
    source_priors: FloatArray,
    start: FloatArray | None = None,
) -> FloatArray:
    """The class priors of maximum likelihood by EM (Saerens et al. 2002): weights
    w = q / p_s, posteriors ∝ w p, q = their count-weighted mean, to convergence."""
    q = source_priors.copy() if start is None else start.copy()
    shares = counts / counts.sum()
    for _ in range(_MAX_ITERATIONS):
        posterior = calibrated * (q / source_priors)
        posterior /= posterior.sum(axis=1, keepdims=True)
        updated: FloatArray = shares @ posterior
        if np.abs(updated - q).max() < _TOLERANCE:
            return updated
        q = updated
    return q


def _newton(
    calibrated: FloatArray, counts: FloatArray, source_priors: FloatArray, start: FloatArray
) -> FloatArray:
    """The same maximum by Newton's method from ``start`` near it, for a stack of
    bootstrap replicates at once (replicates x cells x classes, replicates x cells,
    replicates x classes): a few steps where EM takes hundreds when classes overlap.
    The priors are q_1.. q_K-1 free, q_0 = 1 - their sum."""
    ratios = calibrated / source_priors[:, None, :]
    free = ratios[:, :, 1:] - ratios[:, :, :1]
    q = np.repeat(start[None, :], len(calibrated), axis=0)
    for _ in range(_NEWTON_STEPS):
        density = ratios @ q[:, :, None]
        scaled = free / density
        weighted = np.swapaxes(scaled * counts[:, :, None], 1, 2)
        gradient = weighted.sum(axis=2)
        hessian = -(weighted @ scaled)
        step = np.linalg.solve(hessian, -gradient[:, :, None])[:, :, 0]
        q[:, 1:] += step
        q = np.clip(q, 1e-9, None)
        q[:, 0] = np.clip(1.0 - q[:, 1:].sum(axis=1), 1e-9, None)
        q /= q.sum(axis=1, keepdims=True)
        if np.abs(step).max() < _TOLERANCE:
            break
    return q


@dataclass(frozen=True, slots=True)
class _Fit:
    """What MLLS needs of a labelled reference: BCTS and its bootstrap replicates."""

    key: tuple[int, int, str]
    classes: list[str]
    calibrator: Calibrator
    priors: FloatArray  # mean calibrated prediction
    replicates: list[tuple[Calibrator, FloatArray]]  # (calibrator, priors) resampled


_FITS: weakref.WeakKeyDictionary[Performance, _Fit] = weakref.WeakKeyDictionary()


def _fit(labelled: Performance, positive: str) -> _Fit | None:
    """BCTS on the labelled reference, kept while it does not change."""
    key = (labelled.cells.n, labelled.confusion.total(), positive)
    fitted = _FITS.get(labelled)
    if fitted is not None and fitted.key == key:
        return fitted
    classes = sorted({actual for _, actual in labelled.confusion})
    cells = distributions(labelled.cells, classes, positive)
    if cells is None or not (cells[1] >= 0).any():
        return None
    known = cells[1] >= 0
    probabilities, actual, counts = cells[0][known], cells[1][known], cells[2][known]
    calibrator = fit_bcts(probabilities, actual, counts)
    calibrated = calibrator.apply(probabilities)
    n = counts.sum()
    if (counts @ calibrated <= 0).any():
        return None
    # The bootstrap's reference side: each resample's fit one Newton step from this one,
    # from the per-cell gradients and the Hessian (exact: the logits are linear in it).
    logits, onehot = _logits(probabilities), np.eye(len(classes))[actual]
    k = len(classes)
    jacobian = np.zeros((len(counts), k, k))  # cells x classes x parameters
    jacobian[:, :, 0] = logits
    jacobian[:, :, 1:] = np.eye(k)[:, 1:]
    residual = calibrated - onehot
    gradients = np.einsum("ik,ikp->ip", residual, jacobian)
    spread = np.einsum("ik,kl->ikl", calibrated, np.eye(len(classes))) - np.einsum(
        "ik,il->ikl", calibrated, calibrated
    )
    hessian = np.einsum("i,ikp,ikl,ilq->pq", counts, jacobian, spread, jacobian)
    rng = np.random.default_rng(0)
    resampled = rng.poisson(counts, size=(RESAMPLES, len(counts))).astype(np.float64)
    steps = np.linalg.solve(hessian, (resampled @ gradients).T).T
    replicates = []
    for step, weights in zip(steps, resampled, strict=True):
        replicate = Calibrator.of(calibrator.parameters - step)
        replicates.append((replicate, weights @ replicate.of_logits(logits) / weights.sum()))
    fitted = _Fit(key, classes, calibrator, counts @ calibrated / n, replicates)
    _FITS[labelled] = fitted
    return fitted


def condition(confusion: Mapping[tuple[str, str], int], classes: list[str]) -> float:
    """How well the classifier tells the classes apart: the condition number of p(ŷ|y),
    which, unlike the joint's, does not grow just because one class is rare."""
    joint = _joint(confusion, classes)
    priors = joint.sum(axis=0)
    if (priors == 0).any():
        return math.inf
    return float(np.linalg.cond(joint / priors))


def method(
    settings: LabelShiftSettings, labelled: Performance, current: Cells, positive: str
) -> str:
    """The method that can run: MLLS wants probabilities on both sides, readable over
    the reference's classes (a score, of ``positive`` among two)."""
    if settings.method == "bbse" or current.n == 0 or labelled.cells.n == 0:
        return BBSE
    return MLLS if _fit(labelled, positive) is not None else BBSE


def estimate_priors(
    labelled: Performance,
    current: Cells,
    settings: LabelShiftSettings,
    positive: str,
    seed: int,
    predicted: Mapping[str, int] | None = None,
) -> Estimate | None:
    """The window's class priors by ``settings.method`` (MLLS falls back to BBSE for a
    model without probabilities); None when ill-conditioned or unreadable. ``current``:
    the window's cells by predicted class; ``predicted``: its predicted-class counts
    (default: those of the cells); ``seed``: of the bootstrap (the window's index)."""
    if predicted is None:
        counted: dict[str, int] = {}
        for (name, _), count in current.counts.items():
            counted[name] = counted.get(name, 0) + count
        predicted = counted
    rng = np.random.default_rng(seed)
    if method(settings, labelled, current, positive) == BBSE:
        return bbse(labelled.confusion, predicted, rng)
    fitted = _fit(labelled, positive)
    cells = None if fitted is None else distributions(current, fitted.classes, positive)
    if fitted is None or cells is None or cells[2].sum() == 0:
        return None
    classes = fitted.classes
    named = sorted({c for pair in labelled.confusion for c in pair})
    conditioning = condition(labelled.confusion, named)
    if not math.isfinite(conditioning) or conditioning > MAX_CONDITION:
        return None
    probabilities, _, counts = cells
    priors = mlls(fitted.calibrator.apply(probabilities), counts, fitted.priors)
    # Poisson resampling: a multinomial's over thousands of cells, at a fraction of its cost.
    resampled = rng.poisson(counts, size=(RESAMPLES, len(counts))).astype(np.float64)
    logits = _logits(probabilities)
    calibrated = np.stack([c.of_logits(logits) for c, _ in fitted.replicates])
    sources = np.stack([source for _, source in fitted.replicates])
    estimates = _newton(calibrated, resampled, sources, priors)
    # The estimate ± 1.96 bootstrap deviations: steadier than percentiles of 50.
    spread = 1.959964 * estimates.std(axis=0, ddof=1)
    low, high = np.clip(priors - spread, 0.0, 1.0), np.clip(priors + spread, 0.0, 1.0)
    return Estimate(
        classes,
        priors.tolist(),
        fitted.priors.tolist(),
        low.tolist(),
        high.tolist(),
        float(np.abs(priors - fitted.priors).sum()),
        _pvalue(labelled.confusion, predicted, classes),
        conditioning,
        MLLS,
    )


def _pvalue(
    confusion: Mapping[tuple[str, str], int], predicted: Mapping[str, int], classes: list[str]
) -> float:
    """Chi-square test of the window's predicted classes against the reference's."""
    before = dict.fromkeys(classes, 0)
    for (p, _), count in confusion.items():
        if p in before:
            before[p] += count
    return st.chi_square_pvalue(
        np.array([before[c] for c in classes], dtype=np.float64),
        np.array([predicted.get(c, 0) for c in classes], dtype=np.float64),
    )


def _joint(confusion: Mapping[tuple[str, str], int], classes: list[str]) -> FloatArray:
    index = {c: i for i, c in enumerate(classes)}
    joint = np.zeros((len(classes), len(classes)))
    for (predicted, actual), count in confusion.items():
        if predicted in index and actual in index:
            joint[index[predicted], index[actual]] += count
    return joint


def _priors(joint: FloatArray, mu: FloatArray) -> FloatArray:
    """Current class priors from a joint confusion (normalised) and predicted shares."""
    weights = np.clip(np.linalg.lstsq(joint, mu, rcond=None)[0], 0.0, None)
    reference: FloatArray = joint.sum(axis=0)
    priors: FloatArray = weights * reference
    total = float(priors.sum())
    return priors / total if total > 0 else reference


def bbse(
    confusion: Mapping[tuple[str, str], int],
    predicted: Mapping[str, int],
    rng: np.random.Generator,
) -> Estimate | None:
    """Estimate the current class priors; ``None`` when C is too ill-conditioned."""
    classes = sorted({a for _, a in confusion} | {p for p, _ in confusion})
    counts = _joint(confusion, classes)
    n_ref, n_cur = int(counts.sum()), int(sum(predicted.get(c, 0) for c in classes))
    conditioning = condition(confusion, classes)
    if n_cur == 0 or not math.isfinite(conditioning) or conditioning > MAX_CONDITION:
        return None
    joint = counts / n_ref
    mu = np.array([predicted.get(c, 0) for c in classes], dtype=np.float64) / n_cur
    priors, reference = _priors(joint, mu), joint.sum(axis=0)
    shift = float(np.abs(priors - reference).sum())
    # The interval: bootstrap the reference confusion and the current predictions.
    resampled = rng.multinomial(n_ref, joint.ravel(), size=BOOTSTRAP).reshape(-1, *joint.shape)
    around = rng.multinomial(n_cur, mu, size=BOOTSTRAP) / n_cur
    estimates = [_priors(c / n_ref, m) for c, m in zip(resampled, around, strict=True)]
    low, high = np.percentile(np.array(estimates), [2.5, 97.5], axis=0)
    pvalue = st.chi_square_pvalue(counts.sum(axis=1), mu * n_cur)
    return Estimate(
        classes,
        priors.tolist(),
        reference.tolist(),
        low.tolist(),
        high.tolist(),
        shift,
        pvalue,
        conditioning,
    )
