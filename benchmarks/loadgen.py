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

__all__ = ["multipart_request", "json_request", "run_load"]


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


async def run_load(
    host: str, port: int, requests: list[tuple[bytes, int | None]], n_requests: int, n_clients: int
) -> dict:
    """``n_requests`` of ``requests`` (cycled; each with the digit it shows, or None) from ``n_clients``
    keep-alive connections at once. Returns requests/s, p50, p99 (s), errors, accuracy."""
    latencies: list[float] = []
    errors: list[str] = []
    right = 0
    next_index = 0

    async def client() -> None:
        nonlocal next_index, right
        conn = None
        while next_index < n_requests:
            i = next_index
            next_index += 1
            data, label = requests[i % len(requests)]
            t = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                conn[1].write(data)
                status, body, close = await _answer(conn[0])
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(repr(exc))
                conn = None
                continue
            if status != 200:
                errors.append(f"{status} {body[:100]!r}")
            else:
                latencies.append(time.perf_counter() - t)
                if label is not None:
                    right += json.loads(body)["digit"] == label
            if close:
                conn[1].close()
                conn = None
        if conn is not None:
            conn[1].close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(n_clients)))
    return outcome(latencies, time.perf_counter() - t0, n_requests, errors, right)


def outcome(latencies: list[float], wall: float, n_requests: int, errors, right: int) -> dict:
    """One trial's figures: wall time, requests/s, p50 and p99 latency, errors, accuracy of the answers."""
    q = np.quantile(latencies, [0.5, 0.99]) if latencies else [float("nan")] * 2
    return {
        "wall": wall,
        "rps": n_requests / wall,
        "p50": q[0],
        "p99": q[1],
        "errors": errors,
        "accuracy": right / n_requests,
    }
