"""What a seed may be: numpy and scikit-learn take whole numbers from 0 to 2**32 - 1.

Here, below every wing that takes a seed (``load_split`` as much as the
lab's options), and without numpy: the CLI checks its flags at start-up.
"""

from __future__ import annotations

import numbers

from mnistlab.errors import ParameterError

__all__ = ["MAX_SEED", "check_seed"]

MAX_SEED = 2**32 - 1


def check_seed(seed, param: str = "seed") -> None:
    """Refuse a seed numpy and scikit-learn cannot take (numpy's integers count as whole numbers)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise ParameterError(param, f"{{param}} must be a whole number from 0 to {MAX_SEED}, got {seed!r}.")
