"""CPU per photo of ``predict_image``: this tree against another git revision, on the same photos, in one run.

    nice .venv/bin/python benchmarks/bench_photo_cpu.py [--against main] [--n 10] [--rounds 5] [--reps 3] [--seed 0]

Photos: ``mnistlab.testing.hands`` single digits (``--n`` per source and
surface) and non-digits (``--n`` per kind), written once as files. Each round
runs one process per tree, the two alternating, so that a change in the
machine's load hits both alike; each process reads every photo once to warm
up, then times ``predict_image`` (decode, ``to_mnist``, classify, confidence)
over all of them ``--reps`` times with ``time.process_time``, BLAS/OpenMP
and OpenCV held to one thread. The other tree is ``git archive --against``'s
``src``, shipped reader included. Figures: CPU ms per photo per tree (min and
median over the rounds and repeats), the ratio ours / theirs, and whether
the two trees gave the same answers (digit, confident, reason) and the same
28x28 images. The machine and its load average at start and end are printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one

ROOT = Path(__file__).resolve().parent.parent


def write_photos(folder: Path, n: int, seed: int) -> int:
    from mnistlab.testing.hands import DIGIT_SOURCES, NON_DIGIT_SOURCES, SURFACES, digit_samples, non_digit_samples

    rng = np.random.default_rng(seed)
    samples = [s for src in DIGIT_SOURCES for surface in SURFACES for s in digit_samples(src, n, rng, surface=surface)]
    samples += [s for kind in NON_DIGIT_SOURCES for s in non_digit_samples(kind, n, rng)]
    for i, s in enumerate(samples):
        (folder / f"{i:05d}.img").write_bytes(s.data)
    return len(samples)


def child(folder: Path, reps: int) -> None:
    """Run in the tree under test: print the ms per photo of each repeat, and a digest of the answers."""
    import cv2
    from threadpoolctl import threadpool_limits

    from mnistlab import predict_image

    photos = [p.read_bytes() for p in sorted(folder.glob("*.img"))]
    cv2.setNumThreads(1)  # OpenCV's own pool: idle, its threads spin on the other core and count as CPU
    with threadpool_limits(limits=1):
        answers = [predict_image(p, top=1) for p in photos]  # warm: the reader loaded, caches filled
        times = []
        for _ in range(reps):
            start = time.process_time()
            for p in photos:
                predict_image(p, top=1)
            times.append((time.process_time() - start) * 1000 / len(photos))
    digest = hashlib.sha256()
    for a in answers:
        digest.update(a["mnist_image"].tobytes())
    print(json.dumps({"ms": times, "answers": [[a["digit"], a["confident"], a["reason"]] for a in answers],
                      "images_sha256": digest.hexdigest()}))  # fmt: skip


def run_tree(src: Path, folder: Path, reps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), "--reps", str(reps)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="main", help="the git revision to compare with")
    ap.add_argument("--n", type=at_least_one, default=10, help="photos per source and surface, and per non-digit kind")
    ap.add_argument("--rounds", type=at_least_one, default=5, help="processes per tree, alternating")
    ap.add_argument("--reps", type=at_least_one, default=3, help="timed passes over the photos per process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child), args.reps)
        return
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        photos, theirs = Path(tmp) / "photos", Path(tmp) / "theirs"
        photos.mkdir()
        theirs.mkdir()
        count = write_photos(photos, args.n, args.seed)
        archive = subprocess.run(["git", "archive", args.against, "src"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(theirs)], input=archive.stdout, check=True)
        trees = {"ours": ROOT / "src", "theirs": theirs / "src"}
        ms: dict[str, list[float]] = {"ours": [], "theirs": []}
        last = {}
        for _ in range(args.rounds):
            for name in ("theirs", "ours"):
                last[name] = run_tree(trees[name], photos, args.reps)
                ms[name].extend(last[name]["ms"])
    same_answers = sum(a == b for a, b in zip(last["ours"]["answers"], last["theirs"]["answers"]))
    print(f"machine: {machine.describe()}; "
          f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")  # fmt: skip
    print(f"{count} photos (seed {args.seed}), {args.rounds} processes per tree x {args.reps} passes; "
          f"ours: this tree, theirs: {args.against}")  # fmt: skip
    for name in ("theirs", "ours"):
        print(f"{name:7s} CPU ms per photo: min {min(ms[name]):.3f}, median {statistics.median(ms[name]):.3f}")
    print(f"ratio ours / theirs: min {min(ms['ours']) / min(ms['theirs']):.3f}, "
          f"median {statistics.median(ms['ours']) / statistics.median(ms['theirs']):.3f}")  # fmt: skip
    print(f"same answers (digit, confident, reason): {same_answers} of {count}; "
          f"same 28x28 images: {last['ours']['images_sha256'] == last['theirs']['images_sha256']}")  # fmt: skip


if __name__ == "__main__":
    main()
