"""Connections with limits, against ``mnistlab serve`` in a subprocess on 127.0.0.1, spoken to over raw sockets.

Stalled and lying uploads, an oversize declared length, a client leaving
mid-body, malformed HTTP and the connection cap. Every wait is bounded by a
socket timeout well above the server's read timeout (1 s here), so a server
that never lets go fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from mnistlab.testing import running_server
from mnistlab.web.protocol import MAX_HEAD_BYTES, ConnectionLimits, protocol_for

READ_TIMEOUT = 1.0
PATIENCE = 20.0  # seconds a test waits for an answer: far above READ_TIMEOUT, far below "forever"
SECURITY = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy", "cache-control")
TOO_LONG = f"The request head is over {MAX_HEAD_BYTES // 1024} KiB (a URL or headers that long); send a shorter one."


@dataclass
class Server:
    url: str
    port: int
    log: list[str] = field(default_factory=list)  # the server's stderr, line by line, as it comes

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=PATIENCE)

    def wait_for_log(self, text: str) -> list[str]:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if found := [line for line in self.log if text in line]:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared in the server's log:\n" + "".join(self.log))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        assert self.headers["content-type"] == "application/json", self.headers
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 response from ``sock`` (Content-Length framed), within the socket's timeout.

    It reads no byte past that response: a pipelined answer right behind it stays in the socket for the next call.
    """
    data = b""
    while not data.endswith(b"\r\n\r\n"):  # byte by byte: a head is a few hundred bytes
        chunk = sock.recv(1)
        assert chunk, f"connection closed before a full response head: {data!r}"
        data += chunk
    status_line, *lines = data[:-4].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = b""
    while len(body) < (length := int(headers.get("content-length", 0))):
        chunk = sock.recv(length - len(body))
        assert chunk, "connection closed mid-body"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (reading what is left until EOF)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def head(method: str, path: str, **headers: str) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.fixture(scope="module")
