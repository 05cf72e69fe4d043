"""Measure a saved model on the test set it was trained against."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mnistlab._atomic import atomic_write_together, hidden_folder, locked_where_possible
from mnistlab.data.home import checked_path, home_path
from mnistlab.data.load import KNOWN_DATASETS
from mnistlab.data.sources import find_idx_files
from mnistlab.errors import DatasetError, InputError, ModelFileError, ParameterError
from mnistlab.lab.classnames import dataset_class_names
from mnistlab.lab.options import Progress, RunOptions, callback, check_writable_dir, unwritable_reason
from mnistlab.lab.record import package_versions, predictions_sha256
from mnistlab.lab.train import TrainTest, load_data, pixels_in_words, thread_limits
from mnistlab.lab.wilson import wilson_interval
from mnistlab.models.files import load_model, read_card
from mnistlab.models.folder import CARD_FILE, CONFUSION_PNG, MISTAKES_PNG
from mnistlab.models.proba import class_probabilities, decision_margins, pixels_read

__all__ = ["evaluate_model", "model_data", "check_test_data", "check_figures_dir"]

GALLERY = 25  # mistakes drawn in mistakes.png


def evaluate_model(model_dir, *, out_dir=None, progress: Progress | None = None, data=None) -> dict:
    """Measure a saved model on the test set it was trained against.

    Returns accuracy, per-class precision/recall/F1/support, the confusion
    matrix, and the paths of ``confusion.png`` and ``mistakes.png`` (written
    into ``out_dir``, default the model directory).
    """
    # The figures need matplotlib, which costs ~0.8 s to import: only when a model is evaluated.
    from mnistlab.lab.plots import most_confident_mistakes, save_confusion_matrix

    model_dir, out_dir = home_path(model_dir, "model_dir"), home_path(out_dir, "out_dir")  # ~ is home, as in the CLI
    # Before the model is measured; an empty model_dir is named as such, not as an empty out_dir.
    check_figures_dir(model_dir, out_dir)
    _refuse_other_model(out_dir, model_dir)
    _refuse_folders_in_the_way(Path(out_dir if out_dir is not None else model_dir))
    progress = callback(progress)
    progress(f"loading {model_dir}")
    estimator, card = load_model(model_dir)
    refusal = (
        "evaluate finds only MNIST, fashion-mnist, digits and a folder the card names; in Python, pass its data: "
        "evaluate_model(model_dir, data=(X_train, X_test, y_train, y_test))."
    )
    test = model_data(model_dir, estimator, card, data, refusal)
    X_test, y_test = test.X_test, test.y_test
    progress(f"predicting {len(y_test):,} test images")
    start = time.perf_counter()
    with thread_limits(card.get("family", "classic")):  # as in training, for identical predictions
        y_pred = np.asarray(estimator.predict(X_test))
        predict_seconds = time.perf_counter() - start
        proba = class_probabilities(estimator, X_test)
        margins = _mistakes_margins(estimator, X_test, y_pred != y_test, proba.shape)
    out_dir = Path(out_dir) if out_dir is not None else Path(model_dir)
    progress("drawing the confusion matrix and the mistakes")
    title = f"{card.get('recipe', 'model')}: accuracy {np.mean(y_pred == y_test):.4f}"
    # Named as models.folder knows them: a later save into the model's folder removes them with their model.
    names = dataset_class_names(card.get("dataset"), card.get("data_dir"))  # Fashion-MNIST's clothes
    # proba's columns are the model's classes_ (3 and 8, booleans), not the classes 0..K-1 their labels would number.
    classes = getattr(estimator, "classes_", None)
    shown = most_confident_mistakes(y_test, y_pred, proba, GALLERY, classes=classes, margins=margins)
    with _removed_unless_written(out_dir):
        with _drawing_folder(out_dir) as drawn:  # drawn, then written together
            save_confusion_matrix(y_test, y_pred, Path(drawn) / CONFUSION_PNG, title=title, names=names)
            sure = hasattr(estimator, "predict_proba")  # else proba is a softmax of margins: no chance to show
            _gallery(X_test, y_test, y_pred, proba, Path(drawn) / MISTAKES_PNG, classes, margins, names, sure=sure)
            figures = {p.name: p.read_bytes() for p in sorted(Path(drawn).iterdir())}
        _write_figures(out_dir, figures, Path(model_dir), card)
    confusion_png, gallery_png = out_dir / CONFUSION_PNG, out_dir / MISTAKES_PNG
    trained = (card.get("metrics") or {}).get("test_predictions_sha256")
    return {
        "model_dir": str(model_dir),
        "recipe": card.get("recipe"),
        "accuracy": float(np.mean(y_pred == y_test)),
        "accuracy_ci95": wilson_interval(int(np.count_nonzero(y_pred == y_test)), len(y_test)),
        "n_test": int(len(y_test)),
        "predict_seconds": predict_seconds,
        "per_class": _per_class(y_test, y_pred, names),
        "confusion_matrix": confusion_matrix(y_test, y_pred).tolist(),
        "confusion_png": str(confusion_png),
        "gallery_png": str(gallery_png),
        "most_confident_mistakes": shown.tolist(),  # test-set indices, in the gallery's order
        **_measured_on(card, test, given=data is not None),
        "same_data_as_training": test.sha256 == card.get("data_sha256"),
        "same_predictions_as_training": None if trained is None else trained == predictions_sha256(y_pred),
    }


def check_figures_dir(model_dir, out_dir) -> Path:
    """Where ``evaluate`` draws a model's figures, refused now if it cannot be written: ``out_dir``, else the model's
    own folder, said as such (a read-only model folder was "Cannot write --out DIR" of an --out no one gave)."""
    if out_dir is not None:
        return check_writable_dir(out_dir, "out_dir")
    model_dir = checked_path(model_dir, "model_dir")
    reason = unwritable_reason(model_dir) if model_dir.is_dir() else None
    if reason is not None:
        raise ParameterError(
            "out_dir",
            f"Cannot draw the figures into the model's folder {model_dir} ({reason}), where they go unless {{param}} "
            "names another; pass {param} with a folder you can write to.",
        )
    return check_writable_dir(model_dir, "model_dir")  # a file, a folder not there: said of model_dir


def _refuse_folders_in_the_way(out_dir: Path) -> None:
    """Refuse a folder where a figure goes (a file cannot replace it): found once the test set was measured, it
    was "Cannot write the figures into DIR (Is a directory)", naming neither the figure nor the folder."""
    for name in (CONFUSION_PNG, MISTAKES_PNG):
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():  # a link is replaced, whatever it points at
            raise InputError(f"{path} is a folder, where evaluate draws {name}; remove it or choose another --out.")


def _refuse_other_model(out_dir, model_dir) -> None:
    """Refuse an ``out_dir`` that holds another model: the figures would read as that model's (and replace its
    own), where a folder's figures are always those of the model beside them."""
    if out_dir is None or Path(out_dir).resolve() == Path(model_dir).resolve():
        return
    if (Path(out_dir) / CARD_FILE).exists():
        raise ParameterError(
            "out_dir",
            f"{{param}} {out_dir} holds another model (its {CARD_FILE}), beside which the figures of {model_dir} "
            f"would read as its own; give another folder, or leave out {{param}} to draw them into {model_dir}.",
        )


