"""Downloads against a real HTTP server on 127.0.0.1 serving good, corrupt and cut-off copies."""

import fcntl
import gzip
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab import (
    DatasetError,
    DownloadError,
    LocalWriteError,
    ParameterError,
    download_dataset,
    load_mnist,
    write_idx,
)
from mnistlab.cli import app
from mnistlab.data.registry import DATASETS, MAX_DOWNLOAD_BYTES, ROLES, DatasetSpec
from mnistlab.data.sources import sha256_decompressed
from mnistlab.testing import random_idx_arrays, write_idx_folder


class _Handler(BaseHTTPRequestHandler):
    """/good/<file> serves the file, /bad/<file> flipped bytes, /cut/<file> half then hangs up.

    /endless/<file> sends the file then zeros for ever, with no Content-Length;
    /biglen/<file> announces a Content-Length of 1 TB; /html/<file> a login page;
    /trickle/<file> sends a byte every 50 ms, for 20 s; /stall/<file> half the file, then nothing for 10 s;
    /slowhead/<file> its headers a byte every 50 ms; /trailers/<file> the file chunked, then trailers for ever;
    /loop/<file> redirects to itself; /ftp-<port>/<file> to ftp://127.0.0.1:<port>/<file>; /bigmove/<file> to
    /good/<file>, announcing a body of 1 TB; /auth/<file> serves the file to alice:s3cret (HTTP Basic) alone.
    """

    def __init__(self, root: Path, log: list, *args, **kwargs):
        self.root, self.log = root, log
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.log.append(self.path)
        mode, _, name = self.path.strip("/").partition("/")
        path = self.root / name
        if not path.is_file():
            self.send_error(404)
            return
        if mode == "loop" or mode.startswith("ftp-"):  # redirects to itself, or to ftp://127.0.0.1:<port>/
            self.send_response(302)
            self.send_header("Location", self.path if mode == "loop" else f"ftp://127.0.0.1:{mode[4:]}/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "auth" and self.headers.get("Authorization") != "Basic " + "YWxpY2U6czNjcmV0":  # alice:s3cret
            self.send_error(401)
            return
        if mode == "bigmove":  # a redirect to /good/, announcing a body of 1 TB
            self.send_response(301)
            self.send_header("Location", f"/good/{name}")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b"moved")
            return
        body = path.read_bytes()
        if mode == "endless":
            self._endless(body)
            return
        if mode == "trickle":
            self._trickle(body)
            return
        if mode in ("slowhead", "trailers"):
            self._never_done(body, mode)
            return
        if mode == "html":
            body = b"<html>log in first</html>"
        if mode == "bad":
            body = body[:-8] + bytes(8)  # same length, wrong content
        self.send_response(200)
        self.send_header("Content-Length", str(10**12 if mode == "biglen" else len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode in ("cut", "stall") else body)
        if mode == "stall":
            self.wfile.flush()
            time.sleep(10)
        if mode == "cut":
            self.wfile.flush()
            self.close_connection = True

    def _endless(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(body)
            while True:
                self.wfile.write(bytes(1 << 16))
        except OSError:  # the client hung up
            pass

    def _trickle(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(400):  # then it hangs up, 20 s later, so a client without a deadline ends too
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:  # the client hung up
            pass
        self.close_connection = True

    def _never_done(self, body: bytes, mode: str) -> None:
        """The headers a byte every 50 ms (for 20 s), or the body chunked and then trailer lines for ever."""
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            if mode == "slowhead":
                for byte in b"X-Slow: " + b"x" * 400:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            self.wfile.write(b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(body), body))
            while True:
                self.wfile.write(b"X-More: " + b"x" * 1000 + b"\r\n")
        except OSError:  # the client hung up
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture()
def serve():
    """serve(root) -> (base URL, request log) of a loopback server publishing ``root``."""
    servers = []

    def start(root: Path) -> tuple[str, list]:
        log: list[str] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, root, log))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}", log

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def tiny(tmp_path, monkeypatch):
    """A registered dataset 'tiny' whose files a loopback server publishes."""
    arrays = random_idx_arrays(np.random.default_rng(1), 300, 50)
    src, spec0 = write_idx_folder(tmp_path / "published", arrays), DATASETS["mnist"]
    log: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, src, log))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    spec = DatasetSpec(
        name="tiny",
        description="test set",
        url=base,
        sha256={role: sha256_decompressed(src / spec0.files[role]) for role in ROLES},
        mirrors=(f"{base}/cut/", f"{base}/bad/", f"{base}/good/"),
    )
    monkeypatch.setitem(DATASETS, "tiny", spec)
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    monkeypatch.delenv("MNISTLAB_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield spec, base, log, arrays
    server.shutdown()
    server.server_close()


def test_bad_mirrors_are_rejected_and_the_good_copy_is_cached(tiny, tmp_path):
    spec, base, log, arrays = tiny
    seen = []
    files = download_dataset("tiny", progress=lambda f, done, total: seen.append((f, done, total)))
    dest = tmp_path / "cache" / "mnistlab" / "tiny"
    assert sorted(p.name for p in dest.iterdir()) == sorted(spec.files.values())  # no .part left
    for role in ROLES:
        assert files[role].parent == dest and sha256_decompressed(files[role]) == spec.sha256[role]
    # Every file was tried on the cut and the corrupt mirror before the good one.
    fname = spec.files["train_images"]
    assert [p for p in log if p.endswith(fname)] == [f"/cut/{fname}", f"/bad/{fname}", f"/good/{fname}"]
    assert seen and seen[-1][1] == seen[-1][2]


def test_a_progress_that_cannot_be_called_is_refused_before_any_mirror(tiny, tmp_path):
    """download_dataset(..., progress=5) (or load_mnist's) downloaded the first bytes, then failed in a TypeError
    traceback: 'int' object is not callable."""
    _, base, log, _ = tiny
    with pytest.raises(ParameterError) as info:
        download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/good/",), progress=5)
    assert str(info.value) == "progress must be a function (something callable) or None, got 5."
    assert log == [] and not (tmp_path / "dl").exists()


def test_load_downloads_once_then_uses_the_cache(tiny):
    spec, base, log, arrays = tiny
    b = load_mnist("tiny")
    assert b.details["verified"] and b.details["n_train"] == 300 and b.details["n_test"] == 50
    np.testing.assert_array_equal(b.images[:300], arrays["train_images"])
    n_requests = len(log)
    again = load_mnist("tiny")
    assert len(log) == n_requests  # second load touches no network
    np.testing.assert_array_equal(again.target, b.target)


def test_interrupted_download_leaves_no_partial_file(tiny, tmp_path):
    spec, base, log, arrays = tiny
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match=r"Could not download tiny \(no mirror gave a verified"):
        download_dataset("tiny", dest, mirrors=(f"{base}/cut/",))
    assert list(dest.iterdir()) == []


