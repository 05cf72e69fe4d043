"""Cold and warm load of all of MNIST: mnistlab against plain, unverified readers.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_load.py [--trials 5]

Cold: the plain reader is what most tutorials write: gunzip each file and
``np.frombuffer`` the payload (no checksum, no validation, no cache).
mnistlab's cold load hashes every file as a stream, reads it again checking
the sha256 and the IDX header, and writes the .npy cache with its digests.

Warm: the plain read is ``np.load(mmap_mode="r")`` of the same cached
``.npy`` files, unverified; mnistlab's warm load checks the manifest's own
checksum and the digest of every cached byte before mapping them. Target:
verified warm load of all 70,000 images under 50 ms.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import t as t_dist

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one
from mnistlab import load_mnist
from mnistlab.data.cache import array_cache_dir
from mnistlab.data.sources import find_idx_files

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
    n = len(times)
    spread = statistics.stdev(times) if n > 1 else 0.0
    # Student's t 95% interval of the mean (2.78 sd/sqrt(n) for 5 trials, not the normal 1.96); one trial has none.
    ci = f"±{t_dist.ppf(0.975, n - 1) * spread / n**0.5 * 1000:5.2f}" if n > 1 else "   n/a"
    text = f"{mean * 1000:8.2f} ms ± {spread * 1000:6.2f} sd, 95% CI {ci} (min {min(times) * 1000:.2f}, n={n})"
    return text, mean


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=at_least_one, default=5)
    args = ap.parse_args()
    folder = Path(os.environ.get("MNISTLAB_DATA", "../shared/data/mnist"))
    print(f"machine: {machine.describe()}, numpy {np.__version__}")
    print(f"data: {folder}, {args.trials} cold trials, {args.trials * 4} warm trials, mean ± stdev")

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
        files = find_idx_files(folder)
        load_mnist("mnist", data_dir=folder)  # build the cache
        cdir = array_cache_dir("mnist", files)

        def plain_mmap():
            return np.load(cdir / "images.npy", mmap_mode="r"), np.load(cdir / "labels.npy", mmap_mode="r")

        warm_trials = args.trials * 4
        # Interleaved, so that both see the same machine load.
        t_mmap, t_warm = [], []
        for _ in range(warm_trials):
            t_mmap += timed(plain_mmap, 1)[1]
            b, t = timed(lambda: load_mnist("mnist", data_dir=folder), 1)
            t_warm += t
        assert np.array_equal(np.asarray(b.images), ref_x) and np.array_equal(b.target, ref_y)
        # Touch every pixel, so that the figure includes reading the mapped pages.
        _, t_warm_sum = timed(lambda: int(load_mnist("mnist", data_dir=folder).data.sum(dtype=np.uint64)), args.trials)

    s_plain, m_plain = fmt(t_plain)
    s_cold, m_cold = fmt(t_cold)
    s_mmap, m_mmap = fmt(t_mmap)
    s_warm, m_warm = fmt(t_warm)
    s_sum, m_sum = fmt(t_warm_sum)
    print(f"plain gzip + frombuffer (no verification)      {s_plain}")
    print(f"mnistlab cold (2 x gunzip + sha256 + cache)    {s_cold}   cold / plain  {m_cold / m_plain:5.2f}x")
    print(f"plain np.load mmap of the cache (unverified)   {s_mmap}")
    print(f"mnistlab warm (cache verified, then mapped)    {s_warm}   warm / mmap {m_warm / m_mmap:7.0f}x")
    print(f"mnistlab warm + sum of every pixel             {s_sum}   gzip plain / this {m_plain / m_sum:5.1f}x")
    verdict = "met" if m_warm < 0.050 else "MISSED"
    print(f"target: verified warm load under 50 ms: {verdict} (mean {m_warm * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
