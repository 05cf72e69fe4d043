"""Argument checks shared by the test-image generators: a wrong argument is refused in one sentence,
before any random draw, so that a valid call's images never change."""

from __future__ import annotations

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