@contextlib.contextmanager
def _removed_unless_written(out_dir: Path) -> Iterator[None]:
    """For the block, which makes ``out_dir`` if need be: one it made is removed again, if empty, when the figures
    fail (a full disk): a new --out was left behind empty."""
    existed = out_dir.exists()
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise


@contextlib.contextmanager
def _drawing_folder(out_dir: Path) -> Iterator[str]:
    """A hidden folder in ``out_dir`` to draw the figures in (on its disk, whatever room the system's temporary
    folder has), removed after; one that cannot be made is one sentence."""
    with contextlib.ExitStack() as held:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            drawn = held.enter_context(hidden_folder(out_dir, ".mnistlab-evaluate-"))  # a killed one's: removed
        except OSError as exc:
            raise _unwritable(out_dir, exc) from None
        try:
            yield drawn
        except InputError as exc:  # a figure the disk refused: said of out_dir, not of this folder, gone by then
            if isinstance(exc.__cause__, OSError):
                raise _unwritable(out_dir, exc.__cause__) from None
            raise


def _unwritable(out_dir: Path, exc: OSError) -> InputError:
    return InputError(f"Cannot write the figures into {out_dir} ({exc.strerror or exc}); choose a writable --out path.")


def _write_figures(out_dir: Path, figures: dict[str, bytes], model_dir: Path, card: dict) -> None:
    """Write ``figures`` into ``out_dir``, both or neither. Into the model's own folder they go under its lock (as
    a save takes it) and only while it holds the model they were drawn from: a save landing meanwhile (a `train`
    into the folder, from another terminal) removed the old model's figures, then got them back beside the new."""
    own = out_dir.resolve() == model_dir.resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with locked_where_possible(out_dir) if own else contextlib.nullcontext():
            if own and read_card(model_dir).get("card_sha256") != card.get("card_sha256"):
                raise ModelFileError(
                    f"The model in {model_dir} was replaced while it was evaluated (a save into its folder); "
                    "evaluate it again."
                )
            atomic_write_together(out_dir, figures)
    except OSError as exc:
        raise _unwritable(out_dir, exc) from None


