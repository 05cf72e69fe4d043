"""Argument checks shared by the test-image generators: a wrong argument is refused in one sentence,
before any random draw, so that a valid call's images never change."""

from __future__ import annotations

import numbers

import numpy as np

from mnistlab.errors import ParameterError


def check_rng(rng: object) -> np.random.Generator:
    """``rng`` itself, or a clear error when it is not a ``numpy.random.Generator`` (a seed, a RandomState...)."""
    if not isinstance(rng, np.random.Generator):
        raise ParameterError(
            "rng",
            f"{{param}} must be a numpy.random.Generator, not {type(rng).__name__}; "
            "pass numpy.random.default_rng(seed).",
        )
    return rng


def check_count(n: object, param: str = "n") -> int:
    """``n`` as an int, or a clear error when it is not a whole number of at least 0."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ParameterError(param, f"{{param}} must be a whole number, 0 or more, not {n!r}.")
    return int(n)
