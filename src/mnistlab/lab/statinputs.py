"""What a comparison's statistics are given, checked: one sentence on what is wrong, not numpy's broadcasting of
one seed's answers over another number of images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnistlab.errors import InputError

__all__ = ["checked_answers", "checked_pool"]


def checked_answers(y_true: Sequence | None, y_pred: Sequence | None, seeds: int, n_test: int) -> list | None:
    """Per seed, which of its ``n_test`` test images the model got right; None where no answers are given."""
    if y_true is None and y_pred is None:
        return None
    if y_true is None or y_pred is None:
        raise InputError("Give both y_true and y_pred (each seed's labels and predictions), or neither.")
    if len(y_true) != seeds or len(y_pred) != seeds:
        raise InputError(
            f"y_true and y_pred must hold one array per seed, as accuracies holds one accuracy per seed ({seeds}); "
            f"got {len(y_true)} and {len(y_pred)} arrays."
        )
    rights = []
    for seed, (y, p) in enumerate(zip(y_true, y_pred), start=1):
        y, p = np.asarray(y), np.asarray(p)
        if y.shape != (n_test,) or p.shape != (n_test,):
            raise InputError(
                f"Seed {seed} has labels of shape {y.shape} and predictions of shape {p.shape}; give one label and "
                f"one prediction per test image, n_test ({n_test:g}) of each."
            )
        rights.append(p == y)
    return rights


def checked_pool(pool, n_test: int) -> None:
    """Refuse a ``pool`` (the images each seed drew its test images from) that is no whole number of at least the
    ``n_test`` images drawn: 0 was a ZeroDivisionError, a negative one a math domain error or an interval of
    nonsense."""
    if pool is None:
        return
    whole = isinstance(pool, (int, float, np.number)) and not isinstance(pool, bool) and float(pool).is_integer()
    if not whole or pool < n_test:
        raise InputError(
            f"pool must be the number of images each seed drew its test images from, a whole number of at least "
            f"the {n_test:g} test images, got {pool!r}; give None where every seed was tested on the same images."
        )
