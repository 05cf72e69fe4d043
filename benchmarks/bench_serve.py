"""`mnistlab serve` under load: 50 concurrent clients posting photos of digits.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_serve.py \
        [--model DIR] [--requests 1000] [--clients 50] [--trials 3]

A real server runs in a subprocess on 127.0.0.1 (``python -m mnistlab.cli
serve``); the clients are httpx AsyncClients in this process, each posting
photo-like JPEG/PNG digits (``mnistlab.testing.make_photo``) to
/api/predict until the fixed count of requests is spent. Printed per trial:
requests/s, p50 and p99 latency, errors (must be 0), accuracy of the answers;
and the server's resident memory (VmRSS, and peak VmHWM, from /proc/PID/status)
before the first and after the last trial. The reference is the same
``predict_image`` called in-process with no HTTP, one photo at a time and in
as many threads as the server runs inferences at once.

Without --model, the best model saved on this machine is used, else a
knn-deskew model fitted on 10,000 training digits (seed 0) in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from mnistlab import load_mnist
from mnistlab.models.files import find_best_model, load_model, save_model
from mnistlab.models.recipes import get_recipe
from mnistlab.testing import make_photo
from mnistlab.trust.predict import predict_image


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used: less sensitive than wall time to other work on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quick_model(folder: Path) -> Path:
    b = load_mnist("mnist")
    n = 10_000
    model = get_recipe("knn-deskew").build(seed=0, n_jobs=1).fit(b.data[:n], b.target[:n])
    test = b.details["n_train"]
    acc = float(model.score(b.data[test : test + 2000], b.target[test : test + 2000]))
    card = {"recipe": "knn-deskew", "seed": 0, "metrics": {"n_train": n, "test_accuracy_2000": acc}}
    return save_model(model, folder, card=card)


def start_server(model_dir: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--model", str(model_dir), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start in 120 s")


async def load_run(url: str, photos: list[tuple[str, bytes, int]], n_requests: int, n_clients: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    right = 0
    next_index = 0
    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker():
            nonlocal next_index, right
            while next_index < n_requests:
                i = next_index
                next_index += 1
                name, data, label = photos[i % len(photos)]
                t = time.perf_counter()
                try:
                    r = await client.post("/api/predict", files={"file": (name, data)})
                    ok = r.status_code == 200
                    if ok:
                        right += r.json()["digit"] == label
                    else:
                        errors.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(n_clients)))
        wall = time.perf_counter() - t0
    q = np.quantile(latencies, [0.5, 0.99]) if latencies else [float("nan")] * 2
    return {
        "wall": wall,
        "rps": n_requests / wall,
        "p50": q[0],
        "p99": q[1],
        "errors": errors,
        "accuracy": right / n_requests,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--photos", type=int, default=200, help="distinct photos, cycled through")
    args = ap.parse_args()

    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or find_best_model() or quick_model(Path(tmp) / "knn-deskew")
        estimator, card = load_model(model_dir)
        print(f"model: {model_dir} (recipe {card.get('recipe')}, {card.get('metrics')})")

        b = load_mnist("mnist")
        test = b.details["n_train"]
        rng = np.random.default_rng(0)
        photos = []
        for i in range(args.photos):
            data = make_photo(b.images[test + i], rng)
            kind = "jpg" if data[:2] == b"\xff\xd8" else "png"
            photos.append((f"photo{i}.{kind}", data, int(b.target[test + i])))
        sizes = [len(d) for _, d, _ in photos]
        print(
            f"photos: {len(photos)} generated, {np.mean(sizes) / 1024:.0f} KiB mean, "
            f"{sum(n.endswith('jpg') for n, _, _ in photos)} JPEG / {sum(n.endswith('png') for n, _, _ in photos)} PNG"
        )

        # Reference: the same pipeline in this process, no HTTP, first one photo at a time, then in
        # as many worker threads as the server runs inferences at once (one per CPU, at least two).
        predict_image(photos[0][1], estimator)  # calibrates the in-memory estimator once
        lanes = max(2, os.cpu_count() or 2)
        refs = {}
        for label, workers in (("sequential", 1), (f"{lanes} threads", lanes)):
            with ThreadPoolExecutor(workers) as pool:
                t, cpu = time.perf_counter(), time.process_time()
                answers = list(pool.map(lambda p: predict_image(p[1], estimator)["digit"] == p[2], photos))
                refs[label] = len(photos) / (time.perf_counter() - t)
                ref_cpu = (time.process_time() - cpu) / len(photos)
            print(
                f"in-process predict_image, {label:>10}: {refs[label]:6.1f} photos/s, "
                f"{ref_cpu * 1000:5.1f} CPU-ms per photo, accuracy {np.mean(answers):.3f}"
            )

        port = free_port()
        server = start_server(Path(model_dir), port)
        try:
            before = memory(server.pid)
            print(
                f"server pid {server.pid}: RSS {mib(before['VmRSS'])} when ready, "
                f"peak so far {mib(before['VmHWM'])} (model loading and confidence calibration)"
            )
            print(f"{args.trials} trials x {args.requests} requests, {args.clients} concurrent clients")
            runs = []
            for trial in range(args.trials):
                cpu = cpu_seconds(server.pid)
                r = asyncio.run(load_run(f"http://127.0.0.1:{port}", photos, args.requests, args.clients))
                r["cpu"] = (cpu_seconds(server.pid) - cpu) / args.requests
                runs.append(r)
                print(
                    f"  trial {trial + 1}: {r['rps']:6.1f} req/s  p50 {r['p50'] * 1000:6.0f} ms  "
                    f"p99 {r['p99'] * 1000:6.0f} ms  errors {len(r['errors'])}  accuracy {r['accuracy']:.3f}  "
                    f"server {r['cpu'] * 1000:.1f} CPU-ms/request  ({r['wall']:.1f} s)"
                )
                for e in r["errors"][:5]:
                    print(f"    error: {e}")
            after = memory(server.pid)
        finally:
            server.terminate()
            server.wait(30)

    rps = [r["rps"] for r in runs]
    p50 = [r["p50"] * 1000 for r in runs]
    p99 = [r["p99"] * 1000 for r in runs]
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    print(
        f"requests/s: {statistics.mean(rps):.1f} ± {spread(rps):.1f}   "
        f"p50 {statistics.mean(p50):.0f} ± {spread(p50):.0f} ms   p99 {statistics.mean(p99):.0f} ± {spread(p99):.0f} ms"
    )
    print(
        f"server CPU per request: {statistics.mean(r['cpu'] for r in runs) * 1000:.1f} ms "
        f"(in-process, {lanes} threads: {ref_cpu * 1000:.1f} ms per photo)"
    )
    for label, rate in refs.items():
        print(f"server / in-process {label}: {statistics.mean(rps) / rate:.2f}x")
    print(f"errors: {sum(len(r['errors']) for r in runs)} of {args.trials * args.requests}")
    print(
        f"server memory: RSS {mib(before['VmRSS'])} before, {mib(after['VmRSS'])} after; "
        f"peak {mib(before['VmHWM'])} at start-up, {mib(after['VmHWM'])} overall"
    )


if __name__ == "__main__":
    main()
