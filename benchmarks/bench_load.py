"""Cold and warm load of all of MNIST: mnistlab against a plain gzip + numpy reader.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_load.py [--trials 5]

The plain reader is what most tutorials write: gunzip each file and
``np.frombuffer`` the payload (no checksum, no validation, no cache). mnistlab's
cold load gunzips, hashes and validates every file and writes the .npy cache; a
warm load memory-maps that cache.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mnistlab import load_mnist

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def plain_reader(folder: Path):
    out = []
    for name in FILES:
        with gzip.open(folder / name, "rb") as f:
            buf = f.read()
        offset = 16 if "images" in name else 8
        arr = np.frombuffer(buf, np.uint8, offset=offset)
        out.append(arr.reshape(-1, 28, 28) if "images" in name else arr)
    return np.concatenate([out[0], out[2]]), np.concatenate([out[1], out[3]])


def timed(fn, trials):
    times = []
    for _ in range(trials):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, times


def fmt(times):
    mean = statistics.mean(times)
    spread = statistics.stdev(times) if len(times) > 1 else 0.0
    return f"{mean * 1000:9.2f} ms ± {spread * 1000:6.2f} (min {min(times) * 1000:.2f})", mean


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    folder = Path(os.environ.get("MNISTLAB_DATA", "../shared/data/mnist"))
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"data: {folder}, {args.trials} trials each, mean ± stdev")

    (ref_x, ref_y), t_plain = timed(lambda: plain_reader(folder), args.trials)

    def cold():
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache
            b = load_mnist("mnist", data_dir=folder)
            return np.asarray(b.images).copy(), b.target.copy()

    (x, y), t_cold = timed(cold, args.trials)
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)

    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        load_mnist("mnist", data_dir=folder)  # build the cache
        # Touch every pixel so the warm figure includes reading the mapped pages.
        b, t_warm = timed(lambda: load_mnist("mnist", data_dir=folder), args.trials * 4)
        _, t_warm_sum = timed(lambda: int(load_mnist("mnist", data_dir=folder).data.sum(dtype=np.uint64)), args.trials)
        assert np.array_equal(np.asarray(b.images), ref_x)

    s_plain, m_plain = fmt(t_plain)
    s_cold, m_cold = fmt(t_cold)
    s_warm, m_warm = fmt(t_warm)
    s_sum, m_sum = fmt(t_warm_sum)
    print(f"plain gzip + frombuffer (no verification) {s_plain}")
    print(f"mnistlab cold (gunzip + sha256 + cache)   {s_cold}   ratio to plain {m_cold / m_plain:5.2f}x")
    print(f"mnistlab warm (memory-mapped cache)       {s_warm}   plain / warm   {m_plain / m_warm:7.0f}x")
    print(f"mnistlab warm + sum of every pixel        {s_sum}   plain / this   {m_plain / m_sum:7.1f}x")


if __name__ == "__main__":
    main()
