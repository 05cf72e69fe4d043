"""A saved CNN as an ONNX file: float32 as trained, or with int8 convolutions measured against it."""

from __future__ import annotations

import json

import numpy as np

from mnistlab._text import json_safe
from mnistlab.data.home import home_path
from mnistlab.errors import InputError, ParameterError
from mnistlab.lab.evaluate import model_data
from mnistlab.lab.options import Progress, callback, check_writable_file
from mnistlab.lab.record import package_versions
from mnistlab.models.files import load_model

__all__ = ["export_model", "MAX_INT8_DROP"]

# The most test accuracy int8 convolutions may lose against the float32 graph before the file is refused. On the
# `cnn` recipe they gained 0.01 points; a quantization that goes wrong loses tens of points (see models.cnn.quantize).
MAX_INT8_DROP = 0.005


def export_model(model_dir, onnx_file, *, int8: bool = False, progress: Progress | None = None, data=None) -> dict:
    """Write the CNN saved in ``model_dir`` as ONNX to ``onnx_file``; returns what was written.

    With ``int8``, the convolutions are quantized, calibrated on
    ``CALIBRATION_IMAGES`` of the images the model was trained on (its card's
    split, seed and limit; ``data``: the caller's four arrays, as ``evaluate_model``
    takes them), and both graphs are measured on its test set: the file is
    written only if int8 loses at most ``MAX_INT8_DROP`` of the test accuracy.
    Its metadata (``int8``) records both accuracies and what redoes the
    calibration: the card's sha256, split, seed and limit, the data's sha256
    and the package versions. Either file's metadata (``source``) names what it
    was exported from: the card's sha256, recipe, seed, split and data, the test
    accuracy, and the package versions of the export.
    """
    from mnistlab.models.cnn.onnx import onnx_graph, write_graph  # torch and onnx: seconds to import

    if not isinstance(int8, bool | np.bool_):  # "no" is truthy: it ran the int8 export
        raise ParameterError("int8", f"{{param}} must be True or False, got {int8!r}.")
    # Before the export: a path that cannot be written, a model's own file, or the package's own folder (the
    # shipped reader's classifier.onnx, replaced, broke every later prediction) is refused in one sentence.
    model_dir, onnx_file = home_path(model_dir, "model_dir"), home_path(onnx_file, "onnx_file")  # ~: as the CLI
    check_writable_file(onnx_file, "onnx_file")
    progress = callback(progress)
    progress(f"loading {model_dir}")
    estimator, card = load_model(model_dir)
    progress("exporting the graph and checking it against PyTorch")
    graph = onnx_graph(estimator)
    result: dict = {"recipe": card.get("recipe"), "int8": int8}
    if int8:
        graph, measured = _int8_graph(graph, estimator, model_dir, card, progress, data)
        result.update(measured)
    path = write_graph(_with_source(graph, card), onnx_file)
    return {**result, "onnx_file": str(path), "size_bytes": path.stat().st_size, "image_shape": estimator.image_shape_}


def _int8_graph(graph: bytes, estimator, model_dir, card: dict, progress: Progress, data) -> tuple[bytes, dict]:
    """The graph with int8 convolutions, and its test accuracy beside the float32 graph's."""
    import onnx

    from mnistlab.models.cnn.onnx import OnnxPredictor
    from mnistlab.models.cnn.quantize import CALIBRATION_IMAGES, quantize_convolutions

    refusal = (
        "--int8 calibrates and checks on the model's own data; export it without --int8, or in Python pass its "
        "data: export_model(model_dir, onnx_file, int8=True, data=(X_train, X_test, y_train, y_test))."
    )
    split = model_data(model_dir, estimator, card, data, refusal, limit=True)  # the images the model was trained on
    seed = card.get("seed", 42)
    float_net = OnnxPredictor(graph)
    h, w = float_net.image_shape_
    picked = np.random.default_rng(seed).permutation(len(split.X_train))[:CALIBRATION_IMAGES]
    calibration = _unit(split.X_train[picked], h, w)
    progress(f"quantizing the convolutions, calibrated on {len(picked):,} training images")
    int8_graph = quantize_convolutions(graph, calibration)
    progress(f"measuring both graphs on {len(split.y_test):,} test images")
    test = _unit(split.X_test, h, w)
    float_proba = float_net.predict_proba(test)
    classes = float_net.classes_ if float_net.classes_ is not None else np.arange(float_proba.shape[1])
    float_pred = classes[float_proba.argmax(1)]
    int8_pred = classes[OnnxPredictor(int8_graph).predict_proba(test).argmax(1)]
    measured = {
        "n_calibration": len(picked),
        "n_test": len(split.y_test),
        "accuracy_float32": float(np.mean(float_pred == split.y_test)),
        "accuracy_int8": float(np.mean(int8_pred == split.y_test)),
        "same_answers": int(np.sum(int8_pred == float_pred)),
    }
    # Counted, not subtracted: 1.0 - 0.995 is 0.0050000000000000044, which refused a drop of exactly the limit.
    lost = int(np.sum(float_pred == split.y_test)) - int(np.sum(int8_pred == split.y_test))
    if lost > round(MAX_INT8_DROP * len(split.y_test), 9):
        raise InputError(
            f"With int8 convolutions {model_dir} answers {measured['accuracy_int8']:.2%} of its test images right, "
            f"against {measured['accuracy_float32']:.2%} in float32, so nothing was written; export it without --int8."
        )
    proto = onnx.load_from_string(int8_graph)
    props = {p.key: p.value for p in proto.metadata_props}
    # What redoes the calibration: the model (its card), the data and the cut of it, the seed, the quantizer's versions.
    source = {k: card.get(k) for k in ("card_sha256", "split", "test_size", "limit", "seed")}
    drawn = f"{len(picked)} of the model's {len(split.X_train)} training images, seed {seed}"
    props["int8"] = json.dumps(
        {"calibration": drawn, **measured, "data_sha256": split.sha256, **source, "versions": package_versions()}
    )
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString(), measured


def _with_source(graph: bytes, card: dict) -> bytes:
    """The graph with what it was exported from in its metadata (``source``, JSON): the model's card (its sha256),
    recipe, seed and the split and data it was trained on, its test accuracy, and the packages that exported it."""
    import onnx

    proto = onnx.load_from_string(graph)
    props = {p.key: p.value for p in proto.metadata_props}
    trained = ("card_sha256", "recipe", "seed", "split", "test_size", "limit", "dataset", "data_sha256", "data_dir")
    props["source"] = json.dumps(  # json_safe: a data_dir named b"r\\xfe" as r\\xfe, not a lone surrogate's escape
        json_safe(
            {
                **{k: card.get(k) for k in trained if k in card},
                "test_accuracy": (card.get("metrics") or {}).get("test_accuracy"),
                "versions": {**package_versions(), "onnx": onnx.__version__},
            }
        )
    )
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


def _unit(pixels: np.ndarray, h: int, w: int) -> np.ndarray:
    """(N, h*w) 0-255 pixels -> float32 (N, 1, h, w) in [0, 1], as the graph reads them."""
    from mnistlab.data.pixels import unit_pixels

    return unit_pixels(np.asarray(pixels)).reshape(-1, 1, h, w)
