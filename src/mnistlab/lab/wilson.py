"""The Wilson score interval of one accuracy: numpy-free arithmetic, so ``train`` and ``evaluate`` give it
without importing the statistics packages (``mnistlab.lab.stats`` takes a second to import)."""

from __future__ import annotations

import math

__all__ = ["wilson_interval"]

_Z = 1.959963984540054  # the standard normal's 97.5% quantile: a 95% interval


def wilson_interval(right: int, n: int) -> list[float]:
    """95% interval of the share ``right / n`` (Wilson's score interval, as statsmodels' ``proportion_confint``
    with ``method="wilson"`` gives it), rounded to 12 places: a perfect score's upper bound is 1, not 0.99...9."""
    p, z2 = right / n, _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return [round(max(0.0, centre - half), 12), round(min(1.0, centre + half), 12)]
