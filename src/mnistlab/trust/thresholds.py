"""When to say "not sure": thresholds on the scores and on the classifier's probability.

No threshold is set by hand; each is a quantile of held-out digits:

* ``calibrate_thresholds`` (once, for the shipped reader): 0.5% of real digits
  may be flagged as "not a digit". Part of that budget goes to the detector
  alone (its own quantile), the rest to the fixed scores at one common quantile
  ``q`` (both tails for ink fraction and stroke width; ``q`` by bisection). The
  detector's share (0, 10%, ..., 100%) is the one that flags most held-out
  non-digits.
* ``calibrate_probability`` (per classifier, when it is trained): the least
  sure answers on held-out digits are flagged until 0.8% are flagged in all,
  0.2 points under the 1% aim because tails this thin move on new digits. The
  threshold comes from one half of the held-out digits, the flag rate recorded
  with it from the other half. How sure an answer is: the classifier's
  probability times how digit-shaped the detector finds the image (1 - its
  not-a-digit probability). At the same share of MNIST digits flagged, that
  flagged 2-4 points more of each kind of letter and of symbols than the
  probability alone, with digits of other hands flagged and misread about as
  often (benchmarks/RESULTS.md). Cuts calibrated before carry no ``measure``
  and keep comparing the probability alone.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np

from mnistlab.models.cards import MEASURES
from mnistlab.trust.scores import SCORES, TWO_SIDED

__all__ = [
    "Thresholds",
    "ProbabilityCut",
    "MEASURES",
    "MEASURE",
    "sureness",
    "calibrate_thresholds",
    "calibrate_probability",
    "flags",
    "assess",
    "OOD_RATE",
    "TOTAL_RATE",
    "NO_INK",
    "SMALL_INK",
]

# The reason for an image without ink that could be a digit: a blank canvas, array or page.
NO_INK = "no ink found"
# ... and for a photo whose only ink is specks, which may be a digit photographed from afar (ink spanning under
# 6% of the photo's longer side is taken for a speck: a 180 px digit in a 4000 x 3000 photo was "no ink found",
# and read right once cropped). ``look_again`` tells the two apart.
SMALL_INK = "no digit-sized ink found; crop a small digit out of a big photo"
OOD_RATE = 0.005  # share of real digits the scores may flag as "not a digit"
TOTAL_RATE = 0.008  # share of real digits flagged in all, the classifier's doubt included
MEASURE = MEASURES[1]  # what a cut calibrated now compares with: the probability times digit shape
_DETECTOR = "not_a_digit"
_REASONS = {
    "blobs": "looks like noise",
    "reconstruction_error": "not digit-shaped",
    "ink_fraction": "not digit-shaped",
    "stroke_width": "not digit-shaped",
    "not_a_digit": "does not look like a digit",
}


@dataclass(frozen=True)
class Thresholds:
    """Score limits outside which an image is "not a digit" (``SCORES`` names -> value)."""

    lower: dict
    upper: dict
    detector_share: float  # of the 0.5% budget on digits, the share left to the detector alone
    method: str

    def __post_init__(self):
        """Refuse limits no calibration gives (they come from a reader's card): a NaN or unknown score's limit
        flagged nothing, a string one failed at the first answer."""
        for side in (self.lower, self.upper):
            if not isinstance(side, dict) or not all(name in SCORES and _is_number(v) for name, v in side.items()):
                raise ValueError(f"threshold limits must map scores ({', '.join(SCORES)}) to finite numbers")
        _check_share("detector_share", self.detector_share)
        _check_method(self.method)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProbabilityCut:
    """How sure a classifier's answer must be (``sureness`` above ``min_probability``) to be trusted."""

    min_probability: float
    flag_rate_calibration: float
    flag_rate_evaluation: float
    method: str
    measure: str = MEASURES[0]  # cards written before the measure was recorded compared the probability

    def __post_init__(self):
        """Refuse a cut no calibration gives (it comes from a reader's card or the cache): at a NaN cut every
        answer was "sure", a string one failed at the first answer."""
        for name in ("min_probability", "flag_rate_calibration", "flag_rate_evaluation"):
            _check_share(name, getattr(self, name))
        _check_method(self.method)
        if self.measure not in MEASURES:
            raise ValueError(f"unknown measure {self.measure!r}; expected one of {', '.join(MEASURES)}")

    def to_json(self) -> dict:
        return asdict(self)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_share(name: str, value) -> None:
    if not (_is_number(value) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")


def _check_method(method) -> None:
    if not isinstance(method, str):
        raise ValueError(f"method must be a string saying how the limits were set, not {method!r}")


def sureness(measure: str, probability, not_a_digit):
    """What the cut is compared with: the probability, or that times 1 - ``not_a_digit`` (numbers or arrays)."""
    return probability if measure == MEASURES[0] else probability * (1 - not_a_digit)


def flags(scores: np.ndarray, lower: dict, upper: dict) -> np.ndarray:
    """(N,) bool: which rows of (N, len(SCORES)) scores fall outside the limits."""
    out = np.zeros(len(scores), bool)
    for j, name in enumerate(SCORES):
        if name in upper:
            out |= scores[:, j] > upper[name]
        if name in lower:
            out |= scores[:, j] < lower[name]
    return out


def _limits(scores: np.ndarray, q: float, q_detector: float) -> tuple[dict, dict]:
    """Limits at quantile ``q`` of each fixed score and ``q_detector`` of the detector's."""
    lower, upper = {}, {}
    for j, name in enumerate(SCORES):
        if name == _DETECTOR:
            if q_detector > 0:
                upper[name] = float(np.quantile(scores[:, j], 1 - q_detector))
        elif name in TWO_SIDED:
            lower[name] = float(np.quantile(scores[:, j], q / 2))
            upper[name] = float(np.quantile(scores[:, j], 1 - q / 2))
        else:
            upper[name] = float(np.quantile(scores[:, j], 1 - q))
    return lower, upper


def _budgeted(digits: np.ndarray, share: float) -> tuple[dict, dict]:
    """Limits flagging ``OOD_RATE`` of ``digits``: ``share`` of it by the detector, the rest by the fixed scores."""
    q_detector = share * OOD_RATE
    lo, hi = 0.0, 0.05
    for _ in range(40):  # the flag rate grows with q: bisect
        q = (lo + hi) / 2
        if flags(digits, *_limits(digits, q, q_detector)).mean() > OOD_RATE:
            hi = q
        else:
            lo = q
    return _limits(digits, lo, q_detector)


def calibrate_thresholds(digits: np.ndarray, non_digits: np.ndarray, method: str) -> Thresholds:
    """Thresholds from scores of held-out digits and of held-out non-digits."""
    shares = np.linspace(0, 1, 11)
    caught = [flags(non_digits, *_budgeted(digits, share)).mean() for share in shares]
    share = float(shares[int(np.argmax(caught))])  # the smallest share among equals
    lower, upper = _budgeted(digits, share)
    return Thresholds(lower, upper, share, method)


def calibrate_probability(
    thresholds: Thresholds,
    scores: np.ndarray,
    proba: np.ndarray,
    calibration: np.ndarray,
    evaluation: np.ndarray,
    method: str,
    measure: str = MEASURE,
) -> ProbabilityCut:
    """The cut for one classifier, from held-out digits' (N, len(SCORES)) scores and (N, 10) probabilities.

    ``calibration`` and ``evaluation`` index two disjoint halves of those digits.
    """
    ood = flags(scores, thresholds.lower, thresholds.upper)
    sure = sureness(measure, proba.max(1), scores[:, SCORES.index(_DETECTOR)])  # (N,)
    cal_ood, cal_sure = ood[calibration], sure[calibration]
    extra = max(0, int(round(TOTAL_RATE * len(cal_sure))) - int(cal_ood.sum()))
    kept = np.sort(cal_sure[~cal_ood])
    cut = float(kept[extra - 1]) if extra > 0 and len(kept) else 0.0
    rate = lambda idx: float((ood[idx] | (sure[idx] <= cut)).mean()) if len(idx) else 0.0  # noqa: E731
    return ProbabilityCut(cut, rate(calibration), rate(evaluation), method, measure)


def assess(
    thresholds: Thresholds, cut: ProbabilityCut, scores: np.ndarray, probability: float, ink: bool
) -> str | None:
    """The reason not to trust one answer, or None when it is confident."""
    if not ink:
        return NO_INK
    for name in sorted(SCORES, key=lambda n: n != "blobs"):  # "looks like noise" says most, so first
        j = SCORES.index(name)
        if scores[j] > thresholds.upper.get(name, np.inf) or scores[j] < thresholds.lower.get(name, -np.inf):
            return _REASONS[name]
    if probability <= cut.min_probability:
        return f"low probability ({probability:.2f})"
    not_a_digit = float(scores[SCORES.index(_DETECTOR)])
    if sureness(cut.measure, probability, not_a_digit) <= cut.min_probability:  # a sure answer, a doubted shape
        return f"not sure it is a digit (probability {probability:.2f}, {1 - not_a_digit:.2f} digit-shaped)"
    return None
