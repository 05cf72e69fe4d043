"""A sweep's search space: ``--param NAME=V1,V2`` parsed, the configurations of its grid, all or drawn, and the
spec file of the one chosen.

The grid is counted before any of its points is made: its size is the
product of the numbers of values, so a grid too large to run or to draw from
is one sentence, not the machine's memory. A point is made from its index
(``itertools.product``'s order), so a draw costs what it picks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab.errors import ParameterError

__all__ = ["parse_params", "configs", "write_spec", "MAX_TRIALS", "MAX_GRID"]

MAX_TRIALS = 1000  # a grid or --samples above this is refused before anything starts
MAX_GRID = 1_000_000  # points --samples may draw from: the draw permutes them all (8 bytes each)


def parse_params(texts: list[str]) -> dict[str, list]:
    """``["lr=0.05,0.1", "epochs=2,4"]`` as ``{"lr": [0.05, 0.1], "epochs": [2, 4]}`` (numbers, booleans, text)."""
    params: dict[str, list] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ParameterError("param", f"{{param}} {text!r} is not NAME=V1,V2,...; e.g. lr=0.05,0.1.")
        if name in params:
            raise ParameterError("param", f"{{param}} names {name!r} twice; give all its values in one.")
        params[name] = list(dict.fromkeys(_value(v.strip()) for v in values.split(",")))  # a value given twice: once
    if not params:
        raise ParameterError("param", "No {param} given; name at least one, e.g. lr=0.05,0.1.")
    return params


def _value(text: str):
    try:
        value = json.loads(text.lower() if text.lower() in ("true", "false", "null") else text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, float) and not math.isfinite(value):  # best.json held "Infinity" or "NaN": not JSON
        raise ParameterError("param", f"{{param}} value {text!r} is not a finite number; give one such as 1e300.")
    return value


def configs(params: dict[str, list], samples: int | None, seed: int) -> list[dict]:
    """The grid's configurations, or ``samples`` of them drawn without repeats (seeded: the same draw each time)."""
    size = math.prod(len(values) for values in params.values())
    if samples is None:
        if size > MAX_TRIALS:
            raise ParameterError(
                "param", f"The grid of {{param}} values has {size:,} points, over {MAX_TRIALS}; use --samples N."
            )
        return [_point(params, i) for i in range(size)]
    if not 1 <= samples <= MAX_TRIALS:
        raise ParameterError("samples", f"{{param}} must be from 1 to {MAX_TRIALS} trials, got {samples}.")
    if size > MAX_GRID:
        raise ParameterError(
            "param",
            f"The grid of {{param}} values has {size:,} points, over {MAX_GRID:,} to draw --samples from; "
            "give fewer values.",
        )
    picked = np.random.default_rng(seed).permutation(size)[:samples]  # all of a grid smaller than samples
    return [_point(params, int(i)) for i in sorted(picked)]


def _point(params: dict[str, list], index: int) -> dict:
    """The grid's point ``index`` in ``itertools.product``'s order: the last parameter's value changes fastest."""
    chosen: dict = {}
    for name in reversed(params):
        index, k = divmod(index, len(params[name]))
        chosen[name] = params[name][k]
    return {name: chosen[name] for name in params}


def write_spec(path: Path, spec: dict) -> None:
    """Write a sweep's spec file (atomically): a place that cannot take it once the trials are done (a full disk,
    a folder made in its place meanwhile) is one sentence, where it was a traceback."""
    try:
        atomic_write_bytes(path, (json.dumps(spec, indent=2) + "\n").encode())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ParameterError(
            "out", f"Cannot write {{param}} {path} ({reason}); free space there, or choose another file."
        ) from None
