"""A download's connection (the name's lookup, connecting, a proxy's tunnel, the TLS handshake) fits its ``timeout``
in all, and a Ray head's name is looked up in bounded time.

Against real loopback servers: a TCP server whose queue of connections is
full (a connect waits), one that sends a TLS handshake a byte at a time, an
https proxy that trickles or never ends its reply to CONNECT, and
a DNS server that never answers. The DNS and two-address cases run in a
child process in a network and mount namespace of its own (``unshare``),
whose ``/etc/resolv.conf`` or ``/etc/hosts`` points at them: the system's
resolver itself is what waits, nothing is put in its place.
"""

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mnistlab import DownloadError, download_dataset
from mnistlab.data.connect import TUNNEL_REPLY_BYTES, resolve_within

SRC = Path(__file__).resolve().parents[1] / "src"


def _can_unshare() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-rmn", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(not _can_unshare(), reason="needs unshare -rmn (user, mount and network namespaces)")


def _full_listener(host: str = "127.0.0.1", port: int = 0) -> tuple[socket.socket, socket.socket]:
    """A listening socket whose queue one unaccepted connection fills: a further connect to it waits."""
    server = socket.socket()
    server.bind((host, port))
    server.listen(0)
    filler = socket.create_connection(server.getsockname(), timeout=5)
    return server, filler


def _trickle_handshake(conn: socket.socket) -> None:
    """A TLS record header announcing 16 KB of handshake, then a byte of it every 0.2 s."""
    try:
        conn.sendall(b"\x16\x03\x03\x40\x00")
        for _ in range(200):
            conn.sendall(b"\x02")
            time.sleep(0.2)
    except OSError:  # the client hung up
        pass
    finally:
        conn.close()


def test_a_slow_connect_then_a_trickling_tls_handshake_fit_the_timeout_in_all(tmp_path):
    # Connecting and the handshake had a timeout each: a server slow to take the connection, then sending its
    # handshake a byte at a time, held a download for both, and the error said only "_ssl.c:989: The handshake
    # operation timed out".
    server, filler = _full_listener()
    port = server.getsockname()[1]

    def take_late() -> None:
        time.sleep(0.5)
        server.accept()[0].close()  # the filler: the queue has room for the client's next try
        server.settimeout(10)
        try:
            _trickle_handshake(server.accept()[0])
        except OSError:
            pass

    threading.Thread(target=take_late, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=(f"https://127.0.0.1:{port}/",), timeout=3)
    took = time.monotonic() - started
    server.close()
    filler.close()
    assert took < 3.6  # 4 s and more before: the connection (1 s, the SYN sent again) and 3 s of handshake
    assert f"https://127.0.0.1:{port}/train-images-idx3-ubyte.gz: 127.0.0.1 was not connected to" in str(info.value)
    assert 2.8 <= _seconds_given(str(info.value)) <= 3 and " s); check the network" in str(info.value)
    assert list((tmp_path / "d").iterdir()) == []