def _gallery(
    X_test, y_test, y_pred, proba, path: Path, classes, margins, names: list[str] | None, *, sure: bool = True
) -> Path:
    """``mistakes.png``, each mistake titled by its classes' names where they have some ("true Sandal, pred
    Sneaker", not "true 5, pred 7"); ``sure``: whether ``proba`` is the model's own (not a softmax of margins)."""
    from mnistlab.lab.plots import save_misclassified_gallery

    X_test = np.asarray(X_test)
    # Standardised pixels (the lesson's StandardScaler) go below 0: drawn from their lowest value up, not refused
    # once the model was measured.
    if X_test.dtype.kind in "if" and X_test.size and np.nanmin(X_test) < 0:
        X_test = X_test - np.nanmin(X_test)
    if names is not None and classes is not None and np.isin(classes, np.arange(len(names))).all():
        label = np.asarray(names)
        y_test, y_pred, classes = label[y_test], label[y_pred], label[np.asarray(classes, int)]
    return save_misclassified_gallery(
        X_test, y_test, y_pred, proba, path, n=GALLERY, classes=classes, margins=margins, probabilities=sure
    )


def _measured_on(card: dict, test: TrainTest, *, given: bool) -> dict:
    """What the measurement ran on: the data, the split and seed that cut its test set (the card's, as
    ``model_data`` cut it; None for test arrays the caller ``given``, which nothing cut), and this environment's
    package versions, which answer "why do the predictions differ from training's?" beside the card's."""
    cut = {"seed": card.get("seed", 42), "split": card.get("split", "official"), "test_size": card.get("test_size")}
    if given:
        cut = dict.fromkeys(cut)
    return {"dataset": test.dataset, "data_sha256": test.sha256, **cut, "versions": package_versions()}


def _mistakes_margins(estimator, X_test, wrong: np.ndarray, shape) -> np.ndarray | None:
    """The decision margins of the mistakes' rows (zeros elsewhere), which rank mistakes whose probabilities
    saturated at 1.0; None for a classifier without margins. Only the mistakes: an SVM's margins cost a pass."""
    found = decision_margins(estimator, X_test[wrong]) if wrong.any() else None
    if found is None:
        return None
    margins = np.zeros(shape)
    margins[wrong] = found
    return margins


def model_data(model_dir, estimator, card: dict, data, refusal: str, *, limit: bool = False) -> TrainTest:
    """The data the model in ``model_dir`` was trained and tested on: MNIST as its card's split and seed cut it
    (``limit``: its training set thinned to the card's limit too, the images it was trained on; the test set is
    the same either way), or the caller's four arrays, checked against the model. Another dataset is found
    again where the card says (``recorded_data``); a model of arrays, or of data its card does not say where to
    find, is refused without them: "{model_dir} was trained on ..., and " + ``refusal``."""
    dataset = card.get("dataset")
    elsewhere = data is None and (dataset not in (None, "mnist") or card.get("data_dir") is not None)
    if elsewhere and (dataset == "arrays" or (dataset not in KNOWN_DATASETS and card.get("data_dir") is None)):
        trained_on = "arrays passed from Python" if dataset == "arrays" else f"the dataset {dataset!r}, not MNIST"
        raise InputError(f"{model_dir} was trained on {trained_on}, and {refusal}")
    if data is not None:
        check_test_data(model_dir, estimator, data)
    split, test_size = card.get("split", "official"), card.get("test_size")
    try:
        options = RunOptions(
            split=split, test_size=test_size, seed=card.get("seed", 42), limit=card.get("limit") if limit else None
        )
        return recorded_data(model_dir, card, options) if elsewhere else load_data(options, data)
    except ParameterError as exc:  # "--test-size must ...": blamed a flag the command does not have
        if exc.param not in ("split", "test_size", "seed", "limit") or (data is not None and exc.param == "limit"):
            raise  # not the card's; or its limit, for the caller's own training arrays: said as it is
        splits = exc.param in ("split", "test_size")
        what = f"a split no training run cuts (split {split!r}, test_size {test_size!r})" if splits else None
        raise ModelFileError(
            f"{Path(model_dir) / CARD_FILE} records {what or f'a {exc.param} no training run takes'}, so its "
            f"{'test set' if splits else 'data'} cannot be found again; restore the original file or retrain the model."
        ) from None


