"""One unit of a comparison: one model fitted and tested on one dataset with one seed.

``open_dataset`` loads (and verifies) a dataset once; ``split_for`` cuts the
split a seed asks for; ``fit_one`` cross-validates, fits, tests and saves one
contender on it. Each unit is independent of the others, so they can run in
any order or place; recording and reuse are the caller's (``compare``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split

from mnistlab.data.home import tilde_path
from mnistlab.data.load import KNOWN_DATASETS, images_max, load_mnist, load_split
from mnistlab.errors import DatasetError, MnistlabError, ModelFileError, RecipeError
from mnistlab.lab.options import Progress, RunOptions
from mnistlab.lab.record import Record, trained_device
from mnistlab.lab.specs import Contender
from mnistlab.lab.train import TrainTest, check_classes, fit_and_test
from mnistlab.models.files import save_model

__all__ = ["open_dataset", "split_for", "fit_one", "Fitted"]


def open_dataset(dataset: str):
    """``(name, bunch)`` of a dataset name (mnist, fashion-mnist, digits) or a folder of four IDX files."""
    if not dataset.strip():  # an unset $DATA: Path("") is the current folder, which no one means by giving nothing
        raise DatasetError(
            f"The dataset's name is empty; give one of {', '.join(KNOWN_DATASETS)} or a folder holding the four IDX files."
        )
    if dataset in KNOWN_DATASETS:
        return dataset, load_mnist(dataset)
    folder = tilde_path(dataset, lambda why: DatasetError(f"{dataset} {why}; give the folder's full path."))
    if Path(folder).is_dir():  # "~/idx" in the home folder, as --data-dir and load_mnist take it
        bunch = load_mnist(data_dir=folder)
        _check_square(bunch)
        return bunch.details["name"], bunch
    raise DatasetError(
        f"Unknown dataset {dataset!r}; give one of {', '.join(KNOWN_DATASETS)} or a folder holding the four IDX files."
    )


def _check_square(bunch) -> None:
    """Refuse a folder of images that are not square: every model reads its images as flat rows, which make a
    square again (28 x 20 digits fitted a CNN on their 560 pixels laid out as 24 x 24, and the report failed)."""
    height, width = bunch.images.shape[1:]
    if height != width:
        raise DatasetError(
            f"{bunch.details['files']['train_images']} holds images of {height} x {width} pixels (height x width), "
            "and mnistlab's models read square images only; crop or pad them to a square."
        )


def split_for(name: str, bunch, options: RunOptions) -> TrainTest:
    """The training and test sets of ``options`` (split, test size, seed, limit) from a loaded dataset."""
    X_train, X_test, y_train, y_test = load_split(
        split=options.split, test_size=options.test_size, seed=options.seed, bunch=bunch
    )
    options.check_limit(y_train)
    check_classes(y_train, name)
    _check_test_classes(name, bunch, y_train, y_test)
    if options.limit is not None and options.limit < len(y_train):
        X_train, _, y_train, _ = train_test_split(
            X_train, y_train, train_size=options.limit, stratify=y_train, random_state=options.seed
        )
    top = images_max(bunch.details)
    if top != 255:  # mnistlab's models read integer pixels on MNIST's 0-255 scale: scikit-learn's digits go to 0-255
        X_train, X_test = (
            np.rint(np.asarray(X, np.float32) * np.float32(255 / top)).astype(np.uint8) for X in (X_train, X_test)
        )
    for array in (X_train, X_test, y_train, y_test):  # shared by every model of a comparison: none may change them
        array.setflags(write=False)
    # A folder's name alone does not find it again, not even one named mnist: only a registered dataset's checksums
    # (verified) say that its name does.
    data_dir = None if bunch.details["verified"] else bunch.details["path"]
    return TrainTest(X_train, X_test, y_train, y_test, bunch.details["data_sha256"], name, top, data_dir)


def _check_test_classes(name: str, bunch, y_train, y_test) -> None:
    """Refuse test images of a class no training image has: every model gets each of them wrong, a comparison of
    nothing (a test labels file of other classes than the training set's, as a test set of 7s for a model of 0s and
    3s read 66% without a word of why)."""
    unseen, counts = np.unique(y_test[~np.isin(y_test, y_train)], return_counts=True)
    if unseen.size:
        where = bunch.details.get("files", {}).get("test_labels") or f"the test set of {name}"
        shown = ", ".join(str(c) for c in unseen[:10].tolist()) + (", ..." if unseen.size > 10 else "")
        raise DatasetError(
            f"{where} labels {int(counts.sum()):,} test images with classes no training image has ({shown}), so "
            "every model would get them wrong; give test and training files of the same classes."
        )


class Fitted(NamedTuple):
    """What ``fit_one`` gives back: the result object, the test predictions and the artifacts to record."""

    result: dict
    y_pred: np.ndarray  # (n_test,)
    card: dict  # as saved in model.json (the recorded model card)
    labels: list  # the classes of the confusion matrix, in order
    confusion: list  # confusion matrix, rows true, columns predicted


def fit_one(contender: Contender, options: RunOptions, d: TrainTest, model_dir: Path, progress: Progress) -> Fitted:
    """Cross-validate (``options.cv`` folds), fit, test and save one contender on ``d``.

    A user's torch module is also written as ``model.onnx`` beside its weights
    (the weights alone need the module's code to load). A model whose types
    mnistlab's safe format does not allow is tested and recorded but not saved.
    """
    recipe = contender.recipe
    name = f"{d.dataset} seed {options.seed}: {recipe.name}"
    # Classes defined in a user's file cannot be imported by worker processes.
    cv_options = dataclasses.replace(options, n_jobs=1) if contender.in_process else options
    if recipe.family == "cnn" or "mnistlab.models.cnn.estimator" in sys.modules:  # a CNN's first optimizer imports
        importlib.import_module("torch._dynamo")  # torch._dynamo (1-2 s, once): not that fit's time (a Ray task's too)
    try:
        run = fit_and_test(recipe, options, d, progress, name, cv_options=cv_options)
    except MnistlabError:
        raise
    except (Exception, SystemExit) as exc:  # the user's code failed or exited: one sentence (ours: its traceback)
        if not contender.users_code:
            raise
        if isinstance(exc, ValueError) and "read-only" in str(exc):  # ``split_for``'s arrays, shared by every model
            raise RecipeError(
                f"{name} failed: it changed the images or labels it was given ({exc}), which every model of the "
                "comparison shares; work on a copy (X = X.copy())."
            ) from None
        raise RecipeError(f"{name} failed ({type(exc).__name__}: {exc}); fix the classifier's code.") from None
    estimator, notes, y_pred = run.estimator, run.notes, run.y_pred
    for note in notes:  # a CNN of too few steps to learn (a small dataset's): said as train says it, not only kept
        progress(f"{name}: note: {note}")
    stretched = d.stretched_from if d.stretched_from != 255 else None
    record = Record(
        recipe,
        options,
        d.dataset,
        d.sha256,
        run.params,
        run.metrics,
        notes,
        data_dir=d.data_dir,
        stretched_from=stretched,
        device=trained_device(estimator),
    )
    card = {**record.card(), "spec": contender.spec, "code_sha256": contender.code_sha256}
    saved, why = _save(estimator, model_dir, card, progress, name)
    if saved is None:
        notes = [*notes, f"not saved: {why}, so it is never reused"]
        record = dataclasses.replace(record, notes=notes)
        progress(f"{name}: {notes[-1]} (tested and recorded all the same)")
    if saved is None:
        Path(model_dir).mkdir(parents=True, exist_ok=True)  # so that the result can say the folder holds nothing
        result = {**record.result(model_dir), "model_dir": None, "model_size_bytes": None}
    else:
        result = record.result(model_dir)
    labels = np.union1d(d.y_test, y_pred)
    matrix = confusion_matrix(d.y_test, y_pred, labels=labels).tolist()
    return Fitted(result, y_pred, card, labels.tolist(), matrix)


def _save(estimator, model_dir: Path, card: dict, progress: Progress, name: str) -> tuple[Path | None, str]:
    """Save into ``model_dir`` (plus ``model.onnx`` for a user's torch module): its folder, or None and why not
    (the format refuses its types, or the net cannot be written as ONNX)."""
    progress(f"{name}: saving to {model_dir}")
    graph = None
    if getattr(estimator, "module", None) is not None:
        from mnistlab.models.cnn.onnx import onnx_graph  # torch is loaded already; onnx only here

        try:  # written with the weights and the card: alone, a failed save lost the model
            graph = onnx_graph(estimator)
        except MnistlabError:
            raise
        except Exception as exc:  # torch.export refuses the user's forward (a branch on the data, say)
            return None, f"its net cannot be written as ONNX ({_root_cause(exc)})"
        card["onnx_sha256"] = hashlib.sha256(graph).hexdigest()
    try:
        return save_model(estimator, model_dir, card=card, onnx=graph), ""
    except ModelFileError as exc:
        if "allow-list" not in str(exc):
            raise
        return None, "its types are outside mnistlab's safe model format"


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of ``exc`` as ``Type: its first line``, without terminal colours (torch.export's)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {(lines or [''])[0][:200]}"