@pytest.fixture()
def proxy(monkeypatch):
    """proxy(answer) -> host:port of a loopback https proxy (set as https_proxy) that reads one CONNECT, then
    calls ``answer(conn)``."""
    servers = []

    def start(answer) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(10)
        servers.append(server)
        threading.Thread(target=_answer_one_connect, args=(server, answer), daemon=True).start()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        for name in ("HTTPS_PROXY", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("https_proxy", f"http://{address}")
        return address

    yield start
    for server in servers:
        server.close()


def _answer_one_connect(server: socket.socket, answer) -> None:
    try:
        conn = server.accept()[0]
        with conn:
            conn.recv(4096)  # the CONNECT request, one small packet
            answer(conn)
    except OSError:  # the client hung up, or never came
        pass


def _trickle_reply(conn: socket.socket) -> None:
    """The reply's status line, then a header a byte every 0.1 s, for 20 s."""
    for byte in b"HTTP/1.1 200 Connection established\r\nX-Slow: " + b"x" * 170:
        conn.sendall(bytes([byte]))
        time.sleep(0.1)


def _endless_reply(conn: socket.socket) -> None:
    """The reply's status line, then header lines as fast as they go, for 10 s."""
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
    stop = time.monotonic() + 10
    while time.monotonic() < stop:
        conn.sendall(b"X-More: " + b"x" * 1000 + b"\r\n")


def _slow_reply_then_handshake(conn: socket.socket) -> None:
    """The tunnel opened over a second (a byte every 0.05 s), then the target's TLS handshake a byte every 0.2 s."""
    for byte in b"HTTP/1.1 200 OK\r\n\r\n":
        conn.sendall(bytes([byte]))
        time.sleep(0.05)
    _trickle_handshake(conn)


def _download_through_proxy(tmp_path: Path, timeout: float) -> tuple[str, float]:
    """The error of a download through the proxy set (its mirror's name is looked up by the proxy), and its time."""
    started = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=("https://mirror.mnistlab.test/",), timeout=timeout)
    assert list((tmp_path / "d").iterdir()) == []
    return str(info.value), time.monotonic() - started


def test_a_proxy_trickling_its_reply_to_connect_is_left_within_the_timeout_naming_it(tmp_path, proxy):
    # Each read of the reply had the timeout of its own: a proxy sending a byte every 0.1 s held a download
    # with timeout=1 as long as it kept sending (here 20 s; for ever, for one that never stops).
    address = proxy(_trickle_reply)
    said, took = _download_through_proxy(tmp_path, timeout=1)
    assert took < 1.6
    assert (
        f"mirror.mnistlab.test/train-images-idx3-ubyte.gz: the proxy {address} did not open a tunnel to "
        "mirror.mnistlab.test:443 within "
    ) in said
    assert 0.8 <= _seconds_given(said) <= 1
    assert " s (set https_proxy / HTTPS_PROXY to a proxy that answers, or unset it)); check the network" in said


def test_a_proxy_whose_reply_to_connect_never_ends_is_refused_past_its_size_limit(tmp_path, proxy):
    # http.client (before Python 3.12) reads any number of header lines in the reply: it read them for ever.
    address = proxy(_endless_reply)
    said, took = _download_through_proxy(tmp_path, timeout=30)
    assert took < 5
    assert (
        f"the proxy {address} did not open a tunnel to mirror.mnistlab.test:443 "
        f"(its reply to CONNECT ran past {TUNNEL_REPLY_BYTES:,} bytes; set https_proxy / HTTPS_PROXY"
    ) in said


def test_a_slow_tunnel_then_a_trickling_tls_handshake_fit_the_timeout_in_all(tmp_path, proxy):
    # The handshake through the tunnel had what was left after connecting to the proxy, the time the reply
    # took not counted: here 1 s of reply and 2 s of handshake for timeout=2.
    address = proxy(_slow_reply_then_handshake)
    said, took = _download_through_proxy(tmp_path, timeout=2)
    assert took < 2.6
    assert f"mirror.mnistlab.test through the proxy {address} was not connected to (TLS handshake) within " in said
    assert 1.8 <= _seconds_given(said) <= 2


def _seconds_given(said: str) -> float:
    """The N of "within N s" in an error: the timeout less what went before the connection (an https
    connection's certificates take tens of ms to load)."""
    return float(said.split(" within ")[1].split()[0])


