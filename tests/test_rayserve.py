"""`mnistlab serve --ray-replicas 2` on a real local Ray runtime: the plain server's answers, from two replicas.

One Ray runtime (two CPUs) serves the module. The command runs in a
subprocess that joins it by address, as it would join a cluster, and serves
a model folder it ships to its replicas; the plain app (``live_server``, the
same model in this process) gives the answers it must match. The first test
runs before the runtime starts; the last stops the command with SIGTERM and
looks for what Serve left on the runtime.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest
import ray
from typer.testing import CliRunner

from mnistlab.cli import app as cli
from mnistlab.errors import NotReadyError
from mnistlab.testing import make_number_photo, make_photo, swapping_link
from mnistlab.web.app import DEFAULT_MAX_UPLOAD_BYTES
from mnistlab.web.rayserve import MnistlabReplica

# Ray Serve's own config models use pydantic features pydantic 2 deprecates: not this project's to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.serve._private.config")

START_TIMEOUT_S = 180.0  # Serve's controller, proxy and two replicas on a busy 2-core machine
READ_TIMEOUT_S = 2  # the deployment's --read-timeout: the longest pause in a request body


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_is_one_line_and_exit_2():
    """First, before the module's runtime starts: with Ray running here the command would use it as it is."""
    assert not ray.is_initialized()
    result = CliRunner().invoke(cli, ["serve", "--ray-replicas", "1", "--cluster", "127.0.0.1:1"])
    assert result.exit_code == 2 and "No Ray cluster answers at 127.0.0.1:1" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_files_shipped_are_one_whole_model_while_a_save_replaces_it(mnist_small, tmp_path):
    """`serve --ray-replicas --model M` while `train --out M` saves into M: the files read for the replicas are one
    model's, never a save's temporary files (shipped along, or gone before they were read: a FileNotFoundError
    traceback) nor one model's card beside the other's weights."""
    from mnistlab.models.files import save_model
    from mnistlab.models.recipes import get_recipe
    from mnistlab.web.rayserve import model_files

    X_train, _, y_train, _ = mnist_small
    for seed in (0, 1):  # two models, saved into one folder by turns by another process
        model = get_recipe("sgd-log").build(seed=seed, n_jobs=1).fit(X_train[:500], y_train[:500])
        save_model(model, tmp_path / f"m{seed}", card={"recipe": "sgd-log", "seed": seed})
    served = tmp_path / "served"
    saves = (
        "import itertools, sys\n"
        "from mnistlab.models.files import load_model, save_model\n"
        "models = [load_model(sys.argv[1]), load_model(sys.argv[2])]\n"
        "save_model(models[0][0], sys.argv[3], card=models[0][1])\n"
        "print('saved', flush=True)\n"
        "for estimator, card in itertools.cycle(models):\n"
        "    save_model(estimator, sys.argv[3], card=card)\n"
    )
    args = [sys.executable, "-c", saves, str(tmp_path / "m0"), str(tmp_path / "m1"), str(served)]
    writer = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "saved\n"
        deadline = time.monotonic() + 5  # before the fix, about half of the reads failed
        for _ in range(150):
            files = model_files(served)
            assert set(files) == {"model.json", "model.skops"}
            card = json.loads(files["model.json"])
            assert hashlib.sha256(files["model.skops"]).hexdigest() == card["weights_sha256"]
            if time.monotonic() > deadline:
                break
    finally:
        writer.kill()
        writer.wait()


def test_the_files_shipped_through_a_swapped_link_are_one_whole_model(mnist_small, tmp_path):
    """`serve --ray-replicas --model current`, a link swapped between two models (`ln -sfn v2 current`) by another
    process: each file was read through the link anew, so the replicas got one model's card beside the other's
    weights; the link is followed once, and the files are one model's."""
    from mnistlab.models.files import save_model
    from mnistlab.models.recipes import get_recipe
    from mnistlab.web.rayserve import model_files

    X_train, _, y_train, _ = mnist_small
    versions = []
    for seed in (0, 1):
        model = get_recipe("sgd-log").build(seed=seed, n_jobs=1).fit(X_train[:500], y_train[:500])
        versions.append(save_model(model, tmp_path / f"v{seed}", card={"recipe": "sgd-log", "seed": seed}))
    current = tmp_path / "current"
    current.symlink_to(versions[0])
    model_files(versions[1])  # each model loaded (and calibrated) once before the swaps
    with swapping_link(current, *versions):
        for _ in range(50):
            files = model_files(current)
            card = json.loads(files["model.json"])
            assert hashlib.sha256(files["model.skops"]).hexdigest() == card["weights_sha256"]


