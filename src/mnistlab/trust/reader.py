"""The reader shipped inside the package: classifier, not-a-digit detector, digit space, thresholds.

``src/mnistlab/pretrained/`` holds files that the project's own code trains
with a fixed seed (``make pretrained``, see ``mnistlab.lab.pretrained``):

    card.json          seed, data checksum, versions, metrics, thresholds, the sha256 of every file,
                       and card_sha256, which covers the card itself (its thresholds shape every answer)
    classifier.onnx    digits 0-9 from a 28x28 image (float32 (N, 1, 28, 28) in [0, 1] -> probabilities)
    detector.onnx      the same input -> 11 probabilities: the ten digits and "not a digit"
    space.safetensors  the PCA of MNIST digits behind ``reconstruction_error``

Reading them needs neither torch nor a data set: the nets run on onnxruntime,
and every file is checked against the card's sha256 before it is used.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_safetensors

from mnistlab.errors import ModelFileError
from mnistlab.models.cards import MAX_CARD_BYTES, card_sha256
from mnistlab.models.folder import read_regular
from mnistlab.models.sessions import run_in_chunks, single_thread_session
from mnistlab.trust.scores import DigitSpace, digit_scores, silhouette
from mnistlab.trust.shipped import PRETRAINED_DIR
from mnistlab.trust.thresholds import ProbabilityCut, Thresholds

__all__ = ["PRETRAINED_DIR", "CARD_FILE", "READER_FILES", "OnnxNet", "Reader", "load_reader", "verified_bytes"]

CARD_FILE = "card.json"
READER_FILES = ("classifier.onnx", "detector.onnx", "space.safetensors")
FORMAT_VERSION = 2  # version 2: card_sha256 covers the card


class OnnxNet:
    """One exported net on onnxruntime: (N, 28, 28) uint8 images -> (N, n_classes) float64 probabilities."""

    def __init__(self, model: bytes):
        # One thread: a 28x28 image is microseconds of work, and threads would only
        # wait on each other; concurrent requests get parallelism from batching and workers.
        self.model_bytes = model
        self.session = single_thread_session(model)
        self.input = self.session.get_inputs()[0].name

    def proba(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images.reshape(-1, 1, 28, 28), np.float32) / np.float32(255)  # (N, 1, 28, 28)
        p = run_in_chunks(self.session, self.input, x).astype(np.float64)
        return p / p.sum(axis=1, keepdims=True)  # exact sums after float32 softmax


@dataclass(frozen=True)
class Reader:
    """Everything the shipped reader needs to answer, loaded and verified."""

    classifier: OnnxNet
    detector: OnnxNet
    space: DigitSpace
    thresholds: Thresholds
    probability_cut: ProbabilityCut  # the shipped classifier's
    card: dict

    def not_a_digit(self, images: np.ndarray) -> np.ndarray:
        """(N,) the detector's probability that each of (N, 28, 28) uint8 images is not a digit."""
        return self.detector.proba(silhouette(images))[:, -1]

    def scores(self, images: np.ndarray, not_a_digit: np.ndarray | None = None) -> np.ndarray:
        """(N, len(SCORES)) "not a digit" scores of (N, 28, 28) uint8 images (``not_a_digit``: the
        detector's answers for them, where the caller has them already)."""
        if not_a_digit is None:
            not_a_digit = self.not_a_digit(images)
        return digit_scores(self.space, images, not_a_digit)

    def digit_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 10) probabilities of the shipped classifier."""
        return self.classifier.proba(images)


def verified_bytes(folder: Path, name: str, sha256: str | None) -> bytes:
    """The file's bytes, if they match the sha256 the card records for it: hashed as a stream before they are
    held (a huge file in its place is refused in bounded memory), a named pipe or a device refused unread."""
    path = folder / name
    try:
        data = read_regular(path, sha256=sha256 if isinstance(sha256, str) else "none recorded")
    except ValueError:
        raise ModelFileError(
            f"{path} does not match the sha256 in {folder / CARD_FILE}, so it was changed or corrupted; "
            "reinstall mnistlab or rebuild it with `make pretrained`."
        ) from None
    except OSError:
        data = None
    if data is None:
        raise ModelFileError(
            f"{path} is missing or no regular file; reinstall mnistlab or rebuild it with `make pretrained`."
        )
    return data


def _read_card(folder: Path) -> dict:
    path = folder / CARD_FILE
    try:
        text = read_regular(path, MAX_CARD_BYTES + 1)  # bounded; a named pipe or a device is None, unread
    except OSError:
        text = None
    if text is None or len(text) > MAX_CARD_BYTES:
        what = "is missing or no regular file" if text is None else "is larger than any reader card"
        raise ModelFileError(f"{path} {what}; reinstall mnistlab or rebuild it with `make pretrained`.")
    try:
        card = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ModelFileError(
            f"{path} is not valid JSON ({exc}); reinstall mnistlab or rebuild it with `make pretrained`."
        ) from None
    except ValueError:  # an integer past Python's 4,300 digits: no traceback
        raise ModelFileError(
            f"{path} holds an integer of thousands of digits, so it is no reader card mnistlab wrote; reinstall "
            "mnistlab or rebuild it with `make pretrained`."
        ) from None
    if (
        not isinstance(card, dict)
        or card.get("format_version") != FORMAT_VERSION
        or not isinstance(card.get("files"), dict)
    ):
        raise ModelFileError(
            f"{path} is not a reader card this mnistlab reads; reinstall mnistlab or rebuild it with `make pretrained`."
        )
    if not _signed(card):  # a threshold edited by hand changes every answer, as a changed weight would
        raise ModelFileError(
            f"{path} does not match its card_sha256, so it was edited or corrupted; reinstall mnistlab or rebuild "
            "it with `make pretrained`."
        )
    return card


def _signed(card: dict) -> bool:
    try:
        return card.get("card_sha256") == card_sha256(card)
    except (ValueError, RecursionError):  # NaN or infinity (a build never writes them) has no canonical JSON, nor
        # a card nested almost as deep as json.loads reads
        return False


def _build(folder: Path) -> Reader:
    card = _read_card(folder)
    blobs = {name: verified_bytes(folder, name, card["files"].get(name)) for name in READER_FILES}
    try:
        space = _space(DigitSpace(**load_safetensors(blobs["space.safetensors"])))
        return Reader(
            classifier=_net(OnnxNet(blobs["classifier.onnx"]), "classifier.onnx", 10),
            detector=_net(OnnxNet(blobs["detector.onnx"]), "detector.onnx", 11),
            space=space,
            thresholds=Thresholds(**card["thresholds"]),
            probability_cut=ProbabilityCut(**card["classifier"]["probability_cut"]),
            card=card,
        )
    # safetensors and onnxruntime raise their own types for a file they cannot read: signed again, it was read
    except Exception as exc:
        raise ModelFileError(
            f"{folder} holds a reader this mnistlab cannot use ({exc}); rebuild it with `make pretrained`."
        ) from None


def _net(net: OnnxNet, name: str, n_classes: int) -> OnnxNet:
    """``net``, unless it reads or answers otherwise than the reader's ``name`` does: (N, 1, 28, 28) float images
    -> (N, ``n_classes``) probabilities (the ten digits, and "not a digit" for the detector). Another net in its
    place, its card signed again, loaded: the classifier answered "10", or the detector took a 9 for no digit."""
    inputs, outputs = net.session.get_inputs(), net.session.get_outputs()
    reads = [(i.type, i.shape[1:]) for i in inputs]
    answers = [(o.type, o.shape[1:]) for o in outputs[:1]]
    if reads != [("tensor(float)", [1, 28, 28])] or answers != [("tensor(float)", [n_classes])]:
        raise ValueError(
            f"its {name} reads {[i.shape for i in inputs]} and answers {[o.shape for o in outputs]}, where the "
            f"reader's reads [[N, 1, 28, 28]] and answers [[N, {n_classes}]]"
        )
    return net


def _space(space: DigitSpace) -> DigitSpace:
    """``space``, unless its tensors are not what a build writes: a float32 mean of 784 pixels and up to 784
    components of 784, all finite. Others loaded, then failed at the first answer (numpy's ValueError), or
    scored every image as digit-shaped (NaN)."""
    mean, components = space.mean, space.components
    if (
        getattr(mean, "dtype", None) != np.float32
        or getattr(components, "dtype", None) != np.float32
        or mean.shape != (784,)
        or components.ndim != 2
        or not 1 <= components.shape[0] <= 784
        or components.shape[1] != 784
        or not (np.isfinite(mean).all() and np.isfinite(components).all())
    ):
        raise ValueError(
            "its space.safetensors is no digit space: a build writes a finite float32 mean of 784 pixels and 1 to "
            "784 components of 784"
        )
    return space


_READERS: dict[Path, Reader] = {}
_LOCK = threading.Lock()


def load_reader(folder: str | Path | None = None) -> Reader:
    """The reader in ``folder`` (default: the one shipped in the package), loaded once per process."""
    folder = Path(folder) if folder is not None else PRETRAINED_DIR
    with _LOCK:  # concurrent first requests load it once
        if folder not in _READERS:
            _READERS[folder] = _build(folder)
        return _READERS[folder]
