"""A download's connection (the name's lookup, connecting, the TLS handshake) fits its ``timeout`` in all.

Against real loopback servers: a TCP server whose queue of connections is
full (a connect waits), one that sends a TLS handshake a byte at a time, and
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
from mnistlab.data.connect import resolve_within

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
    assert "within 3.0 s); check the network" in str(info.value)
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
if sys.argv[1] in ("dns", "twice"):
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 53))  # a DNS server that never answers
    held.append(dns)
else:
    for ip in ("127.0.0.1", "127.0.0.2"):  # both of the host's addresses take no connection
        server = socket.socket(); server.bind((ip, 18300)); server.listen(0)
        held += [server, socket.create_connection((ip, 18300))]
started = time.monotonic()
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
    download_dataset("mnist", Path(tempfile.mkdtemp()) / "d", mirrors=(sys.argv[2],), timeout=1)
except Exception as exc:
    print(type(exc).__name__, exc)
print(f"took {time.monotonic() - started:.1f} s", flush=True)
"""


_SILENT = "nameserver 127.0.0.1\noptions timeout:20 attempts:3\n"  # the DNS server _CHILD runs, waited on a minute


def _in_namespace(etc_file: str, content: str, tmp_path: Path, *args: str) -> str:
    """The child's output, run in namespaces of its own with ``/etc/<etc_file>`` holding ``content``."""
    (tmp_path / etc_file).write_text(content)
    (tmp_path / "child.py").write_text(_CHILD)
    script = f'ip link set lo up && mount --bind {tmp_path / etc_file} /etc/{etc_file} && exec "$@"'
    result = subprocess.run(
        ["unshare", "-rmn", "sh", "-c", script, "sh", sys.executable, str(tmp_path / "child.py"), *args],
        capture_output=True,
        text=True,
        timeout=20,  # the resolver below waits 3 x 20 s before it gives up
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