@pytest.fixture(scope="module")
def deployment(runtime, web_model_dir, tmp_path_factory):
    """`mnistlab serve --ray-replicas 2` joined to ``runtime``: the process, its base URL and its stderr file,
    once it says that every replica is ready."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("rayserve") / "stderr.txt"
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--ray-replicas", "2", "--cluster", runtime]
    cmd += ["--model", str(web_model_dir), "--port", str(port), "--read-timeout", str(READ_TIMEOUT_S)]
    with open(log, "w") as stderr, open(log.with_name("stdout.txt"), "w") as stdout:
        server = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while f"Serving 2 replica(s) at {url}" not in log.read_text():
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no deployment within {START_TIMEOUT_S} s: {log.read_text()}"
            time.sleep(0.2)
        assert httpx.get(f"{url}/api/ready", timeout=30).status_code == 200
        yield server, url, log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)


def _post_both(path: str, urls: tuple[str, str], **request) -> tuple[httpx.Response, httpx.Response]:
    return tuple(httpx.post(base + path, timeout=60, **request) for base in urls)  # type: ignore[return-value]


def test_a_photo_gets_the_plain_servers_answer(deployment, live_server, mnist_small):
    _, url, _ = deployment
    _, X_test, _, y_test = mnist_small
    photo = make_photo(X_test[3], np.random.default_rng(0), style="paper")
    ours, plain = _post_both("/api/predict", (url, live_server), files={"file": ("photo.jpg", photo, "image/jpeg")})
    assert ours.status_code == plain.status_code == 200
    assert ours.json() == plain.json() and ours.json()["digit"] == int(y_test[3])
    number = make_number_photo(X_test[:3], np.random.default_rng(1), style="canvas-black-on-white")
    ours, plain = _post_both("/api/read-number", (url, live_server), files={"file": ("n.png", number, "image/png")})
    assert ours.status_code == plain.status_code == 200 and ours.json() == plain.json()
    assert ours.headers["x-content-type-options"] == "nosniff"  # the app's own security headers, through the proxy


def test_both_replicas_answer_with_the_model_they_were_sent(deployment):
    server, url, _ = deployment
    workers = set()
    for _ in range(100):  # Serve's router picks the less loaded of two replicas: both answer soon
        health = httpx.get(f"{url}/api/health", timeout=30).json()
        assert health["model"] == "knn-deskew"
        workers.add(health["worker"])
        if len(workers) == 2:
            break
    assert len(workers) == 2 and server.pid not in workers


@pytest.mark.parametrize(
    "path, request_args",
    [
        ("/api/predict", {"content": b"not an image", "headers": {"content-type": "image/png"}}),
        ("/api/predict", {"files": {"file": ("notes.txt", b"hello, this is text\n", "text/plain")}}),
        ("/api/predict", {"content": b"{pixels: [1, 2", "headers": {"content-type": "application/json"}}),
        ("/api/no/such/route", {"content": b""}),
    ],
)
def test_a_junk_request_gets_the_plain_servers_refusal(deployment, live_server, path, request_args):
    _, url, _ = deployment
    ours, plain = _post_both(path, (url, live_server), **request_args)
    assert 400 <= ours.status_code < 500 and ours.status_code == plain.status_code
    assert ours.json() == plain.json() and ours.json()["detail"].endswith(".")


def _stalled_upload(url: str) -> socket.socket:
    """An upload that sends the start of its form, then nothing more; its connection left open."""
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    head = b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    sock = socket.create_connection(("127.0.0.1", int(url.rpartition(":")[2])), timeout=60)
    sock.sendall(head + b"Content-Length: 100000\r\n\r\n" + part + b"\x89PNG")
    return sock


def test_stalled_uploads_get_408_and_do_not_hold_the_replicas(deployment):
    # Serve's proxy passes a body on as it comes, without a time limit: twelve stalled uploads held the two
    # replicas' request slots (five each) for as long as their clients liked, and no one else was answered.
    _, url, _ = deployment
    stalled = [_stalled_upload(url) for _ in range(12)]
    try:
        start = time.monotonic()
        answer = httpx.post(f"{url}/api/predict", json={"pixels": [0] * 784}, timeout=30)
        assert answer.status_code == 200 and time.monotonic() - start < 4 * READ_TIMEOUT_S + 10
        reply = b""
        while chunk := stalled[0].recv(65536):  # the answer, then the connection closed
            reply += chunk
    finally:
        for sock in stalled:
            sock.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"x-content-type-options: nosniff" in head.lower()
    assert json.loads(body) == {
        "detail": f"The request body did not arrive in time (pauses of at most {READ_TIMEOUT_S} s, 1024 bytes/s at "
        "least); send it again."
    }


def test_bad_values_are_one_line_and_exit_2(runtime, tmp_path):
    """Refused before anything is deployed (Ray runs in this process: the command uses it as it is)."""
    port = ("--port", str(_free_port()))  # the port is checked first: a program on 8000 would answer for them
    cases = {
        ("--ray-replicas", "0"): "--ray-replicas",
        ("--ray-replicas", "2", "--workers", "2"): "exclude each other",
        ("--cluster", "local"): "--cluster needs --ray-replicas",
        ("--ray-replicas", "3", *port): "needs 3 CPUs",
        ("--ray-replicas", "1", "--model", str(tmp_path / "no-such-model"), *port): "no-such-model",
    }
    for args, words in cases.items():
        result = CliRunner().invoke(cli, ["serve", *args])
        assert result.exit_code == 2 and words in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_second_deployment_on_the_same_cluster_is_refused(deployment):
    result = CliRunner().invoke(cli, ["serve", "--ray-replicas", "1", "--port", str(_free_port())])
    assert result.exit_code == 2 and "Ray Serve already runs on this cluster" in result.output, result.output


def test_the_health_check_says_what_api_ready_says():
    """Serve's health check of a replica, run here on the replica class: passes once the app has started,
    raises the route's own NotReadyError when the model is not there."""
    replica = MnistlabReplica(None, DEFAULT_MAX_UPLOAD_BYTES, None)
    app = replica.__serve_build_asgi_app__()

    async def check() -> None:
        async with app.router.lifespan_context(app):  # as Serve starts it
            await replica.check_health()
            app.state.served, app.state.load_error = None, "The model files were removed."
            with pytest.raises(NotReadyError, match="removed"):
                await replica.check_health()

    anyio.run(check)