def _closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_cannot_be_reached_is_named_not_the_mirror(tmp_path, monkeypatch, scheme):
    # A proxy set in http_proxy / https_proxy that refused the connection (stale, not running) was blamed on each
    # mirror in turn: "https://<mirror>/train-images-idx3-ubyte.gz: [Errno 111] Connection refused", with the
    # advice to check the network, and nothing said a proxy was used at all.
    port = _closed_port()
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(f"{scheme}_proxy", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=(f"{scheme}://mirror.mnistlab.test/",), timeout=5)
    assert (
        f"{scheme}://mirror.mnistlab.test/train-images-idx3-ubyte.gz: the proxy 127.0.0.1:{port} could not be "
        f"reached (Connection refused; set {scheme}_proxy / {scheme.upper()}_PROXY to a proxy that answers, or "
        "unset it)); check the network"
    ) in str(info.value)
    assert list((tmp_path / "d").iterdir()) == []


def test_a_name_that_resolves_at_once_is_not_given_a_thread():
    before = threading.active_count()
    assert resolve_within("127.0.0.1", 80, 0.0)[0][4] == ("127.0.0.1", 80)
    assert threading.active_count() == before


_CHILD = """
import socket, sys, tempfile, time
from pathlib import Path
from mnistlab import download_dataset
held = []
if sys.argv[1] in ("dns", "twice", "ray", "cli"):
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))  # a DNS server that never answers
    held.append(dns)
else:
    for ip in ("127.0.0.1", "127.0.0.2"):  # both of the host's addresses take no connection
        server = socket.socket(); server.bind((ip, 18300)); server.listen(0)
        held += [server, socket.create_connection((ip, 18300))]
if sys.argv[1] == "cli":  # the command, while the DNS server above keeps silent
    import subprocess
    done = subprocess.run([sys.executable, "-m", "mnistlab.cli", *sys.argv[2:]], capture_output=True, text=True)
    print(done.returncode, done.stderr.strip())
    sys.exit()
if sys.argv[1] == "ray":  # a Ray head's name, checked before Ray is handed it (and no Ray runtime started)
    from mnistlab.lab.rayhead import check_reachable as _check_reachable
started = time.monotonic()
if sys.argv[1] == "ray":
    try:
        _check_reachable(sys.argv[2])
    except Exception as exc:
        print(type(exc).__name__, exc)
    print(f"took {time.monotonic() - started:.1f} s")
    sys.exit()
if sys.argv[1] == "twice":  # the second wait joins the lookup still running: one thread, not two
    import threading
    from mnistlab.data.connect import resolve_within
    for _ in range(2):
        try:
            resolve_within("slow.mnistlab.test", 80, 0.2)
        except TimeoutError as exc:
            print(exc)
    print(sum(t.name == "mnistlab-lookup" for t in threading.enumerate()), "lookup threads")
    sys.exit()
try:
    # A folder beside this script (the test's tmp_path), not one left in the machine's /tmp by every run.
    download_dataset("mnist", Path(tempfile.mkdtemp(dir=Path(__file__).parent)) / "d", mirrors=(sys.argv[2],), timeout=1)
except Exception as exc:
    print(type(exc).__name__, exc)
print(f"took {time.monotonic() - started:.1f} s", flush=True)
"""


_SILENT = "nameserver 127.0.0.1\noptions timeout:20 attempts:3\n"  # the DNS server _CHILD runs, waited on a minute


def _in_namespace(etc_file: str, content: str, tmp_path: Path, *args: str, timeout: float = 20) -> str:
    """The child's output, run in namespaces of its own with ``/etc/<etc_file>`` holding ``content``."""
    (tmp_path / etc_file).write_text(content)
    (tmp_path / "child.py").write_text(_CHILD)
    script = f'ip link set lo up && mount --bind {tmp_path / etc_file} /etc/{etc_file} && exec "$@"'
    result = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", script, "sh", sys.executable, str(tmp_path / "child.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # the resolver below waits 3 x 20 s before it gives up
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_unshare
def test_a_dns_server_that_never_answers_is_given_up_within_the_timeout_naming_the_host(tmp_path):
    # getaddrinfo had no bound: a download with timeout=1 waited as long as the resolver did (here a minute).
    out = _in_namespace("resolv.conf", _SILENT, tmp_path, "dns", "http://slow.mnistlab.test:18300/")
    assert "DownloadError Could not download mnist (no mirror gave a verified train-images-idx3-ubyte.gz: " in out
    assert "18300/train-images-idx3-ubyte.gz: the name slow.mnistlab.test was not resolved within 1.0 s" in out
    assert float(out.split("took ")[1].split()[0]) < 2


