"""`mnistlab serve` under load: 50 concurrent clients posting photos of digits, then the same with faults.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_serve.py \
        [--model DIR | --shipped] [--payload photos|canvas|page|json] [--workers 1] \
        [--requests 1000] [--clients 50] [--trials 3] [--growth 20000] \
        [--faults] [--junk-share 0.3] [--slow-clients 5] [--read-timeout 10]

``--payload``: photo-like JPEG/PNG digits (about 13-16 KiB), 280 px canvas
drawings (grey PNG), what the web page sends (its 140 px canvas exported as an
opaque RGBA PNG, white ink on black), or JSON with 784 pixels. The clients send prebuilt requests
on keep-alive sockets (``loadgen``), cheap enough not to starve a server
sharing the machine (httpx costs about a CPU-millisecond a request). Printed
also: seconds from start to ``/api/ready``, the server's memory (all its
worker processes) when ready, and its growth over ``--growth`` more requests.

A real server runs in a subprocess on 127.0.0.1 (``python -m mnistlab.cli
serve``); the clients run in this process, each posting its inputs to
/api/predict until the fixed count of requests is spent. Printed per trial:
requests/s, p50 and p99 latency, errors (must be 0), accuracy of the answers;
and the server's resident memory (VmRSS, and peak VmHWM, from /proc/PID/status)
before the first and after the last trial. The reference is the same
``predict_image`` called in-process with no HTTP, one photo at a time and in
as many threads as the server runs inferences at once.

With --faults, a load-with-faults run follows the clean trials, on the same
server and with the same clients: they mix valid photos with junk (``--junk-share`` of the
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
import io
import json
import os
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
from PIL import Image

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one, share
from loadgen import json_request, multipart_request, run_load, run_plan
from mnistlab import ModelFileError, load_mnist
from mnistlab.models.files import find_best_model, load_model, save_model
from mnistlab.models.recipes import get_recipe
from mnistlab.testing import make_photo, make_pixel_bomb
from mnistlab.trust.predict import predict_array, predict_image


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def tree_memory(pid: int) -> dict[str, int]:
    """``memory`` summed over ``pid`` and its children (the workers of ``serve --workers N``), and their
    proportional set size (Pss: shared pages counted once in all, where RSS counts them in every process)."""
    pids = [pid, *children(pid)]
    out = {key: sum(memory(p)[key] for p in pids) for key in ("VmRSS", "VmHWM")}
    out["Pss"] = sum(pss(p) for p in pids)
    return out


def pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in [pid, *children(pid)])


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


def start_server(
    model_dir: Path | None, port: int, read_timeout: float, workers: int = 1
) -> tuple[subprocess.Popen, float]:
    """The server, and the seconds from its start until every worker answers ``/api/ready`` with 200."""
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--read-timeout", str(read_timeout)] + (["--model", str(model_dir)] if model_dir else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    ready: set[int] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=1)
            if r.status_code == 200:
                ready.add(r.json()["worker"])
                if len(ready) >= workers:
                    return proc, time.perf_counter() - t0
                continue
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    proc.kill()
    raise SystemExit("server did not start in 120 s")


def junk_requests(photos: list[tuple[str, bytes, int]]) -> dict[str, bytes]:
    """One complete raw request of each kind of junk, by name."""
    photo = photos[0][1]
    upload = lambda name, data, kind: multipart_request("/api/predict", name, data, kind)  # noqa: E731
    return {
        "text file": upload("notes.txt", b"not an image at all\n" * 50, "text/plain"),
        "truncated photo": upload("cut.jpg", photo[: len(photo) // 2], "image/jpeg"),
        "empty file": upload("empty.png", b"", "image/png"),
        "pixel bomb": upload("bomb.png", make_pixel_bomb(100_000, 100_000), "image/png"),
        "over 16 MiB": upload("huge.png", b"\0" * (17 * 2**20), "image/png"),
        "strings for pixels": json_request("/api/predict", {"pixels": ["12"] * 784}),
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


async def fault_run(port: int, photos: list[tuple[str, bytes, int]], args) -> dict:
    """Valid photos and junk from ``args.clients`` raw clients (as in the clean run), beside
    ``args.slow_clients`` 1-byte/s uploads."""
    junk = junk_requests(photos)
    kinds = list(junk)
    rng = np.random.default_rng(1)
    junk_at = set(np.flatnonzero(rng.random(args.requests) < args.junk_share).tolist())
    plan: list[tuple[bytes, int | None, str]] = []
    n_junk = 0
    for i in range(args.requests):
        if i in junk_at:  # the kinds of junk in turn
            kind = kinds[n_junk % len(kinds)]
            n_junk += 1
            plan.append((junk[kind], None, kind))
        else:
            name, data, label = photos[i % len(photos)]
            plan.append((as_request(name, data), label, "valid"))
    stop, ends = asyncio.Event(), []
    patience = 3 * args.read_timeout + 5
    slow = [asyncio.create_task(slow_client("127.0.0.1", port, stop, ends, patience)) for _ in range(args.slow_clients)]
    done = await run_plan("127.0.0.1", port, plan, args.clients)
    stop.set()
    await asyncio.gather(*slow)  # each finishes the connection it has open: released, or held past patience
    latencies = done["latencies"]["valid"]
    q = np.quantile(latencies, [0.5, 0.99]) if latencies else [float("nan")] * 2
    return {
        "wall": done["wall"],
        "p50": q[0],
        "p99": q[1],
        "statuses": done["statuses"],
        "errors": done["errors"],
        "ends": ends,
        "accuracy": done["right"] / done["judged"] if done["judged"] else float("nan"),
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


def make_inputs(kind: str, n: int) -> list[tuple[str, bytes, int]]:
    """``n`` test digits as (name, bytes, label): photos, 280 px canvas PNGs, the page's 140 px RGBA PNGs, or JSON
    bodies of 784 pixels."""
    b = load_mnist("mnist")
    test = b.details["n_train"]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        digit, label = b.images[test + i], int(b.target[test + i])
        if kind == "photos":
            data = make_photo(digit, rng)
            suffix = "jpg" if data[:2] == b"\xff\xd8" else "png"
            out.append((f"photo{i}.{suffix}", data, label))
        elif kind in ("canvas", "page"):
            if kind == "canvas":  # dark ink on white, grey
                big = Image.fromarray(255 - digit).resize((280, 280), Image.BILINEAR)
            else:  # as a browser exports the page's canvas: white ink on black, RGBA
                big = Image.fromarray(digit).resize((140, 140), Image.BILINEAR).convert("RGBA")
            buf = io.BytesIO()
            big.save(buf, format="PNG")
            out.append((f"{kind}{i}.png", buf.getvalue(), label))
        else:
            out.append((f"pixels{i}.json", json.dumps({"pixels": digit.ravel().tolist()}).encode(), label))
    return out


def as_request(name: str, data: bytes) -> bytes:
    if name.endswith(".json"):
        return json_request("/api/predict", json.loads(data))
    return multipart_request("/api/predict", name, data, "image/jpeg" if name.endswith("jpg") else "image/png")


def in_process(model, inputs) -> None:
    """The reference: the same answers in this process, no HTTP, one at a time and in threads."""
    ask = lambda p: (  # noqa: E731
        predict_array(json.loads(p[1])["pixels"], model) if p[0].endswith(".json") else predict_image(p[1], model)
    )
    ask(inputs[0])  # loads (and calibrates) the model once
    lanes = max(2, os.cpu_count() or 2)
    for label, workers in (("sequential", 1), (f"{lanes} threads", lanes)):
        with ThreadPoolExecutor(workers) as pool:
            t, cpu = time.perf_counter(), time.process_time()
            answers = list(pool.map(lambda p: ask(p)["digit"] == p[2], inputs))
            rate = len(inputs) / (time.perf_counter() - t)
            per = (time.process_time() - cpu) / len(inputs)
        print(
            f"in-process, {label:>10}: {rate:7.1f} inputs/s, {per * 1000:5.2f} CPU-ms each, "
            f"accuracy {np.mean(answers):.3f}"
        )


def load_trials(url: str, port: int, server: subprocess.Popen, inputs, args) -> list[dict]:
    requests = [(as_request(n, d), label) for n, d, label in inputs]
    runs = []
    for trial in range(args.trials):
        cpu = tree_cpu(server.pid)
        r = asyncio.run(run_load("127.0.0.1", port, requests, args.requests, args.clients))
        r["cpu"] = (tree_cpu(server.pid) - cpu) / args.requests
        runs.append(r)
        print(
            f"  trial {trial + 1}: {r['rps']:7.1f} req/s  p50 {r['p50'] * 1000:6.1f} ms  "
            f"p99 {r['p99'] * 1000:6.1f} ms  errors {len(r['errors'])}  accuracy {r['accuracy']:.3f}  "
            f"server {r['cpu'] * 1000:.2f} CPU-ms/request  ({r['wall']:.1f} s)"
        )
        for e in r["errors"][:5]:
            print(f"    error: {e}")
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--shipped", action="store_true", help="serve the reader shipped with mnistlab")
    ap.add_argument("--payload", choices=["photos", "canvas", "page", "json"], default="photos")
    ap.add_argument("--workers", type=at_least_one, default=1, help="the server's --workers")
    ap.add_argument("--requests", type=at_least_one, default=1000)
    ap.add_argument("--clients", type=at_least_one, default=50)
    ap.add_argument("--trials", type=at_least_one, default=3)
    ap.add_argument("--growth", type=int, default=0, help="then this many more requests: memory growth")
    ap.add_argument("--photos", type=at_least_one, default=200, help="distinct inputs, cycled through")
    ap.add_argument("--faults", action="store_true", help="then a load-with-faults run (module docstring)")
    ap.add_argument("--junk-share", type=share, default=0.3, help="share of junk requests in the faults run")
    ap.add_argument("--slow-clients", type=int, default=5, help="connections sending 1 byte/s in the faults run")
    ap.add_argument("--read-timeout", type=float, default=10.0, help="the server's --read-timeout")
    args = ap.parse_args()

    print(f"machine: {machine.describe()}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = None if args.shipped else args.model or find_best_model() or quick_model(Path(tmp) / "knn")
        try:
            model = load_model(model_dir)[0] if model_dir else None
        except ModelFileError as exc:  # mnistlab's one sentence, as `mnistlab serve --model` says it
            ap.error(f"argument --model: {exc}")
        print(f"model: {model_dir or 'the shipped reader'}")
        inputs = make_inputs(args.payload, args.photos)
        sizes = [len(d) for _, d, _ in inputs]
        print(f"{args.payload}: {len(inputs)} distinct, {np.mean(sizes) / 1024:.1f} KiB mean")
        in_process(model, inputs)

        port = free_port()
        server, ready_s = start_server(model_dir, port, args.read_timeout, args.workers)
        url = f"http://127.0.0.1:{port}"
        try:
            before = tree_memory(server.pid)
            print(
                f"server pid {server.pid}, {args.workers} worker(s): ready in {ready_s:.2f} s; "
                f"RSS {mib(before['VmRSS'])} when ready (all processes; Pss {mib(before['Pss'])})"
            )
            print(f"{args.trials} trials x {args.requests} requests, {args.clients} concurrent clients")
            runs = load_trials(url, port, server, inputs, args)
            after = tree_memory(server.pid)
            if args.growth:
                requests = [(as_request(n, d), label) for n, d, label in inputs]
                asyncio.run(run_load("127.0.0.1", port, requests, args.growth, args.clients))
                grown = tree_memory(server.pid)
                print(
                    f"memory growth over {args.growth} more requests: RSS {mib(after['VmRSS'])} -> "
                    f"{mib(grown['VmRSS'])} ({(grown['VmRSS'] - after['VmRSS']) / 1024:+.1f} MiB)"
                )
            if args.faults:
                faults = asyncio.run(fault_run(port, inputs, args))
                faults["memory"] = tree_memory(server.pid)
        finally:
            server.terminate()
            server.wait(60)

    summarise(runs, before, after)
    if args.faults:
        report_faults(faults, runs, args)


def summarise(runs: list[dict], before: dict, after: dict) -> None:
    rps = [r["rps"] for r in runs]
    p50 = [r["p50"] * 1000 for r in runs]
    p99 = [r["p99"] * 1000 for r in runs]
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    print(
        f"requests/s: {statistics.mean(rps):.1f} ± {spread(rps):.1f}   "
        f"p50 {statistics.mean(p50):.1f} ± {spread(p50):.1f} ms   p99 {statistics.mean(p99):.1f} ± {spread(p99):.1f} ms"
    )
    print(f"server CPU per request: {statistics.mean(r['cpu'] for r in runs) * 1000:.2f} ms")
    print(f"errors: {sum(len(r['errors']) for r in runs)} in {len(runs)} trials")
    print(
        f"server memory: RSS {mib(before['VmRSS'])} when ready, {mib(after['VmRSS'])} after the trials; "
        f"peak {mib(after['VmHWM'])} (sum of the processes' peaks)"
    )


if __name__ == "__main__":
    main()
