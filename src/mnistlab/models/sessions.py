"""Running an onnxruntime session on a large batch (numpy and onnxruntime only: the serving path imports it)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

__all__ = ["CHUNK", "run_in_chunks"]

# Images per session run. A batch's activations grow with it (the first stage of the
# standard net holds N x 32 x 28 x 28 floats: 100 MB at N = 1000) and spill out of the
# caches; runs of about 128 images kept them warm, 2 threads: 22,800 against 19,100
# images/s at batch 1000 on the 2-core benchmark machine.
CHUNK = 128


def run_in_chunks(session: ort.InferenceSession, name: str, x: np.ndarray) -> np.ndarray:
    """The session's first output for the batch ``x`` (N, ...), run ``CHUNK`` images or so at a time
    (near-equal parts, ``np.array_split``: no short run left at the end)."""
    if len(x) <= CHUNK:
        return session.run(None, {name: x})[0]
    parts = np.array_split(x, -(-len(x) // CHUNK))
    return np.concatenate([session.run(None, {name: np.ascontiguousarray(part)})[0] for part in parts])
