"""The names a figure gives a data set's classes: its ``target_names`` ("Sneaker"), or the class numbers.

A class is stored as its number (0-9); Fashion-MNIST's are clothes, and a
figure that labels them 0-9 leaves its reader to look each one up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnistlab.data.registry import registered_class_names
from mnistlab.errors import InputError

__all__ = ["class_titles", "class_ticks", "class_noun", "dataset_class_names"]


def _checked(names, k: int | None = None) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        raise InputError(f"names must be a list of class names (a data set's target_names), got {names!r:.60}.")
    names = [str(n) for n in names]
    if k is not None and len(names) != k:
        raise InputError(f"names holds {len(names)} class names for {k} classes; give one name per class.")
    return names


def class_titles(classes: np.ndarray, names=None) -> list[str]:
    """The title of each of ``classes``: ``names[c]`` for class number ``c``, or ``c`` itself without ``names``."""
    if names is None:
        return [str(c) for c in classes]
    names = _checked(names)
    titles = []
    for c in classes:
        if not (isinstance(c, int | np.integer) and 0 <= c < len(names)):
            raise InputError(
                f"labels hold {c}, which is no class number of the {len(names)} names given; "
                f"give labels from 0 to {len(names) - 1}, or no names."
            )
        titles.append(names[int(c)])
    return titles


def class_ticks(names, k: int) -> dict:
    """``set_xticks`` keywords labelling ``k`` classes by ``names`` (by number without), slanted when long."""
    labels = [str(i) for i in range(k)] if names is None else _checked(names, k)
    if max(len(label) for label in labels) <= 3:
        return {"labels": labels}
    return {"labels": labels, "rotation": 30, "ha": "right", "rotation_mode": "anchor"}


def class_noun(names) -> str:
    """What a figure calls one image of these classes: "digit" where they are unnamed or named by their numbers
    (MNIST's, scikit-learn's digits), else "image" (Fashion-MNIST's clothes are no digits)."""
    if names is None:
        return "digit"
    names = _checked(names)
    return "digit" if names == [str(i) for i in range(len(names))] else "image"


def dataset_class_names(dataset: str | None, data_dir: str | None = None) -> list[str] | None:
    """The names of the classes of a registered dataset (Fashion-MNIST's clothes); None for others, whose classes
    are their numbers (``registered_class_names``)."""
    names = registered_class_names(dataset, data_dir)
    return list(names) if names is not None else None
