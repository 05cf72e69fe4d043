"""The settings of a training run, checked in one place.

``train_recipe``, ``compare`` and the CLI's ``train``/``compare`` all take the
same settings; each builds one ``RunOptions``, so a setting, its default and
the sentence that refuses a bad value are written once. Errors are
``ParameterError``s that name the Python parameter (``limit``); the CLI
renames it to its flag (``--limit``). Every value is checked when the options
are made, before any data is read; what depends on the data (``limit``,
``cv`` against the smallest class) as soon as it is loaded. Output folders
and files are checked the same way (``check_writable_dir``,
``check_writable_file``), before the work whose result they would hold.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlab.data.home import checked_path, home_path, refuse_empty_path
from mnistlab.data.seeds import MAX_SEED, check_seed
from mnistlab.errors import DatasetError, ParameterError
from mnistlab.models.folder import folder_in_the_way, foreign_file, foreign_sentence, model_file_named
from mnistlab.trust.shipped import PACKAGE_DIR, inside_package

if TYPE_CHECKING:  # for annotations only: the CLI imports this module at start-up, recipes pull in scikit-learn
    from mnistlab.models.recipes import Recipe

__all__ = [
    "run_options",
    "RunOptions",
    "Progress",
    "noop",
    "SPLITS",
    "MIN_LIMIT",
    "MAX_SEED",
    "MAX_JOBS",
    "check_seed",
    "check_writable_dir",
    "check_writable_file",
    "folder_meant",
    "check_model_dir",
    "unwritable_reason",
    "plain_number",
    "callback",
]

Progress = Callable[[str], None]  # receives a short description of the step now starting
SPLITS = ("official", "random")
MIN_LIMIT = 20  # a stratified subset needs a couple of images of each of the 10 classes
MAX_JOBS = 256  # processes: more than any machine mnistlab runs on has cores


def noop(_: str) -> None:
    """A progress callback that shows nothing."""


def callback(fn, param: str = "progress") -> Callable:
    """``fn``, or ``noop`` for None; refused in one sentence if it cannot be called (it was a TypeError at the
    first step: after the data had loaded, or for ``compare``'s ``on_result`` after the first fit)."""
    if fn is None:
        return noop
    if not callable(fn):
        raise ParameterError(param, f"{{param}} must be a function (something callable) or None, got {fn!r}.")
    return fn


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
        for name in ("cv", "test_size", "seed", "limit", "n_jobs", "target"):  # numpy's numbers as Python's
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        if not _is_int(self.cv, optional=True) or (self.cv is not None and self.cv != 0 and self.cv < 2):
            raise ParameterError(
                "cv", f"{{param}} must be 0 (skip cross-validation) or a count of at least 2 folds, got {self.cv!r}."
            )
        if self.split not in SPLITS:
            raise ParameterError("split", f"Unknown split {self.split!r}; expected one of {', '.join(SPLITS)}.")
        self._check_test_size()
        check_seed(self.seed)
        if not _is_int(self.limit, optional=True) or (self.limit is not None and self.limit < MIN_LIMIT):
            raise ParameterError(
                "limit", f"{{param}} must be a count of at least {MIN_LIMIT} training images, got {self.limit!r}."
            )
        if self.cv and self.limit is not None and self.cv > self.limit:
            raise ParameterError(
                "cv", f"{{param}} must be at most the {self.limit} training images of the limit, got {self.cv}."
            )
        if not _is_int(self.n_jobs) or not (self.n_jobs == -1 or 1 <= self.n_jobs <= MAX_JOBS):
            raise ParameterError(
                "n_jobs",
                f"{{param}} must be a positive number of processes (at most {MAX_JOBS}) or -1 for all cores, "
                f"got {self.n_jobs!r}.",
            )
        target = self.target
        if target is not None and not (_is_number(target) and 0 < target <= 1):
            raise ParameterError("target", f"{{param}} must be an accuracy above 0 and at most 1, got {target!r}.")

    def _check_test_size(self) -> None:
        size = self.test_size
        if size is None:
            return
        if self.split != "random":
            raise ParameterError(
                "test_size", "{param} applies to the random split only; drop it or use the random split."
            )
        fraction = _is_number(size) and not _is_int(size) and 0 < size < 1
        if not (fraction or (_is_int(size) and size >= 10)):
            raise ParameterError(
                "test_size",
                f"{{param}} must be a fraction between 0 and 1 or a whole count of at least 10 test images, got {size!r}.",
            )

    def check_arrays(self, data) -> None:
        """Refuse the random split for arrays passed from Python (``data``): they come split, and were trained on
        as they came while the card and the result said ``split: random``."""
        if data is not None and self.split != "official":
            raise ParameterError(
                "split",
                f"{{param}}={self.split!r} cuts MNIST as train_recipe loads it, but data holds arrays split already "
                "(X_train, X_test, y_train, y_test); drop {param} (and test_size) to train and test on them as they are.",
            )

    def for_recipe(self, recipe: Recipe) -> RunOptions:
        """These options with the recipe's default folds filled in; ``target`` only for CNN recipes."""
        if self.target is not None and recipe.family != "cnn":
            raise ParameterError(
                "target",
                f"{{param}} applies to CNN recipes only, got {recipe.name!r}; drop {{param}} or pick a CNN recipe.",
            )
        return self if self.cv is not None else replace(self, cv=recipe.cv)

    def check_limit(self, y_train) -> None:
        """Refuse a ``limit`` outside what the training labels ``y_train`` can give as a stratified subset."""
        if self.limit is None:
            return
        import numpy as np  # not at start-up: the CLI imports this module for its flags

        classes, counts = np.unique(np.asarray(y_train), return_counts=True)
        n, k, limit = len(y_train), len(classes), self.limit
        if n < max(MIN_LIMIT, k):  # no limit fits: "between 20 and 10" asked for none
            raise ParameterError(
                "limit",
                f"{{param}} {limit} is more than the {n} training images there are, and a {{param}} takes at least "
                f"{max(MIN_LIMIT, k)}; leave out {{param}} to train on all {n}.",
            )
        if not max(MIN_LIMIT, k) <= limit <= n:
            raise ParameterError(
                "limit", f"{{param}} must be between {max(MIN_LIMIT, k)} and {n} training images, got {limit}."
            )
        if limit == n:  # all of them: no subset to take
            return
        # scikit-learn's stratified subset leaves out one image of each class or more, so each needs two.
        if counts.min() < 2:
            c = classes[counts.argmin()].item()
            raise ParameterError(
                "limit",
                "{param} takes a stratified subset of the training images, which needs two or more of each class, "
                f"but class {c} has one; give a {{param}} of {n} (them all), or add images of class {c}.",
            )
        if n - limit < k:
            raise ParameterError(
                "limit",
                f"{{param}} {limit} leaves {n - limit} of the {n} training images out, but a stratified subset "
                f"leaves out one of each of the {k} classes or more; give a {{param}} of at most {n - k}, or {n} "
                "for them all.",
            )

    def check_cv(self, y_train, default_of: str | None = None) -> None:
        """Refuse more folds than the rarest class of the training labels ``y_train`` has images; ``default_of``:
        the recipe whose own folds ``cv`` is (none were given), named as such rather than as a value given."""
        if not self.cv:
            return
        import numpy as np  # not at start-up: the CLI imports this module for its flags

        # Each fold of a stratified split needs an image of every class.
        fewest = int(np.unique(np.asarray(y_train), return_counts=True)[1].min())
        if self.cv > fewest and fewest < 2:  # "at most 1" would ask for a number of folds there is not
            asked = (
                f"{{param}} {self.cv} asks for cross-validation"
                if default_of is None
                else f"{default_of} cross-validates in {self.cv} folds unless {{param}} says otherwise"
            )
            raise ParameterError(
                "cv",
                f"{asked}, which needs two or more training images of each class, but the rarest class has "
                f"{fewest}; give {{param}} 0 to skip it.",
            )
        if self.cv > fewest and default_of is not None:
            raise ParameterError(
                "cv",
                f"{default_of} cross-validates in {self.cv} folds unless {{param}} says otherwise, more than the "
                f"{fewest} training images of the rarest class; give {{param}} {fewest} or less (0 skips "
                "cross-validation).",
            )
        if self.cv > fewest:
            raise ParameterError(
                "cv", f"{{param}} must be at most {fewest}, the training images of the rarest class, got {self.cv}."
            )

    def check_fit_sizes(self, recipe: Recipe, y_train, pixels: int | None = None, images: str = "these images") -> None:
        """Refuse a training set, or a CV fold's, with fewer images than a PCA step of ``recipe`` keeps components,
        and ``images`` (named so in the sentence) of fewer ``pixels`` each than that: scikit-learn refused both in
        a traceback, mid-run ("n_components=40 must be between 0 and min(n_samples, n_features)=20")."""
        if recipe.family != "classic":  # a user's estimator is built once, by the spec's check
            return
        import numpy as np  # not at start-up: the CLI imports this module for its flags
        from sklearn.model_selection import StratifiedKFold  # the folds cross_validate uses

        params = recipe.build(self.seed, 1).get_params()
        kept = [v for k, v in params.items() if k.endswith("n_components") and type(v) is int]
        if not kept:
            return
        need, fits = max(kept), [len(y_train)]
        if pixels is not None and pixels < need:  # a folder of small images: no limit or fold size helps
            raise DatasetError(
                f"{recipe.name} keeps {need} principal components of each image, more than the {pixels} pixels "
                f"{images} hold; use images of {need} pixels or more, or a model without so many components "
                "(logreg, knn and extra-trees keep none)."
            )
        if self.cv:
            folds = StratifiedKFold(n_splits=self.cv).split(np.zeros((len(y_train), 1)), y_train)
            fits += [len(train) for train, _ in folds]
        fewest = min(fits)
        if fewest >= need:
            return
        given = "the training set" if self.limit is None else "{param} " + str(self.limit)
        said = (
            f"{recipe.name} keeps {need} principal components, so each of its fits needs {need} training images or more"
        )
        if len(y_train) < need:  # too few for the final fit: no --cv helps
            more = f"{{param}} {need} or more" if self.limit is not None else f"it {need} images or more"
            raise ParameterError("limit", f"{said}, and {given} leaves {len(y_train)}; give {more}.")
        larger = "a larger {param}" if self.limit is not None else "it more training images"  # no limit to raise
        fold = f"{fewest} in a fold of its {self.cv}-fold cross-validation; give {larger}, or --cv 0."
        raise ParameterError("limit", f"{said}, and {given} leaves {fold}")


def folder_meant(path) -> str | None:
    """Where a file's path, given as a string, ends in a separator (``figs/``): why it is refused, the middle of
    a sentence; else None. It names a folder, and ``Path`` drops the separator: the file was written under the
    folder's name (``--out figs/`` wrote a file figs, ``--out best.json/`` a file best.json)."""
    if isinstance(path, str) and path.endswith(_SEPARATORS):
        return f"{path} ends in {path[-1]}, which names a folder; give a file name inside it"
    return None


_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def _check_given(path, param: str) -> None:
    """Refuse an empty path: ``Path("")`` is the current folder, which no one means by giving nothing; and a value
    that is no path at all (None, a number), which ``Path`` refused in a TypeError."""
    refuse_empty_path(path, param)


def check_writable_dir(path, param: str) -> Path:
    """Refuse a folder (existing or to be made) that cannot take new files; returns it as a Path.

    Tried, not guessed from permission bits (which say yes to root in /proc):
    a temporary file is made and removed in the folder, or in the nearest
    existing folder above it. Nothing is left behind.
    """
    path = checked_path(path, param)  # a leading ~ is the home folder, as the CLI takes it
    if path.exists() and not path.is_dir():
        raise ParameterError(param, f"{{param}} {path} is a file, not a folder; choose a folder.")
    _refuse_package(path, param, folder=True)
    _probe(path, param)
    return path


def check_model_dir(path, param: str) -> Path:
    """``check_writable_dir`` for a model directory, which also refuses one where a file the save writes
    (``model.json``, the weights) is a folder: ``save_model`` could not replace it, after the training."""
    path = check_writable_dir(path, param)
    blocked = folder_in_the_way(path)
    if blocked is not None:
        raise ParameterError(
            param,
            f"{{param}} {path} holds a folder named {blocked.name}, where the model's file goes; "
            "remove it or choose another folder.",
        )
    foreign = foreign_file(path)
    if foreign is not None:
        raise ParameterError(param, f"{{param}} {path}: {foreign_sentence(foreign)}")
    return path


def check_writable_file(path, param: str) -> Path:
    """Refuse a file path that cannot be written: a folder, or a place without a writable folder."""
    _check_given(path, param)
    meant = folder_meant(path)
    if meant is not None:
        raise ParameterError(param, f"{{param}} {meant}.")
    path = Path(home_path(path, param))
    if path.is_dir():
        raise ParameterError(param, f"{{param}} {path} is a folder; give a file name inside it.")
    _refuse_package(path, param)
    if model_file_named(path):
        raise ParameterError(
            param,
            f"{{param}} {path} is a file of the model saved in {path.parent}, which writing it would break; "
            "give another file name, or a path outside that folder.",
        )
    _probe(path.parent, param, shown=path)
    return path


def _refuse_package(path: Path, param: str, *, folder: bool = False) -> None:
    """Refuse a path inside mnistlab's own package folder: a file written over the shipped reader (``export
    --onnx .../pretrained/classifier.onnx``) broke every later ``predict`` and ``serve``."""
    if inside_package(path, folder=folder):
        raise ParameterError(
            param,
            f"{{param}} {path} is inside mnistlab's own package folder {PACKAGE_DIR}, which holds the reader "
            "predict and serve use; choose a path outside it.",
        )


def _probe(folder: Path, param: str, shown: Path | None = None) -> None:
    reason = unwritable_reason(folder)
    if reason is not None:
        raise ParameterError(
            param, f"Cannot write {{param}} {shown or folder} ({reason}); choose a place you can write to."
        )


def unwritable_reason(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (or the nearest existing folder above it), or None."""
    existing = folder.absolute()
    # A link to nothing (a loop, a target gone) is no folder to make: not climbed past to a writable one above.
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    reason = None
    if not existing.exists():
        reason = f"{existing} is a link to nothing: a loop, or its target is gone"
    elif not existing.is_dir():
        reason = f"{existing} is a file"
    else:
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
    return reason


def plain_number(value):
    """A numpy integer or float as Python's ``int`` or ``float`` (the card, JSON, holds no numpy type); any other
    value as it is, to be checked."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return float(value)
    return value


def _is_int(value, *, optional: bool = False) -> bool:
    if optional and value is None:
        return True
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def run_options(**settings) -> RunOptions:
    """``RunOptions(**settings)``, with an unknown setting refused in one sentence instead of a TypeError."""
    known = set(RunOptions.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ParameterError(unknown[0], f"Unknown setting {{param}}; expected one of {', '.join(sorted(known))}.")
    return RunOptions(**settings)
