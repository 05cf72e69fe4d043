"""`mnistlab serve` under load: 50 concurrent clients posting photos of digits, then the same with faults.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_serve.py \
        [--model DIR] [--requests 1000] [--clients 50] [--trials 3] \
        [--faults] [--junk-share 0.3] [--slow-clients 5] [--read-timeout 10]

A real server runs in a subprocess on 127.0.0.1 (``python -m mnistlab.cli
serve``); the clients are httpx AsyncClients in this process, each posting
photo-like JPEG/PNG digits (``mnistlab.testing.make_photo``) to
/api/predict until the fixed count of requests is spent. Printed per trial:
requests/s, p50 and p99 latency, errors (must be 0), accuracy of the answers;
and the server's resident memory (VmRSS, and peak VmHWM, from /proc/PID/status)
before the first and after the last trial. The reference is the same
``predict_image`` called in-process with no HTTP, one photo at a time and in
as many threads as the server runs inferences at once.

With --faults, a load-with-faults run follows the clean trials, on the same
server: the clients mix valid photos with junk (``--junk-share`` of the
requests: text files, truncated photos, empty files, pixel bombs, uploads over
the 16 MiB limit, JSON with strings for pixels), while ``--slow-clients``
raw connections each declare a 1000-byte upload and send it at 1 byte/s,
reconnecting when let go. Printed: the count of 5xx answers (must be 0), the
junk answered 4xx by kind, the valid requests' p50/p99 beside the clean run's,
and how each slow connection ended (408 or closed by the server, and after how
long, against the server's ``--read-timeout``; none may stay held).

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
from mnistlab.testing import make_photo, make_pixel_bomb
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


def start_server(model_dir: Path, port: int, read_timeout: float) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--model", str(model_dir), "--port", str(port)]
    cmd += ["--read-timeout", str(read_timeout)]
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


def junk_requests(photos: list[tuple[str, bytes, int]]) -> dict[str, dict]:
    """One request of each kind of junk, as httpx ``post`` keyword arguments, by name."""
    photo = photos[0][1]
    return {
        "text file": {"files": {"file": ("notes.txt", b"not an image at all\n" * 50, "text/plain")}},
        "truncated photo": {"files": {"file": ("cut.jpg", photo[: len(photo) // 2], "image/jpeg")}},
        "empty file": {"files": {"file": ("empty.png", b"", "image/png")}},
        "pixel bomb": {"files": {"file": ("bomb.png", make_pixel_bomb(100_000, 100_000), "image/png")}},
        "over 16 MiB": {"files": {"file": ("huge.png", b"\0" * (17 * 2**20), "image/png")}},
        "strings for pixels": {"json": {"pixels": ["12"] * 784}},
    }


async def slow_client(host: str, port: int, stop: asyncio.Event, ends: list[tuple[str, float]], patience: float):
    """Declare a 1000-byte upload and send it at 1 byte/s; record how each connection ends, then reconnect.

    An end is ("408", seconds) or ("closed", seconds) when the server let go, or ("held", seconds) when it
    still held the connection after ``patience`` seconds (a failure).
    """
    head = (  # JSON: the server waits for all of it before parsing any
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    while not stop.is_set():
        reader, writer = await asyncio.open_connection(host, port)
        t = time.perf_counter()
        writer.write(head)
        end = "held"
        while time.perf_counter() - t < patience:
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=1.0)
                end = "408" if data.startswith(b"HTTP/1.1 408") else "closed" if not data else data[:12].decode()
                break
            except TimeoutError:
                try:
                    writer.write(b" ")
                    await writer.drain()
                except ConnectionError:
                    end = "closed"
                    break
        ends.append((end, time.perf_counter() - t))
        writer.close()


async def fault_run(url: str, photos: list[tuple[str, bytes, int]], args) -> dict:
    """Valid photos and junk from ``args.clients`` clients, beside ``args.slow_clients`` 1-byte/s uploads."""
    junk = junk_requests(photos)
    kinds = list(junk)
    rng = np.random.default_rng(1)
    junk_at = np.flatnonzero(rng.random(args.requests) < args.junk_share)
    plan: list[str | None] = [None] * args.requests
    for n, i in enumerate(junk_at):
        plan[i] = kinds[n % len(kinds)]
    latencies: list[float] = []
    statuses: dict[str, list[int]] = {k: [] for k in ["valid", *kinds]}
    errors: list[str] = []
    right = 0
    next_index = 0
    host, port = url.removeprefix("http://").split(":")
    stop, ends = asyncio.Event(), []
    patience = 3 * args.read_timeout + 5
    slow = [asyncio.create_task(slow_client(host, int(port), stop, ends, patience)) for _ in range(args.slow_clients)]
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker():
            nonlocal next_index, right
            while next_index < args.requests:
                i = next_index
                next_index += 1
                kind = plan[i]
                name, data, label = photos[i % len(photos)]
                kwargs = junk[kind] if kind else {"files": {"file": (name, data)}}
                t = time.perf_counter()
                try:
                    r = await client.post("/api/predict", **kwargs)
                except httpx.HTTPError as exc:
                    errors.append(f"{kind or 'valid'}: {exc!r}")
                    continue
                statuses[kind or "valid"].append(r.status_code)
                if kind is None and r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                    right += r.json()["digit"] == label

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.clients)))
        wall = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*slow)  # each finishes the connection it has open: released, or held past patience
    q = np.quantile(latencies, [0.5, 0.99]) if latencies else [float("nan")] * 2
    n_valid = sum(k is None for k in plan)
    return {
        "wall": wall,
        "p50": q[0],
        "p99": q[1],
        "statuses": statuses,
        "errors": errors,
        "ends": ends,
        "accuracy": right / max(1, n_valid),
    }


def report_faults(faults: dict, clean: list[dict], args) -> None:
    statuses = faults["statuses"]
    every = [s for codes in statuses.values() for s in codes]
    print(
        f"\nload with faults: {args.requests} requests, {args.clients} clients, {args.junk_share:.0%} junk, "
        f"{args.slow_clients} clients at 1 byte/s ({faults['wall']:.1f} s)"
    )
    print(f"  5xx answers: {sum(s >= 500 for s in every)} (must be 0); transport errors: {len(faults['errors'])}")
    for e in faults["errors"][:5]:
        print(f"    error: {e}")
    for kind, codes in statuses.items():
        if kind != "valid":
            counts = ", ".join(f"{code}: {codes.count(code)}" for code in sorted(set(codes)))
            print(f"  junk {kind:>18}: {sum(400 <= c < 500 for c in codes)} of {len(codes)} answered 4xx ({counts})")
    valid = statuses["valid"]
    print(f"  valid photos: {valid.count(200)} of {len(valid)} answered 200, accuracy {faults['accuracy']:.3f}")
    p50 = statistics.mean(r["p50"] for r in clean) * 1000
    p99 = statistics.mean(r["p99"] for r in clean) * 1000
    print(
        f"  valid p50 {faults['p50'] * 1000:.0f} ms (clean {p50:.0f} ms), p99 {faults['p99'] * 1000:.0f} ms "
        f"(clean {p99:.0f} ms)"
    )
    ends = faults["ends"]
    released = [t for end, t in ends if end != "held"]
    how = ", ".join(f"{end}: {sum(e == end for e, _ in ends)}" for end in sorted({e for e, _ in ends}))
    print(
        f"  slow connections: {len(ends)} ({how}); released by the timeouts: {len(released)} of {len(ends)}"
        + (
            f", after {min(released):.1f}-{max(released):.1f} s (read timeout {args.read_timeout:g} s)"
            if released
            else ""
        )
    )
    print(f"  server memory after: RSS {mib(faults['memory']['VmRSS'])}, peak {mib(faults['memory']['VmHWM'])}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--photos", type=int, default=200, help="distinct photos, cycled through")
    ap.add_argument("--faults", action="store_true", help="then a load-with-faults run (module docstring)")
    ap.add_argument("--junk-share", type=float, default=0.3, help="share of junk requests in the faults run")
    ap.add_argument("--slow-clients", type=int, default=5, help="connections sending 1 byte/s in the faults run")
    ap.add_argument("--read-timeout", type=float, default=10.0, help="the server's --read-timeout")
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
        server = start_server(Path(model_dir), port, args.read_timeout)
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
            if args.faults:
                faults = asyncio.run(fault_run(f"http://127.0.0.1:{port}", photos, args))
                faults["memory"] = memory(server.pid)
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
    if args.faults:
        report_faults(faults, runs, args)


if __name__ == "__main__":
    main()
