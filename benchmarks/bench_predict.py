"""Where a prediction's CPU goes, and ``mnistlab predict`` over many files, with the shipped reader.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_predict.py \
        [--files 2000] [--photos 200] [--repeat 3]

1. The shipped nets on onnxruntime (one intra-op thread, as served): images/s
   at batch 1000 and the latency of one image (median of many calls); then
   the nets of the ``cnn-fast`` and ``cnn`` recipes (built as ``train`` builds
   them, weights untrained: the speed does not depend on them) with one
   thread and with one per CPU, through ``OnnxPredictor`` (about 128 images a
   session run, runs side by side, each on one thread; one image in one run on
   onnxruntime's threads) and, for reference, the batch in one run on
   onnxruntime's threads.
2. ``Predictor.describe`` per image at batch 1 and batch 64 (what micro-batching
   saves), split into the classifier and the not-a-digit scores; with
   OpenBLAS's default threads and with one (as the server and predict run).
3. One photo's CPU split: decode + ``to_mnist``, ``describe``, the answer's
   PNG and JSON; the HTTP/multipart share is the server's CPU per request
   (``bench_serve.py``) less these.
4. Photos/s through ``predict_image`` on 2 cores: one thread, two threads,
   two processes (threads help only as far as the reading steps drop the GIL).
5. ``mnistlab predict DIR --json`` over ``--files`` photo files in a
   subprocess, ``--jobs 1`` and one per CPU: photos/s, start-up included and
   without it (the time to the first answer).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one
from mnistlab import load_mnist
from mnistlab.reading.decode import encode_png
from mnistlab.reading.steps import to_mnist
from mnistlab.testing import make_photo
from mnistlab.trust.predict import load_predictor, predict_image, to_json
from mnistlab.trust.scores import silhouette


def cpu_ms(fn, n: int) -> float:
    """CPU-ms per call of ``fn`` over ``n`` calls (CPU time: less sensitive to a busy machine than wall)."""
    t = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t) / n * 1000


def speed(run, x: np.ndarray, repeat: int) -> str:
    """``run``'s images/s on the batch ``x`` (median of ``repeat``) and its latency for one image (of 2000)."""
    run(x)  # a first run sets up the session's buffers
    rates = []
    for _ in range(repeat):
        t = time.perf_counter()
        run(x)
        rates.append(len(x) / (time.perf_counter() - t))
    one = []
    for i in range(2000):
        t = time.perf_counter()
        run(x[i % len(x) : i % len(x) + 1])
        one.append(time.perf_counter() - t)
    return (
        f"{statistics.median(rates):9,.0f} images/s at batch {len(x)}, "
        f"one image {statistics.median(one) * 1000:.3f} ms (median of 2000)"
    )


def nets(predictor, digits: np.ndarray, repeat: int) -> None:
    batch = np.resize(digits, (1000, 28, 28))
    for name, net, x in (
        ("classifier", predictor.reader.classifier, batch),
        ("detector", predictor.reader.detector, silhouette(batch)),
    ):
        print(f"  {name:>10}: {speed(net.proba, x, repeat)}")


def recipe_nets(digits: np.ndarray, repeat: int) -> None:
    """The recipes' nets alone on onnxruntime: images/s at batch 1000 and one image, 1 thread and all cores."""
    from mnistlab.models.cnn.net import build_net
    from mnistlab.models.cnn.onnx import OnnxPredictor, _model_proto
    from mnistlab.models.recipes import get_recipe
    from mnistlab.models.sessions import cpu_session

    x = np.resize(digits, (1000, 1, 28, 28)).astype(np.float32) / 255
    for recipe in ("cnn-fast", "cnn"):
        arch = get_recipe(recipe).build(0, 1).get_params()["arch"]
        module = build_net(arch, 10, (28, 28)).eval()
        graph = _model_proto(module, (28, 28), list(range(10))).SerializeToString()
        for threads in sorted({1, os.cpu_count() or 1}):
            net = OnnxPredictor(graph, n_threads=threads)
            reference = cpu_session(graph, threads)

            def whole(batch, session=reference):  # the reference: the batch in one run on onnxruntime's threads
                return session.run(None, {"image": batch})[0]

            print(f"  {recipe:>10} ({arch}), {threads} thread(s): {speed(net.predict_proba, x, repeat)}")
            print(f"  {'':>10}   in one session run: {speed(whole, x, repeat)}")


