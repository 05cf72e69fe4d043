"""ONNX export of fitted CNN models, and inference with onnxruntime.

The exported graph is the whole ``Averaged`` module: input ``image`` float32
(N, 1, H, W) in [0, 1] (N is dynamic), output ``probabilities`` (N, n_classes).
The class labels are stored in the model's metadata (``classes``, JSON), so
an exported file is usable on its own::

    pred = OnnxPredictor("digits.onnx")
    pred.predict(images_uint8)  # -> labels
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from mnistlab._atomic import atomic_write_bytes
from mnistlab._cpus import usable_cpus
from mnistlab.data.home import checked_path, home_path
from mnistlab.data.pixels import as_images, unit_pixels
from mnistlab.errors import InputError, ModelFileError, ParameterError
from mnistlab.models.cnn.checks import MAX_THREADS
from mnistlab.models.files import read_card
from mnistlab.models.folder import CARD_FILE, ONNX_FILE, read_regular
from mnistlab.models.sessions import cpu_session, run_in_chunks, single_thread_session

__all__ = ["export_onnx", "onnx_graph", "write_graph", "OnnxPredictor"]

OPSET = 18


def _model_proto(module: torch.nn.Module, image_shape: tuple[int, int], classes: list) -> onnx.ModelProto:
    module = copy.deepcopy(module).cpu().eval()  # never move or retrace the caller's model
    example = torch.zeros(2, 1, *image_shape)  # batch 2: a batch of 1 would be specialised away
    # The exporter logs and warns about things that do not concern us (torchvision
    # ops, its own deprecations); keep the user's terminal clean.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["probabilities"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    assert program is not None  # dynamo=True always returns an ONNXProgram
    proto = program.model_proto
    _drop_node_notes(proto.graph)
    onnx.helper.set_model_props(proto, {"classes": json.dumps(classes), "input": "float32 (N, 1, H, W) in [0, 1]"})
    return proto


def _drop_node_notes(graph: onnx.GraphProto) -> None:
    """Remove the exporter's notes from every node: the Python stack that made it, with the file paths of the
    machine that exported it (a tenth of the shipped classifier's bytes). Without them the same net is the same
    bytes wherever it is exported, and a shared file does not tell where it was made."""
    for node in graph.node:
        del node.metadata_props[:]
        for attribute in node.attribute:  # a subgraph's nodes (If, Loop, Scan)
            for subgraph in [attribute.g, *attribute.graphs]:
                _drop_node_notes(subgraph)


def _check_matches(proto: onnx.ModelProto, module: torch.nn.Module, image_shape) -> None:
    """Refuse to write a graph whose probabilities differ from PyTorch's on probe images."""
    probe = np.random.default_rng(0).random((16, 1, *image_shape), dtype=np.float32)
    with torch.inference_mode():
        expected = copy.deepcopy(module).cpu().eval()(torch.from_numpy(probe)).numpy()
    got = OnnxPredictor(proto.SerializeToString()).predict_proba(probe)
    if not np.allclose(got, expected, atol=1e-4):
        raise ModelFileError(
            f"The ONNX graph's probabilities differ from PyTorch's by up to {np.abs(got - expected).max():.2g}; "
            "report this with your torch and onnxruntime versions."
        )


def onnx_graph(estimator) -> bytes:
    """A fitted CNN estimator's ONNX graph, as bytes, checked to predict as PyTorch does."""
    model = getattr(estimator, "model_", None)
    if not isinstance(model, torch.nn.Module):
        raise InputError(
            f"ONNX export needs a fitted CNN model, got {type(estimator).__name__}; "
            "train a CNN recipe (for example `mnistlab train cnn`) and export that."
        )
    proto = _model_proto(model, estimator.image_shape_, estimator.classes_.tolist())
    _check_matches(proto, model, estimator.image_shape_)
    return proto.SerializeToString()


def write_graph(graph: bytes, path) -> Path:
    """Write ONNX bytes to ``path`` atomically; returns the path."""
    path = checked_path(path, "path")
    try:
        atomic_write_bytes(path, graph)
    except OSError as exc:
        raise InputError(f"Cannot write {path} ({exc.strerror or exc}); give a file path you can write to.") from None
    return path


def export_onnx(estimator, path) -> Path:
    """Write a fitted CNN estimator as an ONNX file (atomically); returns the path."""
    return write_graph(onnx_graph(estimator), path)


class OnnxPredictor:
    """Runs an exported model with onnxruntime on the CPU.

    ``source`` is a path to an .onnx file or its bytes, holding every tensor
    itself (onnxruntime looked for another file in the current folder); a model
    folder's ``model.onnx`` must match the onnx_sha256 its card records. ``predict_proba`` takes
    float images (N, 1, H, W) in [0, 1] (anything else is an ``InputError``);
    ``predict`` takes any digit pixels
    (``mnistlab.data.pixels``: flat rows or images, uint8 0-255 or floats) and
    returns class labels. ``n_threads``: parts of a large batch run side by side,
    one thread each (None: one per CPU).
    """

    def __init__(self, source, *, n_threads: int | None = None):
        whole = isinstance(n_threads, int | np.integer) and not isinstance(n_threads, bool)
        # More threads than any machine has cores: onnxruntime failed to allocate 10**9 ("std::bad_alloc"), which
        # was said of the model ("Not a readable ONNX model ...; export it again").
        if n_threads is not None and (not whole or not 1 <= n_threads <= MAX_THREADS):
            raise ParameterError(
                "n_threads",
                f"{{param}} must be a whole number of threads from 1 to {MAX_THREADS}, or None (every CPU), "
                f"got {n_threads!r}.",
            )
        self.n_threads = int(n_threads or usable_cpus())  # parts of a batch run side by side (None: every CPU)
        if isinstance(source, (str, os.PathLike)):
            source = _read_onnx(Path(home_path(source, "source")))  # "~/m.onnx" in the home folder
        elif not isinstance(source, (bytes, bytearray, memoryview)):  # onnxruntime's words were "export it again"
            raise ParameterError("source", f"{{param}} must be the path of an .onnx file or its bytes, got {source!r}.")
        _check_self_contained(source)
        try:
            self.session = single_thread_session(source)  # runs parts of a large batch side by side
            self._whole = cpu_session(source, self.n_threads) if self.n_threads > 1 else None  # a small batch
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(f"Not a readable ONNX model ({exc}); export it again.") from None
        self.input = _image_input(self.session)
        self.classes_ = _classes(self.session)
        self.image_shape_ = tuple(self.session.get_inputs()[0].shape[2:])

    @classmethod
    def from_module(cls, module: torch.nn.Module, image_shape, classes=(), **kwargs) -> OnnxPredictor:
        return cls(_model_proto(module, image_shape, list(classes)).SerializeToString(), **kwargs)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        arr = np.asarray(images)
        h, w = self.image_shape_
        wanted = f"predict_proba takes float images (N, 1, {h}, {w}) in [0, 1]"
        if arr.dtype.kind != "f":
            raise InputError(f"{wanted}, got an array of dtype {arr.dtype}; use predict for any digit pixels.")
        if arr.ndim != 4 or arr.shape[1] != 1 or (isinstance(h, int) and tuple(arr.shape[2:]) != (h, w)):
            raise InputError(f"{wanted}, got shape {arr.shape}; use predict for any digit pixels.")
        x = np.ascontiguousarray(arr, dtype=np.float32)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if not 0 <= lo <= hi <= 1:  # NaN fails too; 0-255 floats answered as if 255 times too bright, NaN as nothing
            raise InputError(
                f"{wanted}, got values from {lo:g} to {hi:g}; divide 0-255 pixels by 255, or use predict for any "
                "digit pixels."
            )
        return run_in_chunks(self.session, self.input, x, self.n_threads, self._whole)

    def predict(self, images) -> np.ndarray:
        pixels = unit_pixels(as_images(images))  # (N, H, W) float32 in [0, 1]
        # A graph of any height and width (symbolic sides, as other exporters write them) reads the images given:
        # compared with its sides' names, every image was refused ("this model reads H x W").
        fixed = all(isinstance(side, int) for side in self.image_shape_)
        if fixed and pixels.shape[1:] != self.image_shape_:
            raise InputError(
                f"Got {pixels.shape[1]} x {pixels.shape[2]} images, but this model reads "
                f"{self.image_shape_[0]} x {self.image_shape_[1]}; pass images of that size."
            )
        proba = self.predict_proba(pixels[:, None])
        if self.classes_ is not None and proba.shape[1] != len(self.classes_):  # a graph of symbolic columns
            raise ModelFileError(
                f"This ONNX model's metadata names {len(self.classes_)} classes, but it answers {proba.shape[1]} "
                "columns; export the model again with `mnistlab export MODEL_DIR --onnx FILE`."
            )
        return self.classes_[proba.argmax(axis=1)] if self.classes_ is not None else proba.argmax(axis=1)


# protobuf, which ONNX files are, holds at most 2 GiB: a larger file is none, and is refused before it is read.
MAX_ONNX_BYTES = 2**31


def _read_onnx(path: Path) -> bytes:
    """The bytes of the ONNX file ``path``: a regular file of at most ``MAX_ONNX_BYTES``, read once (a pipe or a
    device is refused unread). A model folder's ``model.onnx`` (a user's torch module's, ``lab.fitting``) must
    match the sha256 its card records: replaced alone, another net loaded in its place."""
    try:
        size = path.stat().st_size  # a file over the limit is refused by its size, unread
        framed = size > MAX_ONNX_BYTES or _framed(path, size)
        data = None if size > MAX_ONNX_BYTES or not framed else read_regular(path, MAX_ONNX_BYTES + 1)
    except OSError:
        size, data, framed = 0, None, True
    if size > MAX_ONNX_BYTES or (data is not None and len(data) > MAX_ONNX_BYTES):  # or grown since its stat
        raise ModelFileError(f"{path} is larger than any ONNX file can be (2 GiB); export the model again.")
    if not framed:
        raise ModelFileError(
            f"{path} is not a readable ONNX model (its bytes are no protobuf message, as an ONNX file's are); export "
            "it again with `mnistlab export MODEL_DIR --onnx FILE`."
        )
    if data is None:
        raise ModelFileError(f"No ONNX file at {path}; export one with `mnistlab export MODEL_DIR --onnx FILE`.")
    expected = _recorded_sha256(path)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ModelFileError(
            f"{path} does not match the onnx_sha256 recorded in {path.parent / CARD_FILE}, so it was changed or "
            "corrupted; restore the original file or train the model again."
        )
    return data


# Top-level fields walked before a file is read: an ONNX file has a dozen or so; past these, it is read and parsed.
_MAX_FIELDS = 100_000
_FIXED = {1: 8, 5: 4}  # protobuf's fixed-size wire types: their bytes


def _framed(path: Path, size: int) -> bool:
    """Whether the regular file ``path`` (``size`` bytes) is a protobuf message's frame, as an ONNX file is: its
    top-level fields walked by their tags and lengths, seeking past each field's bytes, never reading them. A 2 GB
    file of zeros (a field numbered 0), or one cut short (a field running past its end), was read whole, 2 GB of
    memory and 9 s, before protobuf refused it. True for what is no regular file (``read_regular`` refuses it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe would block a plain open
    except OSError:
        return True  # said as a missing file by read_regular
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True
        for _ in range(_MAX_FIELDS):
            if f.tell() == size:
                return size > 0
            tag = _varint(f)
            if tag is None or tag >> 3 == 0 or tag & 7 not in (0, 1, 2, 5):  # field 0, a group or no wire type
                return False
            wire = tag & 7
            skip = _FIXED[wire] if wire in _FIXED else _varint(f)  # a varint's own bytes, or a length
            if wire == 0:
                skip = None if skip is None else 0
            if skip is None or f.tell() + skip > size:
                return False
            f.seek(skip, os.SEEK_CUR)
    return True


def _varint(f) -> int | None:
    """A protobuf varint read from ``f`` (at most 10 bytes), or None where the file ends or it runs on."""
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def _recorded_sha256(path: Path) -> str | None:
    """The onnx_sha256 of the card beside ``path`` where ``path`` is a model folder's ``model.onnx`` (the card
    checked in full: ``read_card``); None for any other file."""
    if path.name != ONNX_FILE or not (path.parent / CARD_FILE).exists():
        return None
    return read_card(path.parent).get("onnx_sha256")


def _check_self_contained(model: bytes) -> None:
    """Refuse a graph keeping a tensor in another file: read from bytes, onnxruntime looked for that file in the
    current folder (a model from elsewhere read ``secret.bin`` there into its weights), not beside the model.
    mnistlab's exports hold every tensor in the one file."""
    try:
        proto = onnx.load_from_string(model)
    except Exception as exc:  # protobuf's DecodeError, onnx's own
        raise ModelFileError(f"Not a readable ONNX model ({exc}); export it again.") from None
    name = next((t.name for t in _tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL), None)
    if name is not None:
        raise ModelFileError(
            f"This ONNX model keeps tensor {name!r} in another file, which onnxruntime would look for in the current "
            "folder; export the model with `mnistlab export MODEL_DIR --onnx FILE`, which writes one file."
        )