def test_a_mirror_with_a_user_and_password_is_logged_into_and_its_password_never_said(tiny, tmp_path):
    """``https://USER:PASSWORD@host/`` as a mirror: urllib took ``USER:PASSWORD@host`` for the host's name, so the
    download failed ("Name or service not known"), and the error said the password in clear."""
    spec, base, log, arrays = tiny
    with_password = base.replace("http://", "http://alice:s3cret@")
    files = download_dataset("tiny", tmp_path / "dl", mirrors=(f"{with_password}/auth/",))
    assert all(sha256_decompressed(files[role]) == spec.sha256[role] for role in ROLES)
    wrong = base.replace("http://", "http://alice:wrong@")
    for mirrors in [(f"{wrong}/auth/",), (f"{with_password}/bad/",)]:
        with pytest.raises(DownloadError) as refused:
            download_dataset("tiny", tmp_path / "other", mirrors=mirrors)
        assert "s3cret" not in str(refused.value) and "wrong" not in str(refused.value)
        assert f"{base.replace('http://', 'http://alice:***@')}/" in str(refused.value)
    with pytest.raises(ParameterError) as refused:
        download_dataset("tiny", tmp_path / "other", mirrors=("http://alice:s3cret@/mnist/",))  # no host
    assert "s3cret" not in str(refused.value)


