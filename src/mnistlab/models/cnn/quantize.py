"""int8 convolutions for an exported CNN graph, with onnxruntime's static quantization.

Only the convolutions become int8 (``QLinearConv``: uint8 activations, int8
weights, one scale per output channel); everything else stays float32. Both
choices were measured on the ``cnn`` recipe's graph, 10,000 MNIST test digits
(benchmarks/RESULTS.md, "int8 convolutions"):

- onnxruntime's default set of operators (the pools, the ReLUs and the linear
  head quantized too) answered 55% of them right, and Conv, MaxPool and Relu
  22%: each pool sits before its ReLU here, and the quantized pair loses the
  signal. The convolutions alone: 99.56% against the float graph's 99.55%,
  the same answer for 99.97% of the digits.
- the QDQ format (quantize and dequantize pairs around float operators) kept
  the answers but ran slower than float32 at batch 1,000 on this project's
  CPUs; the QOperator graph ran 1.8 times faster.

Activations are calibrated on images the caller gives (min and max per tensor),
so they must look like what the net will read.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from mnistlab.errors import InputError

__all__ = ["CALIBRATION_IMAGES", "quantize_convolutions"]

CALIBRATION_IMAGES = 1000  # enough for the min and max of each activation to settle; seconds of work
_BATCH = 100  # calibration images a session run


class _Batches(CalibrationDataReader):
    """The calibration images, ``_BATCH`` at a time, as the graph's input ``name``."""

    def __init__(self, name: str, images: np.ndarray):
        self._parts = iter([{name: images[i : i + _BATCH]} for i in range(0, len(images), _BATCH)])

    def get_next(self) -> dict | None:
        return next(self._parts, None)


def quantize_convolutions(model: bytes, calibration: np.ndarray) -> bytes:
    """The float32 ONNX graph ``model`` with int8 convolutions, calibrated on float32 (N, 1, H, W) images in [0, 1].

    The graph's inputs, outputs and metadata stay as they were.
    """
    proto = onnx.load_from_string(model)
    name = proto.graph.input[0].name
    images = np.ascontiguousarray(calibration, dtype=np.float32)
    quant_log = logging.getLogger()  # onnxruntime.quantization logs its advice on the root logger
    level = quant_log.level
    quant_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="mnistlab-int8-") as tmp:  # the calibration writes graphs to disk
            out = Path(tmp) / "int8.onnx"
            quantize_static(
                proto,
                out,
                _Batches(name, images),
                quant_format=QuantFormat.QOperator,
                op_types_to_quantize=["Conv"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            return out.read_bytes()
    except OSError as exc:  # a full temporary folder: its graphs cannot be written
        raise InputError(
            f"Cannot write the quantizer's graphs in the temporary folder {tempfile.gettempdir()} "
            f"({exc.strerror or exc}); free space there, or set TMPDIR to a folder with room."
        ) from None
    finally:
        quant_log.setLevel(level)