def _tensors(proto: onnx.ModelProto):
    """Every tensor of the model: initializers (sparse ones too) and node attributes, in every graph and function,
    walked without recursion."""
    graphs: list = [proto.graph, *proto.functions]
    while graphs:
        graph = graphs.pop()
        if isinstance(graph, onnx.GraphProto):
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
        for node in graph.node:
            for attribute in node.attribute:
                yield from (attribute.t, *attribute.tensors)
                for sparse in (attribute.sparse_tensor, *attribute.sparse_tensors):
                    yield from (sparse.values, sparse.indices)
                graphs.extend((attribute.g, *attribute.graphs))


def _image_input(session) -> str:
    """The name of the graph's one input, refused in one sentence unless it takes a batch of float images (N, 1,
    H, W) and gives one row per image: another graph failed with onnxruntime's or numpy's errors at the first call."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    image = inputs[0] if len(inputs) == 1 else None
    if image is None or image.type != "tensor(float)" or len(image.shape) != 4 or image.shape[1] not in (1, None):
        got = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs) or "nothing"
        raise ModelFileError(
            f"This ONNX model does not read a batch of float images (N, 1, H, W), as mnistlab's exports do: it "
            f"reads {got}; export the model with `mnistlab export MODEL_DIR --onnx FILE`."
        )
    if len(outputs[0].shape) != 2:
        raise ModelFileError(
            f"This ONNX model answers {outputs[0].shape}, not one row of class probabilities per image (N, classes), "
            "as mnistlab's exports do; export the model with `mnistlab export MODEL_DIR --onnx FILE`."
        )
    return image.name


def _classes(session) -> np.ndarray | None:
    """The class labels in the graph's metadata (``classes``, a JSON list); None where it names none (or an
    empty list: ``OnnxPredictor.from_module`` without classes), and predictions are column numbers."""
    text = session.get_modelmeta().custom_metadata_map.get("classes")
    if text is None:
        return None
    try:
        classes = json.loads(text)
    except ValueError:
        classes = None
    n = session.get_outputs()[0].shape[1]
    plain = isinstance(classes, list) and all(type(c) in (int, float, str, bool) for c in classes)
    if not plain or (classes and isinstance(n, int) and len(classes) != n):
        raise ModelFileError(
            f"This ONNX model's metadata names its classes {text[:80]!r}, not a JSON list of a label per output "
            f"column ({n}); export the model again with `mnistlab export MODEL_DIR --onnx FILE`."
        )
    return np.asarray(classes) if classes else None