def test_only_corrupt_mirrors_fail_with_a_clear_message(tiny, tmp_path):
    spec, base, log, arrays = tiny
    with pytest.raises(DownloadError, match="corrupt copy|sha256"):
        download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/bad/",))
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.skipif(Path("/usr/share/datasets/mnist").exists(), reason="MNIST is installed here")
@pytest.mark.parametrize("command", [["train", "knn", "--limit", "500"], ["data", "info"]])
def test_no_copy_of_mnist_advises_what_the_command_takes(tmp_path, monkeypatch, command):
    """`mnistlab train knn` without MNIST and no network advised 'set MNISTLAB_DATA or pass --data-dir', and
    `train --data-dir DIR` is 'No such option: --data-dir' (as is evaluate's, compare's and export's)."""
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    monkeypatch.delenv("MNISTLAB_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(
        DATASETS, "mnist", DatasetSpec(**{**DATASETS["mnist"].__dict__, "mirrors": ("http://127.0.0.1:9/",)})
    )
    result = CliRunner().invoke(app, [*command, *(["--out", str(tmp_path / "m")] if command[0] == "train" else [])])
    assert result.exit_code == 2, result.output
    said = result.stderr.strip().splitlines()[-1]
    assert said.startswith("Error: mnist was not found") and "pass --data-dir" not in said
    assert said.endswith(
        "; check the network, or set MNISTLAB_DATA to a folder holding the four IDX files (data info and show also "
        "take it as --data-dir, Python as data_dir=)."
    )
    assert not (tmp_path / "m").exists()


def test_no_copy_and_no_network_names_the_places_searched(tiny, monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", DatasetSpec(**{**tiny[0].__dict__, "mirrors": ("http://127.0.0.1:9/",)}))
    with pytest.raises(DatasetError) as info:
        load_mnist("tiny")
    msg = str(info.value)
    assert "tiny was not found" in msg and "MNISTLAB_DATA" in msg and "/usr/share/datasets/tiny" in msg
    assert "and could not be downloaded (no mirror gave a verified train-images-idx3-ubyte.gz: " in msg
    assert msg.endswith(
        "; check the network, or set MNISTLAB_DATA to a folder holding the four IDX files (data info and show also "
        "take it as --data-dir, Python as data_dir=)."
    )
    assert msg.count(". ") == 0  # one sentence, one piece of advice


def test_a_damaged_file_already_in_place_is_downloaded_again(tiny, tmp_path):
    spec, base, log, arrays = tiny
    dest = tmp_path / "dl"
    dest.mkdir()
    fname = spec.files["test_images"]
    (dest / fname).write_bytes(b"\x1f\x8b\x08\x00 cut short")  # a gzip header and no more
    files = download_dataset("tiny", dest, mirrors=(f"{base}/good/",))
    assert sha256_decompressed(files["test_images"]) == spec.sha256["test_images"]
    assert f"/good/{fname}" in log


@pytest.mark.parametrize("name", ["bogus", "digits", None])
def test_a_dataset_without_a_download_is_named(name):
    with pytest.raises(DatasetError, match="No download is known for .*expected one of mnist, fashion-mnist"):
        download_dataset(name)


def _with(spec: DatasetSpec, **changes) -> DatasetSpec:
    return DatasetSpec(**{**spec.__dict__, **changes})


def test_an_endless_response_stops_at_the_size_limit_and_leaves_nothing(tiny, tmp_path, monkeypatch):
    spec, base, log, arrays = tiny
    limit = 400_000  # the largest file of tiny is 235,216 bytes
    monkeypatch.setitem(DATASETS, "tiny", _with(spec, max_file_bytes=limit))
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="sent more than the 400,000 bytes a file of this data set can be"):
        download_dataset("tiny", dest, mirrors=(f"{base}/endless/",))
    assert list(dest.iterdir()) == []