def server(web_model_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--model", str(web_model_dir), "--port", str(port)]
    cmd += ["--read-timeout", str(READ_TIMEOUT)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    served = Server(f"http://127.0.0.1:{port}", port)
    reader = threading.Thread(target=lambda: served.log.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "".join(served.log)
            try:
                httpx.get(f"{served.url}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mnistlab serve did not answer within 120 s"
                time.sleep(0.2)
        yield served
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
    assert "Traceback" not in "".join(served.log), "".join(served.log)


def test_a_lying_upload_is_answered_408_and_closed(server):
    with server.connect() as sock:  # declares 1000 bytes, sends 10, then waits
        sock.sendall(
            head("POST", "/api/predict", content_type="application/json", content_length="1000") + b"0123456789"
        )
        answer = read_answer(sock)
        assert answer.status == 408
        assert "did not arrive" in answer.json()["detail"]
        assert all(name in answer.headers for name in SECURITY)
        assert closed_by_server(sock)
    assert server.wait_for_log("body stalled after 10 bytes")


def test_a_stalled_request_head_is_answered_408(server):
    with server.connect() as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        answer = read_answer(sock)
        assert answer.status == 408 and answer.json()["detail"].endswith(".")
        assert closed_by_server(sock)


def test_the_protocols_own_refusals_carry_cache_control_as_every_answer_does(server):
    """The 400, 408 and 431 the protocol writes itself carried the security headers but no Cache-Control, which the
    README promises on every response, errors included."""
    for request_bytes in (b"GARBAGE\r\n\r\n", b"GET /api/health?x=" + b"a" * 30_000, b"GET /api/health HTTP/1.1\r\n"):
        with server.connect() as sock:
            sock.sendall(request_bytes)
            answer = read_answer(sock)
            assert answer.status in (400, 408, 431), answer
            assert answer.headers.get("cache-control") == "no-cache", answer.headers


def test_a_connection_that_sends_nothing_is_closed(server):
    with server.connect() as sock:
        assert sock.recv(100) == b""  # closed quietly within PATIENCE (the socket's timeout would raise)


def test_a_body_trickling_in_is_let_go(server):
    """One byte every 0.2 s never pauses long enough for the pause limit, but is far below the minimum rate."""
    with server.connect() as sock:
        sock.sendall(head("POST", "/api/predict", content_type="application/json", content_length="60000"))
        sock.settimeout(0.2)
        for _ in range(100):
            sock.sendall(b" ")
            try:
                answer = read_answer(sock)
                break
            except TimeoutError:
                continue
        else:
            pytest.fail("the server still took bytes after 100 of them at 5 bytes/s")
        assert answer.status == 408
        sock.settimeout(PATIENCE)
        assert closed_by_server(sock)


def test_a_declared_oversize_body_is_refused_before_it_is_sent(server):
    with server.connect() as sock:  # the head only: a server waiting for the body would answer 408, not 413
        sock.sendall(
            head("POST", "/api/predict", content_type="multipart/form-data; boundary=x", content_length=str(17 * 2**20))
        )
        answer = read_answer(sock)
        assert answer.status == 413
        assert "16 MiB" in answer.json()["detail"]
        assert all(name in answer.headers for name in SECURITY)
        assert closed_by_server(sock)  # the rest of the body never came: let go after the read timeout


def test_a_client_leaving_mid_upload_is_one_log_line(server):
    form_start = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'
    sock = server.connect()
    sock.sendall(head("POST", "/api/predict", content_type="multipart/form-data; boundary=x", content_length="5000"))
    sock.sendall(form_start)
    time.sleep(0.3)  # let the application start reading the form
    port = sock.getsockname()[1]
    sock.close()
    lines = server.wait_for_log(f"127.0.0.1:{port} ")
    assert len(lines) == 1 and "went away after" in lines[0] and "of 5000 body bytes" in lines[0], lines
    time.sleep(0.3)  # anything the application would log about it comes right after
    assert "Traceback" not in "".join(server.log) and "Exception in ASGI" not in "".join(server.log)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST /api/predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",  # in the body
    ],
)
def test_malformed_http_gets_the_json_error_shape(server, request_bytes):
    with server.connect() as sock:
        sock.sendall(request_bytes)
        answer = read_answer(sock)
        assert answer.status == 400
        assert "not valid HTTP" in answer.json()["detail"]
        assert all(name in answer.headers for name in SECURITY)


@pytest.mark.parametrize("codings", [["gzip, chunked"], ["identity"], ["chunked", "chunked"]])
def test_a_transfer_coding_other_than_chunked_is_said_to_be_one(server, codings):
    """A body sent with a Transfer-Encoding the server does not read (gzip, identity, or chunked twice) was told
    "The request is not valid HTTP/1.1": it is valid HTTP, in a coding this server does not take. The 400 says so,
    and what to send instead."""
    lines = "".join(f"Transfer-Encoding: {coding}\r\n" for coding in codings)
    with server.connect() as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n{lines}\r\n".encode())
        answer = read_answer(sock)
        assert answer.status == 400
        detail = answer.json()["detail"]
        assert "Transfer-Encoding" in detail and "Content-Length" in detail and "not valid HTTP" not in detail, detail
        assert all(name in answer.headers for name in SECURITY)


@pytest.mark.parametrize(
    ("content_type", "length", "status"),
    [("text/plain", "1000", 415), ("multipart/form-data; boundary=x", str(17 * 2**20), 413)],
)
def test_an_answer_before_a_body_that_was_to_wait_for_100_continue_closes(server, content_type, length, status):
    """A client that sends "Expect: 100-continue" waits for the 100 before its body, and need not send the body at
    all once the answer is final (RFC 9110, 10.1.1). Refused before its body was asked for, the connection stayed
    open with the server waiting for that body: the client's next request on it was read as body bytes, and after
    the read timeout the client got nothing for it. Such an answer now closes the connection (Connection: close)."""
    with server.connect() as sock:
        sock.sendall(
            head("POST", "/api/predict", content_type=content_type, content_length=length, expect="100-continue")
        )
        answer = read_answer(sock)
        assert answer.status == status and answer.headers.get("connection") == "close", answer
        sock.settimeout(READ_TIMEOUT / 2)  # closed at once, not after the read timeout
        assert closed_by_server(sock)
    with server.connect() as sock:  # a body sent after its 100 Continue: the answer keeps the connection
        body = b'{"pixels": [' + b"0, " * 783 + b"0]}"
        sock.sendall(
            head(
                "POST",
                "/api/predict",
                content_type="application/json",
                content_length=str(len(body)),
                expect="100-continue",
            )
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        answer = read_answer(sock)
        assert answer.status == 200 and answer.headers.get("connection") != "close", answer
        sock.sendall(head("GET", "/api/health"))
        assert read_answer(sock).status == 200


def test_a_websocket_upgrade_is_served_as_the_plain_request_it_also_is(server):
    """No WebSocket routes: uvicorn's own plain-text 403 without the API's headers is not given."""
    with server.connect() as sock:
        sock.sendall(
            head(
                "GET",
                "/api/health",
                connection="Upgrade",
                upgrade="websocket",
                sec_websocket_version="13",
                sec_websocket_key="dGhlIHNhbXBsZSBub25jZQ==",
            )
        )
        answer = read_answer(sock)
        assert answer.status == 200 and answer.json()["status"] == "ok"
        assert all(name in answer.headers for name in SECURITY)


@pytest.mark.parametrize(
    "upgrade",
    [
        {"connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c", "http2_settings": "AAMAAABkAARAAAAAAAIAAAAA"},
        {"connection": "Upgrade", "upgrade": "websocket", "sec_websocket_version": "13", "sec_websocket_key": "a2V5"},
    ],
)
def test_an_upgrade_request_logs_no_advice_to_install_a_websocket_library(server, upgrade):
    """Every request asking to upgrade (``curl --http2`` asks for h2c on each one) logged two warnings, one telling
    the operator to install a WebSocket library: misleading (the app has no WebSocket routes; ws="none" serves such a
    request as the plain one it also is) and a log line a client could repeat at will. It logs nothing now."""
    with server.connect() as sock:
        sock.sendall(head("GET", "/api/health", **upgrade))
        answer = read_answer(sock)
        assert answer.status == 200 and answer.json()["status"] == "ok"
    with server.connect() as sock:  # a request after it: its log lines, if any, are written by now
        sock.sendall(head("GET", "/api/health"))
        assert read_answer(sock).status == 200
    log = "".join(server.log)
    assert "WebSocket library" not in log and "Unsupported upgrade" not in log, log


def test_a_request_target_in_absolute_form_is_served(server):
    """HTTP/1.1 servers must accept a target in absolute form (``GET http://host/api/health``, as a proxy sends
    it; RFC 9112, 3.2.2): uvicorn's h11 protocol took all of it for the path, and the answer was 404 "There is
    nothing at /http://host/api/health". It is served as the path it names now."""
    for target, status in (
        ("http://127.0.0.1/api/health", 200),
        ("HTTPS://example.org:8443/api/ready?x=1", 200),
        ("http://127.0.0.1", 200),  # no path: the page
        ("http://127.0.0.1/no/such/page", 404),
    ):
        with server.connect() as sock:
            sock.sendall(head("GET", target))
            answer = read_answer(sock)
            assert answer.status == status, (target, answer.body)
            if status == 404:
                assert "There is nothing at /no/such/page;" in answer.json()["detail"]
    with server.connect() as sock:
        sock.sendall(head("POST", "http://127.0.0.1/api/predict", content_type="application/json", content_length="2"))
        sock.sendall(b"{}")
        answer = read_answer(sock)
        assert answer.status == 422 and "pixels" in answer.json()["detail"]


def test_a_broken_form_is_answered_without_bare_lines_in_the_log(server):
    """A multipart form whose boundaries do not match its Content-Type was answered 400, and python-multipart's own
    warnings ("Expected boundary character 97, got 88 at index 4", "Did not find CR at end of boundary (2)") went
    to the server's stderr as bare lines, with no level, time or request: lines any client could add at will,
    and which read like the server's own trouble. The 400 says it all; nothing else is written."""
    before = len(server.log)
    for body in (b"--XyZ\r\nContent-Disposition: form-data; name=file\r\n\r\nx\r\n--XyZ--\r\n", b"--abcX\r\n"):
        with server.connect() as sock:
            sock.sendall(
                head(
                    "POST",
                    "/api/predict",
                    content_type="multipart/form-data; boundary=abc",
                    content_length=str(len(body)),
                )
                + body
            )
            answer = read_answer(sock)
            assert answer.status == 400 and "multipart form could not be read" in answer.json()["detail"]
    with server.connect() as sock:  # a request after them: their log lines, if any, are written by now
        sock.sendall(head("GET", "/api/health"))
        assert read_answer(sock).status == 200
    assert server.log[before:] == [], server.log[before:]


def _upload_request(image: bytes) -> bytes:
    form = httpx.Request("POST", "http://x/api/predict", files={"file": ("odd", image, "application/octet-stream")})
    body = form.read()
    return head("POST", "/api/predict", content_type=form.headers["content-type"], content_length=str(len(body))) + body


def test_pillows_warnings_about_an_upload_stay_out_of_the_log(server):
    """The upload's header check opened it with Pillow's warnings on: a JPEG whose EXIF is cut short ("Corrupt EXIF
    data. Expecting to read 2 bytes but only got 0."), a PNG with a broken animation chunk ("Invalid APNG"), each
    put two lines in the server's log (Pillow's file and line, then its source), again on each upload. The answer
    is the client's; the log gets nothing."""
    import io
    import struct
    import zlib

    import numpy as np
    from PIL import Image

    digit = np.full((60, 40), 255, np.uint8)
    digit[10:50, 15:25] = 0
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(digit).save(jpeg, format="JPEG")
    Image.fromarray(digit).save(png, format="PNG")
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08"  # an IFD at 8 that is not there
    cut_exif = jpeg.getvalue()[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpeg.getvalue()[2:]
    actl = b"\x00" * 8  # no frames
    chunk = struct.pack(">I", len(actl)) + b"acTL" + actl + struct.pack(">I", zlib.crc32(b"acTL" + actl))
    bad_apng = png.getvalue()[:33] + chunk + png.getvalue()[33:]
    before = len(server.log)
    for image in (cut_exif, bad_apng, cut_exif):
        with server.connect() as sock:
            sock.sendall(_upload_request(image))
            assert read_answer(sock).status in (200, 422)
    with server.connect() as sock:  # a request after them: their log lines, if any, are written by now
        sock.sendall(head("GET", "/api/health"))
        assert read_answer(sock).status == 200
    assert server.log[before:] == [], "".join(server.log[before:])


def test_a_request_head_too_long_is_431_not_malformed(server):
    """h11 holds at most 16 KiB of a head not yet complete: past that it is too long, not malformed."""
    with server.connect() as sock:
        sock.sendall(b"GET /api/health?x=" + b"a" * 30_000)  # 30 KB of a request line, not yet ended
        answer = read_answer(sock)
        assert answer.status == 431 and "request head is over 16 KiB" in answer.json()["detail"]
        assert all(name in answer.headers for name in SECURITY)


def head_of(size: int, padded: str) -> bytes:
    """A GET /api/health head of exactly ``size`` bytes, its blank line included, padded in the URL, in one
    long header or in 3-byte headers ("a:b")."""
    if padded == "url":
        start, end = b"GET /api/health?pad=", b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        return start + b"a" * (size - len(start) - len(end)) + end
    start = head("GET", "/api/health")[:-2]  # its header lines, without the blank line that ends them
    if padded == "one header":
        return start + b"x-pad: " + b"a" * (size - len(start) - 11) + b"\r\n\r\n"
    lines, left = divmod(size - len(start) - 2, 5)  # "a:b\r\n" a line, and the rest in the first
    return start + b"a" * (left + 1) + b":b\r\n" + b"a:b\r\n" * (lines - 1) + b"\r\n"


@pytest.mark.parametrize("padded", ["url", "one header", "short headers"])
@pytest.mark.parametrize("pieces", [1, 17])
@pytest.mark.parametrize("size", [MAX_HEAD_BYTES, MAX_HEAD_BYTES + 1])
def test_a_request_head_over_the_limit_is_431_however_it_arrives(server, padded, pieces, size):
    """In one packet (read whole), or in 17 pieces of about 1 KB (every incomplete part within the limit, the
    last completes it): the limit is the head's size, not how much of it was waiting incomplete."""
    request = head_of(size, padded)
    assert len(request) == size
    step = -(-size // pieces)
    with server.connect() as sock:
        for start in range(0, size, step):
            sock.sendall(request[start : start + step])
            time.sleep(0.02 if pieces > 1 else 0)  # each piece read on its own
        answer = read_answer(sock)
        if size <= MAX_HEAD_BYTES:
            assert answer.status == 200 and answer.json()["status"] == "ok"
            return
        assert answer.status == 431 and answer.json()["detail"] == TOO_LONG
        assert all(name in answer.headers for name in SECURITY)
        assert closed_by_server(sock)


def test_a_head_over_the_limit_on_a_kept_alive_or_pipelined_connection_is_431(server):
    too_long = head_of(MAX_HEAD_BYTES + 1, "url")
    with server.connect() as sock:  # one request answered, the next one too long
        sock.sendall(head("GET", "/api/health"))
        assert read_answer(sock).status == 200
        sock.sendall(too_long)
        answer = read_answer(sock)
        assert answer.status == 431 and answer.json()["detail"] == TOO_LONG
        assert closed_by_server(sock)
    with server.connect() as sock:  # both in one packet: the second waits in the server's buffer
        sock.sendall(head("GET", "/api/health") + too_long)
        time.sleep(0.3)  # both answers are in the socket by now: read_answer must take them one at a time
        assert read_answer(sock).status == 200
        answer = read_answer(sock)
        assert answer.status == 431 and answer.json()["detail"] == TOO_LONG


def test_a_malformed_head_followed_by_a_long_body_is_400_not_431(server):
    with server.connect() as sock:
        bad = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\nContent-Length: 20000\r\n\r\n"
        sock.sendall(bad + b" " * 20_000)  # h11 had taken the head out of its buffer: 20 KB were left in it
        answer = read_answer(sock)
        assert answer.status == 400 and "not valid HTTP" in answer.json()["detail"]


def test_serve_refuses_a_bad_read_timeout(web_model_dir):
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--model", str(web_model_dir), "--read-timeout", "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_connections_over_the_cap_get_503_and_the_rest_go_on(web_model_dir):
    from mnistlab.web.app import create_app

    limits = ConnectionLimits(read_timeout=60, max_connections=3)
    with running_server(create_app(web_model_dir), http=protocol_for(limits)) as url:
        port = int(url.rsplit(":", 1)[1])
        # Three uploads under way: each holds a request, so a fourth request is one too many.
        held = [socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(head("POST", "/api/predict", content_type="application/json", content_length="100"))
                sock.sendall(b'{"pixels": [')
            time.sleep(0.3)  # the server has read those heads
            with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
                sock.sendall(head("GET", "/api/model"))
                answer = read_answer(sock)
                assert answer.status == 503
                assert "busy" in answer.json()["detail"] and answer.headers["retry-after"].isdigit()
                assert all(name in answer.headers for name in SECURITY)
                assert closed_by_server(sock)
            # The liveness answer is given over the cap too: a busy server is alive (a probe refused 503 would
            # have a Kubernetes pod restarted for its load).
            with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
                sock.sendall(head("GET", "/api/health"))
                answer = read_answer(sock)
                assert answer.status == 200 and answer.json()["status"] == "ok", answer
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + PATIENCE  # the server notices the closed connections asynchronously
        while (status := httpx.get(f"{url}/api/model", timeout=PATIENCE).status_code) == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status == 200


def test_a_request_unanswered_when_the_grace_of_a_stopping_server_is_out_gets_503(web_model_dir):
    """A stopping server gives the requests in flight a grace (30 s for ``mnistlab serve``), then uvicorn cancels
    the rest: each got a plain-text 500 "Internal Server Error" and a traceback in the log. Now a 503 in one
    sentence, with Retry-After and the security headers."""
    from mnistlab.web.app import create_app

    limits = ConnectionLimits(read_timeout=60)
    with running_server(create_app(web_model_dir), http=protocol_for(limits), timeout_graceful_shutdown=1) as url:
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=PATIENCE)
        sock.sendall(head("POST", "/api/predict", content_type="application/json", content_length="100"))
        sock.sendall(b'{"pixels": [')  # the rest never comes: the request is in flight as the server stops
        time.sleep(0.3)  # the server has read the head
    with sock:
        answer = read_answer(sock)
        assert answer.status == 503, answer
        assert "stopped" in answer.json()["detail"] and answer.headers["retry-after"].isdigit()
        assert all(name in answer.headers for name in SECURITY)


def test_a_client_that_reads_nothing_does_not_hold_a_stopping_server_for_good(web_model_dir):
    """A client that pipelines requests and never reads the answers leaves one waiting for room in its socket
    when the server stops. The 503 sent after the grace used to wait for that room too: the server never
    exited. It exits once the grace is out."""
    from mnistlab.web.app import create_app

    limits = ConnectionLimits(read_timeout=60)
    before = set(threading.enumerate())
    with running_server(create_app(web_model_dir), http=protocol_for(limits), timeout_graceful_shutdown=1) as url:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(head("GET", "/static/app.js") * 3000)  # megabytes of answers, none of them read
        time.sleep(1.0)
    with sock:
        deadline = time.monotonic() + PATIENCE
        while (left := [t for t in threading.enumerate() if t not in before]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert left == [], "the stopped server's thread still runs"


def test_connections_that_send_nothing_make_room_for_a_request(web_model_dir):
    """Idle connections (a crowd that opens sockets and waits) do not lock out requests, health probes among
    them: a request over the cap closes connections that hold none, and is answered."""
    from mnistlab.web.app import create_app

    limits = ConnectionLimits(read_timeout=60, max_connections=3)
    with running_server(create_app(web_model_dir), http=protocol_for(limits)) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) for _ in range(10)]
        try:
            time.sleep(0.3)  # the server has accepted them all
            for _ in range(3):
                answer = httpx.get(f"{url}/api/health", timeout=PATIENCE)
                assert answer.status_code == 200 and answer.json()["status"] == "ok"
            closed = 0
            for sock in idle:
                sock.settimeout(0.5)
                try:
                    closed += closed_by_server(sock)
                except TimeoutError:  # still open: the cap left room for it
                    pass
            # 10 idle and one request, 3 allowed: 8 closed to make room (one more if a closed client's
            # connection was still counted when the next request came)
            assert 8 <= closed <= 10, closed
        finally:
            for sock in idle:
                sock.close()


def _slow_upload(route: str) -> tuple[bytes, bytes]:
    """A request to ``route`` of a PNG whose reading holds a reading thread for a while (for a row, fine stripes:
    hundreds of parts, three looks; for a digit, a page of 2500 printed digits), and a small digit's PNG."""
    import io

    import cv2
    import numpy as np
    from PIL import Image

    if route == "/api/read-number":
        image = np.full((400, 8000), 255, np.uint8)
        image[:, ::4] = 0
    else:
        image = np.full((3000, 3000), 255, np.uint8)
        for y in range(20, 3000, 60):
            for x in range(20, 3000, 60):
                cv2.putText(image, str((x + y) % 10), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 3)
    pngs = []
    for array in (image, cv2.resize(image[:200, :200], (28, 28))):
        png = io.BytesIO()
        Image.fromarray(array).save(png, format="PNG")
        pngs.append(png.getvalue())
    form = httpx.Request("POST", f"http://x{route}", files={"file": ("slow.png", pngs[0], "image/png")})
    body = form.read()
    request = head("POST", route, content_type=form.headers["content-type"], content_length=str(len(body))) + body
    return request, pngs[1]


@pytest.mark.parametrize("route", ["/api/read-number", "/api/predict"])
def test_work_of_clients_that_left_is_dropped_not_done(web_model_dir, route):
    """A client that sent an upload and left while it waited for a reading thread left its work queued: read in
    full, for nobody. Ten such uploads, sent and dropped at once, held the one reading thread for ten readings,
    and the next client waited for all of them; the connection cap, meant to bound the work in the server, does
    not count connections that are gone, so a client could queue as much as it liked. Now the request of a client
    that left is cancelled, and its reading with it unless it has begun."""
    from mnistlab.web.app import create_app

    request, small = _slow_upload(route)
    with running_server(create_app(web_model_dir, max_decodes=1), http=protocol_for(ConnectionLimits())) as url:
        port = int(url.rsplit(":", 1)[1])
        assert httpx.post(f"{url}{route}", files={"file": ("small.png", small)}, timeout=PATIENCE).status_code == 200
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:  # how long one reading takes
            start = time.monotonic()
            sock.sendall(request)
            assert read_answer(sock).status == 200
            alone = time.monotonic() - start
        left = [socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) for _ in range(10)]
        for sock in left:
            sock.sendall(request)
        time.sleep(0.3)  # the server has read the forms: one reading under way, nine waiting for the thread
        for sock in left:
            sock.close()
        start = time.monotonic()
        answer = httpx.post(f"{url}{route}", files={"file": ("small.png", small)}, timeout=PATIENCE)
        waited = time.monotonic() - start
        assert answer.status_code == 200, answer.text
        assert waited < 3 * alone, (
            f"waited {waited:.2f} s behind the readings of clients that left ({alone:.2f} s each)"
        )


def test_limits_must_be_sensible():
    from mnistlab.errors import ParameterError

    for bad in ({"read_timeout": 0}, {"read_timeout": float("inf")}, {"min_upload_rate": -1}, {"max_connections": 0}):
        with pytest.raises(ParameterError):
            ConnectionLimits(**bad)
