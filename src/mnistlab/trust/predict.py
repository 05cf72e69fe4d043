"""Predict handwritten digits and numbers from images, arrays and files.

``predict_image`` and ``read_number`` take a photo, scan or canvas drawing
(anything ``to_mnist`` reads), ``predict_array`` an MNIST-shaped array or a
``.npy``/``.csv`` file holding one. Every answer says whether it is
``confident``, and if not, why. ``model`` is None for the reader shipped with
the package, a model directory written by ``mnistlab train``, a fitted
estimator, or a ``Predictor`` from ``load_predictor``.

Answering is inference only: the classifier, the not-a-digit detector and the
thresholds are read from files; nothing is trained and no data set is read,
except to calibrate a model that was saved without its probability cut.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnistlab.data.home import checked_path
from mnistlab.data.pixels import as_digit
from mnistlab.errors import InputError, ParameterError
from mnistlab.models.files import load_model, read_card, refuse_other_classes
from mnistlab.models.folder import followed_link
from mnistlab.reading.admission import format_by_signature
from mnistlab.reading.decode import regular_file_size, rewound, start_of, unreadable, user_path
from mnistlab.reading.segment import find_digits
from mnistlab.reading.steps import digit_from, holds_ink, read_digit, to_mnist
from mnistlab.trust.calibration import calibrate_on_mnist
from mnistlab.trust.fitted import classifier, estimator_cut
from mnistlab.trust.numbers import MAX_ROW_PARTS, Budget, check_row_size, doubted, keep_marks, read_part, row_of
from mnistlab.trust.reader import Reader, load_reader
from mnistlab.trust.thresholds import NO_INK, SMALL_INK, ProbabilityCut, assess

__all__ = [
    "Predictor",
    "load_predictor",
    "predict_image",
    "predict_array",
    "read_number",
    "look_again",
    "surer_row",
    "predict_file",
    "to_json",
    "ARRAY_SUFFIXES",
    "FirstLook",
    "first_look",
    "settled",
    "check_top",
]

ARRAY_SUFFIXES = (".npy", ".csv")
# A .npy or .csv digit is 784 values: 6 KiB as float64, under 40 KiB as text even with 17 digits a value.
MAX_ARRAY_FILE_BYTES = 256 * 1024
# A second look's answer stands when it is confident, its probability is at least _SECOND_LOOK_PROBABILITY and the
# detector's not-a-digit probability at most _SECOND_LOOK_DOUBT of its threshold (0.19). Chosen on dev seeds 3-6
# (3,600 digits on paper, 4,800 non-digits): of the confident second looks, 33 read digits right (probability
# 0.46-0.96, not-a-digit 0.00-0.41), 4 wrong (0.52-0.76; 0.01-0.24) and 15 non-digits (0.45-0.93; 0.05-0.46; an empty
# squared page's grid remnants among them). Both bounds keep 23 of the 33 and none of the 4 or the 15.
_SECOND_LOOK_PROBABILITY = 0.8
_SECOND_LOOK_DOUBT = 0.4


@dataclass(frozen=True)
class Predictor:
    """A classifier with the reader's not-a-digit checks and its own probability cut."""

    classify: Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 -> (N, 10) probabilities, column d = digit d
    card: dict
    reader: Reader
    cut: ProbabilityCut  # the classifier's own: at or below ``cut.min_probability`` (its measure) it is not sure

    def describe(self, images: np.ndarray, top: int) -> list[dict]:
        """One result dict per (28, 28) uint8 image, in order."""
        images = np.asarray(images, np.uint8).reshape(-1, 28, 28)
        return self.results(images, self.classify(images), self.reader.scores(images), top)

    def results(self, images: np.ndarray, proba: np.ndarray, scores: np.ndarray, top: int) -> list[dict]:
        """``describe``'s dicts from the classifier's (N, 10) probabilities and the reader's (N, len(SCORES)) scores."""
        results = []
        for img, p, s in zip(images, proba, scores):
            order = np.argsort(-p, kind="stable")
            reason = assess(self.reader.thresholds, self.cut, s, float(p[order[0]]), ink=bool(img.any()))
            results.append(
                {
                    "digit": int(order[0]),
                    "probability": float(p[order[0]]),
                    "top": [[int(d), float(p[d])] for d in order[:top]],
                    "confident": reason is None,
                    "reason": reason,
                    "mnist_image": img,
                }
            )
        return results


# Loaded models are kept: the CLI reads many files, the web server many requests. One per folder, the model its card
# names now (a model retrained into its folder replaces the one kept), and the _KEPT_FOLDERS used last: a knn model
# holds its training images (376 MB of floats for MNIST's), and a session that retrained or switched models kept each.
_KEPT_FOLDERS = 4
_BY_DIR: OrderedDict[str, tuple[str, Predictor]] = OrderedDict()
_LOADING = threading.Lock()