def recorded_data(model_dir, card: dict, options: RunOptions) -> TrainTest:
    """The split ``options`` cut of the dataset the card names: a registered one (fashion-mnist, digits) by its
    name, a folder of IDX files where the card records it (``data_dir``), refused in one sentence where that
    folder no longer holds the data the model was trained on (its checksum, ``data_sha256``)."""
    from mnistlab.lab.fitting import open_dataset, split_for  # as compare cut it: the same pixels, the same split

    where = card.get("data_dir")
    with_data = "or pass its data from Python (data=(X_train, X_test, y_train, y_test))"
    if where is not None and (not Path(where).is_dir() or find_idx_files(Path(where)) is None):
        raise DatasetError(
            f"{model_dir} was trained on the IDX files in {where}, which no longer holds them; put them back "
            f"there, {with_data}."
        )
    name, bunch = open_dataset(where if where is not None else card["dataset"])
    if bunch.details["data_sha256"] != card.get("data_sha256"):
        raise DatasetError(
            f"{where or name} no longer holds the data {model_dir} was trained on (its checksum is not the one "
            f"in {CARD_FILE}); put the original files back, {with_data}."
        )
    return split_for(name, bunch, options)


def check_test_data(model_dir, estimator, data) -> None:
    """Refuse test arrays the model cannot be measured on, in one sentence: scikit-learn would fail in a
    traceback, or count each label the model never saw as one of its mistakes."""
    try:
        _, X_test, _, y_test = (np.asarray(a) for a in data)
    except (TypeError, ValueError):  # not four arrays, or a ragged one
        raise InputError(
            "data must be four arrays, (X_train, X_test, y_train, y_test), as the model was trained on."
        ) from None
    if X_test.ndim == 0 or len(X_test) == 0:
        raise InputError("X_test of data holds no images; pass at least one test image, and its label in y_test.")
    if y_test.ndim != 1 or len(y_test) != len(X_test):
        held = f"{y_test.size:,} labels" if y_test.ndim == 1 else f"its labels in an array of shape {y_test.shape}"
        raise InputError(
            f"y_test of data holds {held} for {len(X_test):,} test images in X_test; "
            f"pass one label per test image{'' if y_test.ndim == 1 else ', in a 1-d array'}."
        )
    pixels = pixels_read(estimator)
    given = int(np.prod(X_test.shape[1:]))
    if pixels is not None and given != pixels:
        raise InputError(
            f"{model_dir} reads images of {pixels_in_words(pixels)}, but X_test holds images of {pixels_in_words(given)}; "
            "pass test images of the size the model was trained on."
        )
    classes = getattr(estimator, "classes_", None)
    if classes is None:  # a classifier of the user's own without classes_: its labels cannot be checked
        return
    classes = np.asarray(classes)
    if _kind(y_test) != _kind(classes) and not {_kind(y_test), _kind(classes)} <= {"integers", "numbers"}:
        raise InputError(
            f"The test labels in y_test are {_kind(y_test)}, but the classes of {model_dir} are "
            f"{_kind(classes)} ({_listed(classes)}); pass y_test as {_kind(classes)}, as the model was trained on."
        )
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if unseen.size:
        raise InputError(
            f"y_test holds labels {model_dir} was never trained on ({_listed(unseen)}), and it knows only "
            f"{_listed(classes)}; pass test labels among its classes."
        )


def _kind(labels: np.ndarray) -> str:
    """What labels are, in words: integers, numbers, strings, or their dtype's name."""
    return {"b": "integers", "i": "integers", "u": "integers", "f": "numbers", "U": "strings", "S": "strings"}.get(
        labels.dtype.kind, f"{labels.dtype} values"
    )


def _listed(labels: np.ndarray) -> str:
    """Labels for a sentence: "0-9" for a run of integers, else the first ten, quoted if strings."""
    values = [v.item() if hasattr(v, "item") else v for v in np.unique(labels)]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(values) > 2 and len(ints) == len(values) and ints == list(range(ints[0], ints[-1] + 1)):
        return f"{ints[0]}-{ints[-1]}"
    shown = ", ".join(map(repr, values[:10]))
    return shown + (f" and {len(values) - 10} more" if len(values) > 10 else "")


def _per_class(y_test: np.ndarray, y_pred: np.ndarray, names: list[str] | None) -> list[dict]:
    """Precision, recall, F1 and support of each class that occurs in either array; ``digit`` is its number,
    ``name`` what it is (``names[digit]``: "Sandal" for Fashion-MNIST's 5; the number itself without names)."""
    precision, recall, f1, support = precision_recall_fscore_support(y_test, y_pred, zero_division=0)
    labels = np.unique(np.concatenate([y_test, y_pred]))
    return [
        {
            "digit": int(d),
            "name": names[int(d)] if names and 0 <= int(d) < len(names) else str(d),
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
        }
        for d, p, r, f, s in zip(labels, precision, recall, f1, support)
    ]