_TGKILL = {"x86_64": 234, "aarch64": 131}  # the tgkill system call's number: a signal to one thread of a process


def _signal_a_thread_not_the_main_one(pid: int, *signals: int) -> None:
    """Send ``signals`` to one of process ``pid``'s threads other than its main one, that does not block them."""
    number = _TGKILL.get(os.uname().machine)
    if number is None:
        pytest.skip(f"tgkill's system call number on {os.uname().machine} is not known here")
    libc = ctypes.CDLL(None, use_errno=True)
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        blocked = int(re.search(r"SigBlk:\s*([0-9a-f]+)", status)[1], 16)
        if not any(blocked >> (sig - 1) & 1 for sig in signals):
            for sig in signals:
                assert libc.syscall(number, pid, tid, int(sig)) == 0, os.strerror(ctypes.get_errno())
            return
    pytest.fail(f"every thread of {pid} but its main one blocks {signals}")


def test_sigterm_shuts_the_deployment_down(deployment):
    """Last: stops the module's deployment. Nothing of Serve is left on the runtime, and the CPUs are free. Nothing
    was printed on stdout: Serve's shutdown was reported there by Ray, in colour, as a failure ("(raylet) Task
    ServeController.graceful_shutdown failed. ... The actor is dead because it was killed by `ray.kill`.").
    A second signal on the heels of the first (`timeout` sends its signal to the command and to its process group,
    a user presses Ctrl+C twice) ended the shutdown in a traceback of the handler's ``_Stop``, raised again in the
    ``finally`` that was about to ignore it. Both handed to one of Ray's threads, as the system does with the second
    when the main thread has one pending and is not running, the command slept on for an hour."""
    server, url, log = deployment
    _signal_a_thread_not_the_main_one(server.pid, signal.SIGTERM, signal.SIGINT)
    assert server.wait(120) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    assert log.with_name("stdout.txt").read_text() == ""
    left = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve"]
    assert left == []
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2:  # a killed actor's CPU returns a moment later
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/api/health", timeout=5)


def test_replicas_beyond_the_free_cpus_are_refused_not_waited_for(runtime):
    """After the deployment is gone: another job holds one of the two CPUs. Serve waited without a word, and
    without end, for a second replica's CPU; refused at once."""

    @ray.remote(num_cpus=1)
    class Busy:
        def ping(self) -> int:
            return 1

    busy = Busy.remote()
    try:
        ray.get(busy.ping.remote(), timeout=60)
        deadline = time.monotonic() + 30  # the resource view catches up with the actor a moment later
        while ray.available_resources().get("CPU", 0) > 1:
            assert time.monotonic() < deadline, ray.available_resources()
            time.sleep(0.2)
        cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--ray-replicas", "2", "--cluster", runtime]
        result = subprocess.run([*cmd, "--port", str(_free_port())], capture_output=True, text=True, timeout=120)
    finally:
        ray.kill(busy)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "Error: 2 replica(s) need 2 CPUs (one each), and 1 of the cluster's 2 are free (other work holds the "
        "rest); ask for fewer replicas, add nodes, or wait for that work to end.\n"
    )
    assert [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve"] == []