def load_predictor(model=None) -> Predictor:
    """Resolve ``model`` (None, a directory, a fitted estimator or a Predictor) with its probability cut."""
    if isinstance(model, Predictor):
        return model
    with _LOADING:  # concurrent first requests in the web server load once, not once each
        if model is None:
            reader = load_reader()
            return Predictor(reader.digit_proba, reader.card, reader, reader.probability_cut)
        if isinstance(model, (str, os.PathLike)):
            return _from_directory(checked_path(model, "model"))
        return _from_estimator(model)


def _from_directory(model_dir: Path) -> Predictor:
    """Kept by the folder and its card's checksum, which covers the weights' and the cut: keyed by the weights'
    alone, a card given another cut kept the old one, and a folder swapped between reading its card and loading
    left the other model under this card's key. A model is kept under the card it was loaded with."""
    # A link to the folder followed once (`ln -sfn v2 current`, swapped meanwhile): the model checked is the one loaded.
    model_dir = followed_link(model_dir)
    card = refuse_other_classes(read_card(model_dir), model_dir)  # first: a link loop is said, not resolved
    folder = str(model_dir.resolve())
    kept = _BY_DIR.get(folder)
    if kept is not None and kept[0] == card["card_sha256"]:
        _BY_DIR.move_to_end(folder)
        return kept[1]
    _BY_DIR.pop(folder, None)  # another model now: the one kept is not loaded again from this folder
    estimator, card = load_model(model_dir)
    card = refuse_other_classes(card, model_dir)  # a save into the folder meanwhile: the card loaded is checked too
    reader = load_reader()
    classify = classifier(estimator)
    cut = _card_cut(card) or calibrate_on_mnist(classify, reader, card["weights_sha256"], card)
    predictor = Predictor(classify, card, reader, cut)
    _BY_DIR[folder] = (card["card_sha256"], predictor)
    while len(_BY_DIR) > _KEPT_FOLDERS:
        _BY_DIR.popitem(last=False)
    return predictor


def _card_cut(card: dict) -> ProbabilityCut | None:
    """The probability cut ``mnistlab train`` stored in the card; None for cards saved before it did."""
    try:
        return ProbabilityCut(**card["calibration"])
    except (KeyError, TypeError):
        return None


def _from_estimator(model) -> Predictor:
    if not (hasattr(model, "predict_proba") or hasattr(model, "decision_function")):
        raise ParameterError(  # the caller's argument: a 4xx, not a model file the server failed to load (503)
            "model", f"{{param}} must be a fitted classifier, a model directory or None, got {type(model).__name__}."
        )
    reader, classify = load_reader(), classifier(model)
    return Predictor(classify, {"estimator": type(model).__name__}, reader, estimator_cut(model, classify, reader))


def check_top(top: int) -> int:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= 10:
        raise InputError(f"top must be a whole number from 1 to 10, got {top!r}.")
    return int(top)


def predict_image(image_or_path, model=None, *, top: int = 3) -> dict:
    """Which digit is in this image? Keys: digit, probability, top, confident, reason, mnist_image.

    A photo whose answer is not confident gets a second look, and a third where that does not stand
    (``look_again``); a clean drawing (a canvas export) needs none, its ink having no paper noise to look
    below.
    """
    top = check_top(top)
    predictor = load_predictor(model)
    seen = first_look(image_or_path)
    return settled(predictor, seen, predictor.describe(seen.image[None], top)[0], top)


class FirstLook(NamedTuple):
    """A photo read once, not yet classified (``predict_files`` classifies a few files' looks at once)."""

    source: Any  # what a second look reads again: a path, bytes, or a file object sought back to ``start``
    start: int | None
    image: np.ndarray  # (28, 28) uint8
    drawing: bool  # a clean drawing: it needs no second look


def first_look(image_or_path) -> FirstLook:
    source, start = start_of(image_or_path)
    return FirstLook(source, start, *read_digit(source))


def settled(predictor: Predictor, seen: FirstLook, first: dict, top: int) -> dict:
    """``predict_image``'s answer, given ``first``: the classifier's answer for ``seen.image``."""
    if first["confident"] or seen.drawing or not rewound(seen.source, seen.start):
        return why_blank(first, seen.source, seen.start)
    return why_blank(look_again(predictor, seen.source, first, top, seen.start), seen.source, seen.start)