def test_the_default_size_limit_stops_an_endless_response(tiny, tmp_path):
    spec, base, log, arrays = tiny
    with pytest.raises(DownloadError, match=f"sent more than the {MAX_DOWNLOAD_BYTES:,} bytes"):
        download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/endless/",))
    assert list((tmp_path / "dl").iterdir()) == []


def test_a_content_length_beyond_the_limit_is_refused_then_the_next_mirror_used(tiny, tmp_path):
    spec, base, log, arrays = tiny
    seen = []
    files = download_dataset(
        "tiny",
        tmp_path / "dl",
        mirrors=(f"{base}/biglen/", f"{base}/good/"),
        progress=lambda f, done, total: seen.append(total),
    )
    assert sha256_decompressed(files["train_images"]) == spec.sha256["train_images"]
    assert 10**12 not in seen  # refused before a byte of it was written
    with pytest.raises(DownloadError, match="announced 1,000,000,000,000 bytes, more than the"):
        download_dataset("tiny", tmp_path / "dl2", mirrors=(f"{base}/biglen/",))


def test_an_error_page_is_refused_from_its_first_bytes(tiny, tmp_path):
    spec, base, log, arrays = tiny
    with pytest.raises(DownloadError, match="start as neither gzip nor IDX"):
        download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/html/",))


def test_a_trickling_mirror_is_left_for_the_next_once_the_grace_period_is_over(tiny, tmp_path):
    spec, base, log, arrays = tiny
    started = time.monotonic()
    files = download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/trickle/", f"{base}/good/"), timeout=0.5)
    assert time.monotonic() - started < 15  # four files at a byte every 50 ms would take hours
    assert sha256_decompressed(files["train_images"]) == spec.sha256["train_images"]
    with pytest.raises(
        DownloadError, match=r"averaged \d+ bytes/s over [\d.]+ s, below the 4,096 bytes/s mnistlab waits"
    ):
        download_dataset("tiny", tmp_path / "dl2", mirrors=(f"{base}/trickle/",), timeout=0.5)
    assert list((tmp_path / "dl2").iterdir()) == []