def describe_split(predictor, digits: np.ndarray) -> None:
    for n in (1, 64):
        x = digits[:n]
        total = cpu_ms(lambda x=x: predictor.describe(x, 3), 2000 // n) / n
        classify = cpu_ms(lambda x=x: predictor.classify(x), 2000 // n) / n
        scores = cpu_ms(lambda x=x: predictor.reader.scores(x), 2000 // n) / n
        print(
            f"  batch {n:>2}: describe {total:.3f} CPU-ms per image (classifier {classify:.3f}, "
            f"not-a-digit scores {scores:.3f})"
        )


def photo_split(predictor, photos: list[bytes]) -> None:
    images = [to_mnist(p) for p in photos]
    read = cpu_ms(lambda: [to_mnist(p) for p in photos], 1) / len(photos)
    ask = cpu_ms(lambda: [predictor.describe(im[None], 3) for im in images], 1) / len(photos)
    results = [predictor.describe(im[None], 3)[0] for im in images]

    def answer(r):
        out = to_json(r, "photo.jpg")
        out["mnist_image_png"] = "data:image/png;base64," + base64.b64encode(encode_png(r["mnist_image"])).decode()
        return json.dumps(out)

    write = cpu_ms(lambda: [answer(r) for r in results], 1) / len(photos)
    print(
        f"  decode + to_mnist {read:.2f}, describe (alone) {ask:.2f}, answer PNG + JSON {write:.2f} CPU-ms per photo "
        f"({np.mean([len(p) for p in photos]) / 1024:.1f} KiB mean)"
    )


def _digit(photo: bytes) -> int:
    return int(predict_image(photo)["digit"])


def lanes(photos: list[bytes]) -> None:
    _digit(photos[0])
    for label, pool in (
        ("1 thread", ThreadPoolExecutor(1)),
        ("2 threads", ThreadPoolExecutor(2)),
        ("2 processes", ProcessPoolExecutor(2)),
    ):
        with pool:
            list(pool.map(_digit, photos[:4]))  # started and warm
            t = time.perf_counter()
            list(pool.map(_digit, photos, **({"chunksize": 8} if "process" in label else {})))
            print(f"  {label:>11}: {len(photos) / (time.perf_counter() - t):6.1f} photos/s")


def predict_dir(folder: Path, n: int, jobs: int | None) -> None:
    cmd = [sys.executable, "-m", "mnistlab.cli", "predict", str(folder), "--json"]
    cmd += ["--jobs", str(jobs)] if jobs else []
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = None
    lines = 0
    for _ in proc.stdout:
        lines += 1
        first = first or time.perf_counter()
    proc.wait()
    wall = time.perf_counter() - t
    assert lines == n, f"{lines} answers for {n} files"
    after = wall - (first - t if first else 0)
    print(
        f"  --jobs {jobs or 'all':>3}: {n / wall:6.1f} photos/s with start-up ({wall:.1f} s), "
        f"{(n - 1) / after:6.1f} photos/s after the first answer ({first - t if first else 0:.1f} s to it)"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=at_least_one, default=2000, help="photo files for `mnistlab predict DIR`")
    ap.add_argument("--photos", type=at_least_one, default=200, help="photos for the CPU split and the lanes")
    ap.add_argument("--repeat", type=at_least_one, default=3)
    args = ap.parse_args()
    print(f"machine: {machine.describe()}, load {os.getloadavg()}")
    b = load_mnist("mnist")
    test = b.details["n_train"]
    digits = b.images[test : test + 1000]
    if args.photos > len(b.images) - test:  # more photos than test digits: it took the first 1,000 alone
        ap.error(f"argument --photos: at most the {len(b.images) - test:,} test digits, not {args.photos}")
    rng = np.random.default_rng(0)
    photos = [make_photo(d, rng) for d in b.images[test : test + args.photos]]
    predictor = load_predictor(None)
    print("1. shipped nets on onnxruntime, one thread")
    nets(predictor, digits, args.repeat)
    print("   the recipes' nets, weights untrained")
    recipe_nets(digits, args.repeat)
    print("2. describe per image, BLAS threads as found (OpenBLAS: one per CPU)")
    describe_split(predictor, digits)
    print("   ... with one BLAS and one OpenCV thread, as `mnistlab serve` and `predict` run (from here on)")
    cv2.setNumThreads(1)  # the scores' components and distances: OpenCV's pool only wakes threads for 28x28
    with threadpool_limits(1, user_api="blas"):
        describe_split(predictor, digits)
    print("3. one photo's CPU")
    photo_split(predictor, photos)
    print("4. predict_image on photos, 2 cores")
    lanes(photos)
    print(f"5. mnistlab predict DIR over {args.files} photo files")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.files):
            data = photos[i % len(photos)] if i < len(photos) else make_photo(digits[i % 1000], rng)
            suffix = "jpg" if data[:2] == b"\xff\xd8" else "png"
            (folder / f"{i:05d}.{suffix}").write_bytes(data)
        for jobs in (1, None):
            predict_dir(folder, args.files, jobs)


if __name__ == "__main__":
    main()