def look_again(predictor: Predictor, image_or_path, first: dict, top: int, start: int | None = None) -> dict:
    """The answer for a doubted photo (``first``): a second look (``_second_look`` of ``to_mnist(faint=True)``)
    and, where its answer does not stand, a third with the mask found at twice the work size
    (``to_mnist(closer=True)``), its answer held to the same margin. ``start``: where a file object's image
    starts (``image_or_path`` is read again)."""
    faint = to_mnist(image_or_path, faint=True)
    answer = _second_look(predictor, faint, first, top)
    if answer is not first or not rewound(image_or_path, start):
        return answer
    closer = to_mnist(image_or_path, closer=True)
    return first if np.array_equal(closer, faint) else _second_look(predictor, closer, first, top)


def why_blank(answer: dict, image_or_path, start: int | None = None) -> dict:
    """``answer``, whose reason is ``SMALL_INK`` where it was ``NO_INK`` but the image holds ink, only none of
    it digit-sized: specks, or a digit too small in a big photo, which reads once cropped (say so)."""
    if answer["reason"] != NO_INK or not rewound(image_or_path, start) or not holds_ink(image_or_path):
        return answer
    return {**answer, "reason": SMALL_INK}


def _second_look(predictor: Predictor, faint: np.ndarray, first: dict, top: int) -> dict:
    """The answer for a doubted photo, given ``faint``: the photo read again with ``to_mnist(faint=True)``.

    A hair-thin or light stroke that binarising left in pieces may come out
    whole in the ink averaged along its strokes. So may a grid's remnants, a texture, or a wrong
    digit, so that reading stands only when it is confident by a wider margin
    (``_SECOND_LOOK_PROBABILITY``, ``_SECOND_LOOK_DOUBT``); the first answer
    stands otherwise, and when the second image is the first. (A clean drawing's
    always is: ``predict_image`` and the API ask for none.)
    """
    if np.array_equal(faint, first["mnist_image"]):
        return first
    images = faint[None]
    not_a_digit = predictor.reader.not_a_digit(images)  # (1,): for the bound below and the scores, run once
    scores = predictor.reader.scores(images, not_a_digit)
    second = predictor.results(images, predictor.classify(images), scores, top)[0]
    limit = _SECOND_LOOK_DOUBT * predictor.reader.thresholds.upper.get("not_a_digit", np.inf)
    surer = second["confident"] and second["probability"] >= _SECOND_LOOK_PROBABILITY
    return second if surer and not_a_digit[0] <= limit else first


def read_number(image_or_path, model=None, *, top: int = 3) -> dict:
    """Read a row of digits left to right. Keys: number (str), digits (per-digit dicts, each with its ``top``
    ranked digits, as ``predict_image``'s), confident.

    Each part of the row is read as one digit; a part the reader doubts, or
    one wider than the row's other digits, may be read as several touching
    digits instead (``mnistlab.trust.numbers``). A doubted photo's row is read
    again with a second look (``surer_row``), and with a third where it is
    still doubted, as ``predict_image`` reads a doubted digit (``look_again``).
    On dev seeds 41 and 43 (300 rows a source each) the third look read 3 more
    pen rows of 600 exactly and made no row confidently wrong.
    """
    top = check_top(top)
    predictor = load_predictor(model)
    image_or_path, start = start_of(image_or_path)
    first, drawing = _read_row(predictor, image_or_path, top)
    if first["confident"] or drawing or not rewound(image_or_path, start):
        return first
    answer = keep_marks(first, surer_row(first, _read_row(predictor, image_or_path, top, faint=True)[0]))
    if answer["confident"] or not rewound(image_or_path, start):
        return answer
    return keep_marks(first, surer_row(answer, _read_row(predictor, image_or_path, top, closer=True)[0]))


def _read_row(
    predictor: Predictor, image_or_path, top: int, *, faint: bool = False, closer: bool = False
) -> tuple[dict, bool]:
    """``read_number``'s answer from one look at the image, and whether it is a clean drawing."""
    ink, parts, slant, drawing, marks = find_digits(image_or_path, faint=faint, closer=closer)
    if faint or closer:  # a later look that finds more marks than a number makes reads nothing better
        parts = parts if len(parts) <= MAX_ROW_PARTS else []
    check_row_size(len(parts))
    results: list[dict] = []
    if parts:
        wholes = predictor.describe(np.stack([digit_from(ink, part) for part in parts]), top)
        row, budget = row_of(parts, wholes, slant), Budget()
        by_part = [read_part(predictor, ink, p, whole, row, budget) for p, whole in zip(parts, wholes)]
        results = doubted(by_part, marks, ink)
    answer = {
        "number": "".join(str(r["digit"]) for r in results),
        "digits": results,
        "confident": bool(results) and all(r["confident"] for r in results),
    }
    return answer, drawing