@needs_unshare
def test_a_lookup_given_up_on_is_joined_by_the_next_wait_for_the_host(tmp_path):
    out = _in_namespace("resolv.conf", _SILENT, tmp_path, "twice", "")
    assert (
        out == "the name slow.mnistlab.test was not resolved within 0.2 s (no DNS answer)\n" * 2 + "1 lookup threads\n"
    )


@needs_unshare
def test_a_host_whose_addresses_all_wait_is_given_up_within_the_timeout_in_all(tmp_path):
    # Each of a host's addresses had the whole timeout: two that took no connection held a download 2 s
    # (sixteen would hold it 16 times the timeout), and the error said only "<urlopen error timed out>".
    hosts = "127.0.0.1 localhost\n127.0.0.1 two.mnistlab.test\n127.0.0.2 two.mnistlab.test\n"
    out = _in_namespace("hosts", hosts, tmp_path, "two", "http://two.mnistlab.test:18300/")
    assert "two.mnistlab.test port 18300 could not be connected to within 1.0 s); check the network" in out
    assert float(out.split("took ")[1].split()[0]) < 1.5


@needs_unshare
def test_a_ray_head_whose_name_no_dns_server_answers_is_refused_within_the_connect_timeout(tmp_path):
    # socket.create_connection looked the head's name up with no bound: --cluster ray://NAME:10001 waited
    # as long as the resolver did (here a minute) before Ray was even tried.
    from mnistlab.lab.cluster import CONNECT_TIMEOUT_S  # seconds to import (scikit-learn): only here

    out = _in_namespace("resolv.conf", _SILENT, tmp_path, "ray", "ray://slow.mnistlab.test:10001", timeout=40)
    assert out.startswith(
        "ClusterError No Ray cluster answers at slow.mnistlab.test:10001: the name slow.mnistlab.test was not "
        f"resolved within {CONNECT_TIMEOUT_S:.1f} s (no DNS answer); check --cluster / RAY_ADDRESS (an IP address"
    )
    assert float(out.split("took ")[1].split()[0]) < CONNECT_TIMEOUT_S + 1


@needs_unshare
def test_the_cli_says_so_in_one_line_with_exit_2(tmp_path):
    store, flags = tmp_path / "mlflow.db", ["--limit", "300", "--n-jobs", "1", "--cv", "0"]
    args = ["compare", "logreg", *flags, "--out", str(tmp_path / "r"), "--tracking-uri", f"sqlite:///{store}"]
    out = _in_namespace(
        "resolv.conf", _SILENT, tmp_path, "cli", *args, "--cluster", "slow.mnistlab.test:6379", timeout=60
    )
    assert out.startswith("2 Error: No Ray cluster answers at slow.mnistlab.test:6379: the name slow.mnistlab.test ")
    assert len(out.splitlines()) == 1 and not store.exists()


@needs_unshare
def test_serve_on_a_host_name_no_dns_server_answers_is_one_line_with_exit_2_in_seconds(tmp_path):
    # `serve --host NAME` looked NAME up with no bound, before the model loaded: here a minute, the resolver's.
    started = time.monotonic()
    out = _in_namespace("resolv.conf", _SILENT, tmp_path, "cli", "serve", "--host", "slow.mnistlab.test", timeout=60)
    assert out == (
        "2 Error: --host 'slow.mnistlab.test' was not resolved within 5 s (no DNS answer); give one of this "
        "machine's addresses, e.g. 127.0.0.1 or 0.0.0.0.\n"
    )
    assert time.monotonic() - started < 15
