"""A lean HTTP/1.1 load generator: raw keep-alive connections sending prebuilt requests.

httpx costs the client about a millisecond of CPU per request, which on a
2-core machine shared with the server caps what can be measured well below
the targets; this client only writes prebuilt bytes and parses a response's
status line and Content-Length (tens of microseconds a request).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import numpy as np

__all__ = ["multipart_request", "json_request", "run_load", "run_plan", "outcome"]


def multipart_request(path: str, name: str, data: bytes, content_type: str) -> bytes:
    """A complete POST of ``data`` as the multipart field ``file``."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def json_request(path: str, payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, connection closes) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(lines[0].split()[1]), body, headers.get("connection", "").lower() == "close"


async def run_plan(host: str, port: int, plan: list[tuple[bytes, int | None, str]], n_clients: int) -> dict:
    """Send every request of ``plan`` (bytes, the digit it shows or None, its kind) from ``n_clients``
    keep-alive connections at once, in plan order as clients free up.

    Returns ``wall`` (s), and per kind the ``statuses`` answered and the ``latencies`` (s) of its 200s;
    ``errors`` (transport failures, and answers other than 200 to a request of kind ``valid``),
    ``judged`` (200 answers to a request showing a digit) and ``right`` (those naming it). A response
    that says ``connection: close`` (or a transport failure) makes the client open a new connection for
    its next request.
    """
    statuses: dict[str, list[int]] = {kind: [] for _, _, kind in plan}
    latencies: dict[str, list[float]] = {kind: [] for _, _, kind in plan}
    errors: list[str] = []
    right = judged = 0
    next_index = 0

    async def client() -> None:
        nonlocal next_index, right, judged
        conn = None
        while next_index < len(plan):
            data, label, kind = plan[next_index]
            next_index += 1
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                conn[1].write(data)
                status, body, close = await _answer(conn[0])
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(f"{kind}: {exc!r}")
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            statuses[kind].append(status)
            if status == 200:
                latencies[kind].append(time.perf_counter() - t)
                if label is not None:
                    judged += 1
                    right += json.loads(body)["digit"] == label
            elif kind == "valid":
                errors.append(f"{status} {body[:100]!r}")
            if close:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(n_clients)))
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "statuses": statuses,
        "latencies": latencies,
        "errors": errors,
        "right": right,
        "judged": judged,
    }


async def run_load(
    host: str, port: int, requests: list[tuple[bytes, int | None]], n_requests: int, n_clients: int
) -> dict:
    """``n_requests`` of ``requests`` (cycled; each with the digit it shows, or None) from ``n_clients``
    keep-alive connections at once. Returns requests/s, p50, p99 (s), errors, accuracy."""
    plan = [(*requests[i % len(requests)], "valid") for i in range(n_requests)]
    done = await run_plan(host, port, plan, n_clients)
    return outcome(done["latencies"]["valid"], done["wall"], n_requests, done["errors"], done["right"], done["judged"])


def outcome(latencies: list[float], wall: float, n_requests: int, errors, right: int, judged: int) -> dict:
    """One trial's figures: wall time, requests/s, p50 and p99 latency, errors, accuracy of the answers (``right``
    of the ``judged`` 200 answers to a request showing a digit: an error is counted once, among the errors)."""
    q = np.quantile(latencies, [0.5, 0.99]) if latencies else [float("nan")] * 2
    return {
        "wall": wall,
        "rps": n_requests / wall,
        "p50": q[0],
        "p99": q[1],
        "errors": errors,
        "accuracy": right / judged if judged else float("nan"),
    }