def test_an_unwritable_cache_folder_is_one_sentence_with_exit_2(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be\n")  # unwritable even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("MNISTLAB_MIRRORS", "http://127.0.0.1:9/")
    result = CliRunner().invoke(app, ["data", "info"])
    assert result.exit_code == 2, result.output
    # It said "(Not a directory); free space there or make it writable", neither of which is the trouble.
    assert result.stderr == (
        f"Error: mnistlab cannot write the download in {blocker}/mnistlab/mnist: {blocker} is a file, not a folder; "
        "move or remove it, or set XDG_CACHE_HOME to a folder you can write to, or MNISTLAB_DATA to a folder that "
        "holds the four IDX files.\n"
    )


@pytest.mark.parametrize("under", ["", "sub"])
def test_a_file_where_the_download_folder_should_be_is_said_to_be_one(tmp_path, under):
    # It was "cannot write the download in ... (File exists); free space there or make it writable".
    blocker = tmp_path / "data"
    blocker.write_text("a file\n")
    with pytest.raises(LocalWriteError) as info:
        download_dataset("mnist", blocker / under, mirrors=("http://127.0.0.1:9/",))
    assert str(info.value) == (
        f"mnistlab cannot write the download in {blocker / under}: {blocker} is a file, not a folder; move or "
        "remove it, or download to a folder you can write to."
    )


def test_a_cache_folder_linked_to_a_drive_not_mounted_says_so(tmp_path, monkeypatch):
    """A cache linked to a folder that is gone (an external drive not mounted) was "cannot write the download in
    ... (File exists); free space there or make it writable": neither is the trouble."""
    cache = tmp_path / "cache"
    cache.symlink_to(tmp_path / "usb-drive" / "cache")  # the drive is not mounted: the target is missing
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("MNISTLAB_MIRRORS", "http://127.0.0.1:9/")
    result = CliRunner().invoke(app, ["data", "info"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"Error: mnistlab cannot write the download in {cache}/mnistlab/mnist: {cache} is a link to "
        f"{tmp_path / 'usb-drive' / 'cache'}, which does not exist (a drive not mounted?); mount it, remove the link"
    ), result.stderr


def test_a_download_folder_that_cannot_be_looked_into_is_one_sentence(tmp_path):
    # Telling why the folder could not be made looked into the folders above it, and a name too long (or a folder
    # not to be entered) made that look an OSError traceback in place of the LocalWriteError.
    folder = tmp_path / ("x" * 300) / "d"
    with pytest.raises(LocalWriteError) as info:
        download_dataset("mnist", folder, mirrors=("http://127.0.0.1:9/",))
    assert str(info.value).startswith(f"mnistlab cannot write the download in {folder} (File name too long); ")


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past it fail with EFBIG

    return apply


def test_a_local_write_failure_stops_at_once_and_blames_the_folder(mnist_dir, tmp_path, serve):
    base, log = serve(mnist_dir)
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "MNISTLAB_DATA": str(tmp_path / "nothing-here"),
        "MNISTLAB_MIRRORS": f"{base}/one/ {base}/two/",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab.cli", "data", "info", "--json"],
        env=env,
        preexec_fn=_file_size_limit(2**20),  # the training images are 9.9 MB
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    folder = tmp_path / "cache" / "mnistlab" / "mnist"
    assert done.stderr == (
        f"Error: mnistlab cannot write the download in {folder} (File too large); free space there or make it "
        "writable, or set XDG_CACHE_HOME to a folder you can write to, or MNISTLAB_DATA to a folder that holds the "
        "four IDX files.\n"
    )
    assert log == ["/one/train-images-idx3-ubyte.gz"]  # not blamed on the mirror: the second is not tried
    assert list(folder.iterdir()) == []


def test_a_killed_download_leaves_a_part_file_that_the_next_download_removes(mnist_dir, tmp_path, serve, monkeypatch):
    base, log = serve(mnist_dir)
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "MNISTLAB_DATA": str(tmp_path / "nothing-here"),
        "MNISTLAB_MIRRORS": f"{base}/stall/",
    }
    folder = tmp_path / "cache" / "mnistlab" / "mnist"
    proc = subprocess.Popen([sys.executable, "-m", "mnistlab.cli", "data", "info", "--json"], env=env)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in folder.glob(".*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL: no clean-up runs
        proc.wait()
    (dead,) = folder.glob(".train-images-idx3-ubyte.gz.*.part")
    # A download running now in another process: its .part is locked, and must be left alone.
    live = folder / ".train-images-idx3-ubyte.gz.running.part"
    with open(live, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        download_dataset("mnist", mirrors=(f"{base}/good/",))
        assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, *DATASETS["mnist"].files.values()])
    assert not dead.exists()


def test_downloaded_files_are_readable_by_all_like_every_file_mnistlab_writes(tiny, tmp_path):
    spec, base, log, arrays = tiny
    files = download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/good/",))
    assert {oct(p.stat().st_mode & 0o777) for p in files.values()} == {"0o644"}


@pytest.mark.parametrize(
    "pace, message",
    [
        ({"timeout": -1}, "timeout must be a positive number of seconds, at most 86,400 (a day), got -1."),
        ({"timeout": "30"}, "timeout must be a positive number of seconds, at most 86,400 (a day), got '30'."),
        # Past what a socket's timeout can hold: an OverflowError from the socket, a traceback.
        ({"timeout": 1e10}, "timeout must be a positive number of seconds, at most 86,400 (a day), got 10000000000.0."),
        ({"min_rate": "x"}, "min_rate must be a number of bytes per second, 0 or more, got 'x'."),
        ({"min_rate": float("nan")}, "min_rate must be a number of bytes per second, 0 or more, got nan."),
    ],
)
def test_a_bad_timeout_or_rate_is_refused_before_any_mirror_is_tried(tmp_path, pace, message):
    # They were passed on unchecked: urlopen refused a negative timeout for each mirror in turn, blamed on
    # the mirrors, and a rate of the wrong type failed in a TypeError once a download had run 30 seconds.
    with pytest.raises(ParameterError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=("http://127.0.0.1:9/",), **pace)
    assert str(info.value) == message
    assert not (tmp_path / "d").exists()


def test_a_served_gzip_bomb_is_refused_from_its_header_not_inflated(tiny, tmp_path, serve, monkeypatch):
    # The served file was inflated whole to be hashed, up to the 4 GiB any IDX file may declare: 4 MB of
    # gzip made every download of it spend 12 s of CPU before its checksum failed.
    spec, base, log, arrays = tiny
    root = tmp_path / "bombs"
    root.mkdir()
    header = bytes([0, 0, 8, 2]) + np.array([1000, 1000], ">u4").tobytes()
    (root / spec.files["train_images"]).write_bytes(gzip.compress(header + bytes(10**6)))  # 1 KB of gzip
    monkeypatch.setitem(DATASETS, "tiny", _with(spec, max_file_bytes=100_000))
    bomb_base, _ = serve(root)
    with pytest.raises(
        DownloadError, match="declares 1,000,000 bytes of data, more than the 100,000 a file of this data set can be"
    ):
        download_dataset("tiny", tmp_path / "dl", mirrors=(f"{bomb_base}/good/",))
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.parametrize("mode", ["slowhead", "trailers"])
def test_a_mirror_that_never_ends_its_headers_or_trailers_is_left_for_the_next(tiny, tmp_path, monkeypatch, mode):
    # The pace and size limits counted the body only: headers sent a byte at a time, or trailer lines sent
    # for ever after the body, held a download as long as the server kept sending.
    spec, base, log, arrays = tiny
    monkeypatch.setitem(DATASETS, "tiny", _with(spec, max_file_bytes=400_000))
    started = time.monotonic()
    mirrors = (f"{base}/{mode}/", f"{base}/good/")
    files = download_dataset("tiny", tmp_path / "dl", mirrors=mirrors, timeout=0.5)
    assert time.monotonic() - started < 15  # 20 s a file before
    assert sha256_decompressed(files["train_images"]) == spec.sha256["train_images"]
    says = {"slowhead": r"averaged \d+ bytes/s over [\d.]+ s, below the 4,096", "trailers": "sent more than 800,000"}
    with pytest.raises(DownloadError, match=says[mode]):
        download_dataset("tiny", tmp_path / "dl2", mirrors=(f"{base}/{mode}/",), timeout=0.5)
    assert list((tmp_path / "dl2").iterdir()) == []


@pytest.mark.parametrize("damage", ["cut short", "another file"])
def test_a_damaged_file_in_the_download_cache_is_downloaded_again_with_one_line(tiny, tmp_path, caplog, damage):
    # load_mnist stopped at the damaged copy ('delete or replace the file', or 'download it again', which it
    # offered no way to do), though the file is mnistlab's own download and download_dataset replaces one.
    spec, base, log, arrays = tiny
    load_mnist("tiny")
    fname = spec.files["test_labels"]
    damaged = tmp_path / "cache" / "mnistlab" / "tiny" / fname
    if damage == "cut short":
        damaged.write_bytes(damaged.read_bytes()[:20])
    else:
        write_idx(damaged, np.zeros(50, np.uint8))
    log.clear()
    b = load_mnist("tiny")
    np.testing.assert_array_equal(b.target[300:], arrays["test_labels"])
    assert log == [f"/cut/{fname}", f"/bad/{fname}", f"/good/{fname}"]  # that file only, again
    assert sha256_decompressed(damaged) == spec.sha256["test_labels"]
    assert [r.getMessage() for r in caplog.records] == [f"mnistlab: {damaged} is damaged; downloading it again."]


def test_a_mirror_that_redirects_in_a_loop_is_one_line(tiny, monkeypatch):
    # urllib's HTTPError for it spans three lines ("...would lead to an infinite loop.\nThe last 30x error message
    # was:\nFound"), and so did the Error: the command printed.
    spec, base, log, arrays = tiny
    monkeypatch.setitem(DATASETS, "tiny", _with(spec, mirrors=(f"{base}/loop/",)))
    result = CliRunner().invoke(app, ["data", "info", "tiny"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{base}/loop/train-images-idx3-ubyte.gz: it redirects in a loop, or more than 10 times (HTTP 302)" in (
        result.stderr
    )


def _trickling_ftp_server(stop: threading.Event) -> int:
    """The port of a loopback 'ftp server' that sends its greeting a byte every 0.2 s, for 10 s."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with conn, listener:
            for byte in b"220-" + b"x" * 50:
                if stop.wait(0.2):
                    return
                conn.sendall(bytes([byte]))

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_a_redirect_to_ftp_is_refused_not_followed_past_the_time_bounds(tiny, tmp_path):
    # urllib followed it to its ftp handler, which knows no rate nor deadline: a download given timeout=1 ran
    # as long as the ftp server trickled (10 s here, hours for a greeting of 8 KiB at a byte a second).
    spec, base, log, arrays = tiny
    stop = threading.Event()
    mirror = f"{base}/ftp-{_trickling_ftp_server(stop)}/"
    started = time.monotonic()
    try:
        with pytest.raises(DownloadError, match="mnistlab downloads over http and https only, not ftp://127.0.0.1:"):
            download_dataset("tiny", tmp_path / "dl", mirrors=(mirror,), timeout=1)
    finally:
        stop.set()
    assert time.monotonic() - started < 5
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.parametrize("mirrors", ["http://127.0.0.1:9/", ["http://127.0.0.1:9/", 9], 9])
def test_mirrors_that_are_no_sequence_of_urls_are_refused_before_any_is_tried(tmp_path, mirrors):
    # A string was taken one character at a time: 19 "mirrors" h, t, t, p..., each "unknown url type", and the
    # advice to check the network; a number was a TypeError.
    with pytest.raises(ParameterError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=mirrors)
    assert str(info.value).startswith(
        "mirrors must be a tuple of base URLs, such as ('https://example.org/mnist/',), got "
    )
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "url", ["127.0.0.1:9/mnist/", "mirror.example.org/mnist", "htp://mirror.example.org/", "http://[::1/"]
)
def test_a_mirror_that_is_no_http_url_is_refused_before_any_is_tried(tmp_path, monkeypatch, url):
    # It was tried as a mirror: "127.0.0.1:9/mnist/train-images-idx3-ubyte.gz: unknown url type: 127.0.0.1", with
    # the advice to check the network; with the network up, the public mirrors served the data and the user's own
    # mirror, misspelt, was passed over without a word.
    with pytest.raises(ParameterError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=("http://127.0.0.1:9/", url))
    assert str(info.value).startswith(f"mirrors holds {url!r}, which is not ")
    assert str(info.value).endswith("; give base URLs such as 'https://example.org/mnist/'.")
    assert not (tmp_path / "d").exists()
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MNISTLAB_MIRRORS", f"http://127.0.0.1:9/  {url}")
    result = CliRunner().invoke(app, ["data", "info"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: MNISTLAB_MIRRORS holds {url!r}, which is not "), result.stderr
    assert result.stderr.endswith(
        "; write each mirror as a full URL, such as https://example.org/mnist/, separated by spaces, or unset it.\n"
    )
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "cache").exists()


def test_a_redirect_that_announces_a_huge_body_is_followed_without_reading_it(tiny, tmp_path):
    # urllib reads a redirect's whole body before it follows it, asking for all the Content-Length at once: one of
    # 1 TB was a MemoryError (one of 10**20 an OverflowError), a traceback that stopped the download of every
    # mirror, where the redirect's body is not even needed.
    spec, base, log, arrays = tiny
    files = download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/bigmove/",))
    assert sha256_decompressed(files["train_images"]) == spec.sha256["train_images"]
    assert log[:2] == ["/bigmove/train-images-idx3-ubyte.gz", "/good/train-images-idx3-ubyte.gz"]


def test_a_mirror_whose_path_is_not_ascii_is_fetched_as_a_browser_would(tiny, tmp_path):
    # http.client takes ASCII only: "http://host/données/" (as curl or a browser fetches it) failed on every file
    # with "'ascii' codec can't encode character '\xe9'", and the advice to check the network.
    spec, base, log, arrays = tiny
    files = download_dataset("tiny", tmp_path / "dl", mirrors=(f"{base}/données/",))
    assert sha256_decompressed(files["train_images"]) == spec.sha256["train_images"]
    assert log[0] == "/donn%C3%A9es/train-images-idx3-ubyte.gz"


@pytest.mark.parametrize("held", ["fashion-mnist", "own"])
def test_another_data_set_in_the_folder_given_is_not_written_over(tiny, tmp_path, caplog, monkeypatch, held):
    # Its files were called damaged ("... is damaged; downloading it again.") and replaced, one after another:
    # a folder holding the user's own digits, or Fashion-MNIST (MNIST's file names), lost them to the download.
    spec, base, log, arrays = tiny
    dest = tmp_path / "data"
    own = write_idx_folder(dest, random_idx_arrays(np.random.default_rng(2), 30, 5))
    if held == "fashion-mnist":  # a data set registered under another name, known by its checksums
        fashion = {role: sha256_decompressed(own / spec.files[role]) for role in ROLES}
        monkeypatch.setitem(DATASETS, "tiny-fashion", _with(spec, name="tiny-fashion", sha256=fashion))
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(DatasetError) as info:
        download_dataset("tiny", dest, mirrors=(f"{base}/good/",))
    known = " (tiny-fashion's, by its sha256)" if held == "fashion-mnist" else ""
    assert str(info.value) == (
        f"{dest / spec.files['train_images']} holds other data than tiny's train images{known}; mnistlab does not "
        "write over it: download tiny into another folder, or move the file away."
    )
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before and log == []
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]


def _answering(reply: bytes) -> int:
    """The port of a loopback server that answers each connection with ``reply`` and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with listener:
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize("reply", [b"\x15\x03\x01\x00\x02\x02\x32", b"SSH-2.0-OpenSSH_9.2" + b"x" * 5000 + b"\r\n"])
def test_a_server_that_does_not_answer_in_http_is_said_to_be_one(tmp_path, reply):
    # The error held what the server sent in place of a status line, as it was: the control bytes of a TLS alert
    # (an http:// URL on an https port) or any line up to 64 KiB, and nothing said what was wrong.
    port = _answering(reply)
    with pytest.raises(DownloadError) as info:
        download_dataset("mnist", tmp_path / "d", mirrors=(f"http://127.0.0.1:{port}/",), timeout=5)
    said = str(info.value)
    assert f"127.0.0.1:{port}/train-images-idx3-ubyte.gz: its answer is not HTTP (it began " in said
    assert "; check the mirror's scheme, http or https, and port)" in said
    assert said.isprintable() and len(said) < 400
