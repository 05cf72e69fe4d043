"""The settings of a training run, checked in one place.

``train_recipe``, ``compare`` and the CLI's ``train``/``compare`` all take the
same settings; each builds one ``RunOptions``, so a setting, its default and
the sentence that refuses a bad value are written once. Errors are
``ParameterError``s that name the Python parameter (``limit``); the CLI
renames it to its flag (``--limit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mnistlab.errors import ParameterError

if TYPE_CHECKING:  # for annotations only: the CLI imports this module at start-up, recipes pull in scikit-learn
    from mnistlab.models.recipes import Recipe

__all__ = ["run_options", "RunOptions", "Progress", "noop", "SPLITS", "MIN_LIMIT"]

Progress = Callable[[str], None]  # receives a short description of the step now starting
SPLITS = ("official", "random")
MIN_LIMIT = 20  # a stratified subset needs a couple of images of each of the 10 classes


def noop(_: str) -> None:
    """A progress callback that shows nothing."""


@dataclass(frozen=True)
class RunOptions:
    """How to train and test a recipe.

    cv : folds of cross-validation on the training set; 0 skips it, None
        takes the recipe's own default (3, or 0 for slow recipes).
    split : "official" (first 60,000 / last 10,000) or "random" (stratified).
    test_size : for the random split, a fraction or a count of test images.
    seed : seeds the model, the random split and the ``limit`` subset.
    limit : train on a stratified subset of this many training images.
    n_jobs : processes for CV folds and parallel models; -1 uses all cores.
    target : CNN recipes only: stop once a held-out accuracy reaches it.
    """

    cv: int | None = None
    split: str = "official"
    test_size: int | float | None = None
    seed: int = 42
    limit: int | None = None
    n_jobs: int = 1
    target: float | None = None

    def __post_init__(self) -> None:
        if self.cv is not None and self.cv != 0 and self.cv < 2:
            raise ParameterError(
                "cv", f"{{param}} must be 0 (skip cross-validation) or at least 2 folds, got {self.cv}."
            )
        if self.split not in SPLITS:
            raise ParameterError("split", f"Unknown split {self.split!r}; expected one of {', '.join(SPLITS)}.")
        if self.n_jobs == 0 or self.n_jobs < -1:
            raise ParameterError(
                "n_jobs", f"{{param}} must be a positive number of processes or -1 for all cores, got {self.n_jobs}."
            )

    def for_recipe(self, recipe: Recipe) -> RunOptions:
        """These options with the recipe's default folds filled in; ``target`` only for CNN recipes."""
        if self.target is not None and recipe.family != "cnn":
            raise ParameterError(
                "target",
                f"{{param}} applies to CNN recipes only, got {recipe.name!r}; drop {{param}} or pick a CNN recipe.",
            )
        return self if self.cv is not None else replace(self, cv=recipe.cv)

    def check_limit(self, n_train: int) -> None:
        """Refuse a ``limit`` outside what a training set of ``n_train`` images can give."""
        if self.limit is not None and not MIN_LIMIT <= self.limit <= n_train:
            raise ParameterError(
                "limit", f"{{param}} must be between {MIN_LIMIT} and {n_train} training images, got {self.limit}."
            )


def run_options(**settings) -> RunOptions:
    """``RunOptions(**settings)``, with an unknown setting refused in one sentence instead of a TypeError."""
    known = set(RunOptions.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ParameterError(unknown[0], f"Unknown setting {{param}}; expected one of {', '.join(sorted(known))}.")
    return RunOptions(**settings)
