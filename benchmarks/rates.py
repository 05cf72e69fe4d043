"""Rates with their 95% Wilson intervals, as every benchmark of the reader reports them."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

__all__ = ["interval", "rate"]


def interval(k: int, n: int) -> tuple[float, float]:
    """95% Wilson interval for k successes in n trials (scipy's; (0, 1) when there are no trials)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def rate(flags) -> dict:
    """The share of True in ``flags``, its count and its interval."""
    flags = np.asarray(flags, bool)
    low, high = interval(int(flags.sum()), len(flags))
    return {
        "rate": float(flags.mean()) if len(flags) else 0.0,
        "n": int(len(flags)),
        "ci95": [round(low, 4), round(high, 4)],
    }
