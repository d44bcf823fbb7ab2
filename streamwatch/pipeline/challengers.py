"""A champion's challengers (shadow or canary versions): taken out of the champion's
windows and paired with its predictions of the same events, whichever comes first."""

from __future__ import annotations

import math

import numpy as np

from streamwatch.batch import Batch
from streamwatch.detectors.base import PairDetector
from streamwatch.events import Event, EventColumns
from streamwatch.join import LabelJoin
from streamwatch.windows import LATE


def champion_only(
    predictions: EventColumns,
    champion: str | None,
    shadow: PairDetector,
    pairing: bool,
    join: LabelJoin,
) -> EventColumns:
    """The champion's predictions; the challengers' are paired (when ``pairing``) with
    the champion's the join holds, or wait for them."""
    # Only a configured champion splits versions: guessing one would, after a
    # rollout, take the new version for a challenger and stop windowing it.
    versions = predictions.version
    if champion is None:
        return predictions
    challengers = (versions != None) & (versions != champion)  # noqa: E711 (elementwise)
    if not challengers.any():
        return predictions
    if pairing:
        for event in predictions.take(challengers).events():
            _challenger(event, shadow, join)
    return predictions.take(~challengers)


def _challenger(event: Event, shadow: PairDetector, join: LabelJoin) -> None:
    prediction = event.prediction  # compared as it is: the task may not be known yet
    score = math.nan if event.score is None else event.score
    key, version = str(event.event_id), str(event.model_version)
    entry = join.peek(key)
    if entry is None:
        shadow.wait(key, version, prediction, score)
    else:
        shadow.pair(entry[1], version, (entry[2], entry[3]), (prediction, score))


def pair_waiting(shadow: PairDetector, batch: Batch, windows: np.ndarray, regression: bool) -> None:
    """Challengers that came before their champion meet it in this batch."""
    if not shadow.waiting or batch.event_ids is None:
        return
    waiting = shadow.waiting
    here = {k: i for i, k in enumerate(batch.event_ids.tolist()) if k in waiting}
    if not here:
        return
    outputs = batch.outputs
    predictions = (
        outputs.numeric.get("prediction") if regression else outputs.categorical.get("prediction")
    )
    scores = outputs.numeric.get("score")
    for key, i in here.items():
        version, prediction, score = shadow.take(key)
        if windows[i] == LATE or predictions is None:
            continue
        champion_score = math.nan if scores is None else float(scores[i])
        champion = (predictions[i], champion_score)
        shadow.pair(int(windows[i]), version, champion, (prediction, score))