def surer_row(first: dict, second: dict) -> dict:
    """The answer for a doubted row, given ``second``: the row read again with a second look.

    The second reading stands when every digit of it is confident at
    ``_SECOND_LOOK_PROBABILITY`` or more. When more of its digits are confident
    than of the first's, its digits stand but the row stays doubted: on dev
    seeds 31-32, 2 of the 3 second readings confident under that margin were
    wrong (240952 read 140952, 824 read 524). The first reading stands
    otherwise.
    """
    digits = second["digits"]
    if second["confident"] and min(d["probability"] for d in digits) >= _SECOND_LOOK_PROBABILITY:
        return second
    if _confident_share(second) > _confident_share(first):
        return dict(second, confident=False)
    return first


def _confident_share(answer: dict) -> float:
    digits = answer["digits"]
    return sum(d["confident"] for d in digits) / len(digits) if digits else 0.0


def _read_array(source) -> tuple[Any, str]:
    if isinstance(source, (str, os.PathLike)):
        path = user_path(source)
        label = str(path)
        size = regular_file_size(path, InputError)
        if (kind := format_by_signature(path)) is not None:  # an image saved under a .npy or .csv name
            raise InputError(f"{path} is a {kind} image, not a digit's values; read it with predict_image.")
        if size > MAX_ARRAY_FILE_BYTES:  # checked before reading: a digit's 784 values are a few KiB
            raise InputError(
                f"{path} holds {size:,} bytes, more than one digit's 784 values can take "
                f"({MAX_ARRAY_FILE_BYTES:,} at most); save one digit per file."
            )
        try:
            if path.suffix.lower() == ".npy":
                # Mapped, not read: a header may declare any shape, and a mapping past the file's end is refused
                # before a byte is allocated; the 784 values are copied once the mapping stands.
                return np.array(np.load(path, mmap_mode="r", allow_pickle=False)), label
            with warnings.catch_warnings():  # an empty file: as_digit says so in its own sentence
                warnings.simplefilter("ignore", UserWarning)
                # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which is no number.
                return np.loadtxt(path, delimiter=",", ndmin=1, encoding="utf-8-sig"), label
        except (ValueError, OSError, EOFError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:  # the system refused the file, not its bytes
                raise InputError(unreadable(label, exc)) from None
            raise InputError(
                f"{path} could not be read as numbers ({exc}); save one digit as 784 comma-separated values or with numpy.save."
            ) from None
    return source, "the array"  # made an array by ``as_digit``, which refuses what numpy cannot make one of


def predict_array(array_or_path, model=None, *, top: int = 3) -> dict:
    """Predict one digit given as 784 values or a 28x28 array (or a .npy/.csv file of one), used as is."""
    top = check_top(top)
    array, label = _read_array(array_or_path)
    digit = as_digit(array, label=label)
    return load_predictor(model).describe(digit[None], top)[0]


def predict_file(path, model=None, *, top: int = 3, number: bool = False) -> dict:
    """What ``mnistlab predict`` does with one file: arrays by suffix, everything else (an image saved under a
    .npy or .csv name too, as ``predict_image`` reads it) as an image."""
    if Path(path).suffix.lower() not in ARRAY_SUFFIXES or _image_bytes(path):
        return read_number(path, model, top=top) if number else predict_image(path, model, top=top)
    result = predict_array(path, model, top=top)
    if number:  # a blank digit is no digit, as ``read_number`` answers a blank image (it answered "1")
        seen = [] if result["reason"] == NO_INK else [result]
        return {"number": "".join(str(r["digit"]) for r in seen), "digits": seen, "confident": result["confident"]}
    return result


def _image_bytes(path) -> bool:
    """Whether the file at ``path`` starts as an image of a format read does (False where it cannot be told)."""
    try:
        return format_by_signature(user_path(path)) is not None
    except InputError:  # an empty path, a ~user of no user: reading it as an array says so
        return False


def _round(result: dict) -> dict:
    def four(p: float) -> float:  # 4 places, never up to 1: 0.99996 said as 1 read "100% sure" on the page
        return min(round(p, 4), 0.9999) if p < 1 else round(p, 4)

    out: dict[str, Any] = {}
    for key, value in result.items():
        if key == "probability":
            out[key] = four(value)
        elif key == "top":
            out[key] = [[d, four(p)] for d, p in value]
        elif key != "mnist_image":
            out[key] = [_round(r) for r in value] if key == "digits" else value
    return out


def to_json(result: dict, file: str | None = None) -> dict:
    """A result as ``mnistlab predict --json`` prints it: ``file`` first, no image, probabilities to 4 places."""
    return {"file": file, **_round(result)}
