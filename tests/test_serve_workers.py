"""``mnistlab serve --workers 2`` in a subprocess: two processes answer, SIGTERM finishes what is in flight;
``/api/ready`` for load balancers."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mnistlab.testing import running_server
from mnistlab.web.app import create_app

PATIENCE = 60.0  # seconds: far above what any step takes, far below "forever"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _wait_for(log: list[str], text: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not any(text in line for line in log):
        assert time.monotonic() < deadline, f"{text!r} never appeared in the server's log:\n" + "".join(log)
        time.sleep(0.05)


@pytest.mark.parametrize(("n_workers", "access_log"), [(2, True), (1, False)])
def test_workers_answer_and_sigterm_finishes_the_request_in_flight(n_workers, access_log):
    port = _free_port()
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--workers", str(n_workers), "--port", str(port)]
    cmd += ["--access-log"] if access_log else []
    # uvicorn logs to stderr, and its access lines to stdout: one log of both
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + PATIENCE
        while len(workers) < n_workers:  # each request on a new connection, which the kernel hands to any worker
            assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
            try:
                ready = httpx.get(f"{url}/api/ready", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert ready.status_code == 200, ready.text
            workers.add(ready.json()["worker"])
        assert all(_parent_of(pid) == proc.pid for pid in workers) if n_workers > 1 else workers == {proc.pid}
        assert f"on {url} " in "".join(log), "".join(log)  # where to point a browser, as uvicorn's own line says

        body = json.dumps({"pixels": [0] * 784}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
            head = f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            sock.sendall(head.encode() + body[:100])  # the request is in flight: head and part of the body sent
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            _wait_for(log, "Shutting down")
            sock.sendall(body[100:])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"200", answer[:300]
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["digit"] in range(10)
        # The parent of workers exits 0; a lone uvicorn server re-raises the SIGTERM it caught once it is
        # done, which `mnistlab` ends as 128 + SIGTERM, as a shell reports a process that SIGTERM ended.
        assert proc.wait(PATIENCE) == (0 if n_workers > 1 else 128 + signal.SIGTERM)
        assert not any(Path(f"/proc/{pid}").exists() and _parent_of(pid) == proc.pid for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    assert "Traceback" not in "".join(log), "".join(log)
    # One line per request with --access-log (the readiness probes), none without.
    assert any('"GET /api/ready HTTP/1.1" 200' in line for line in log) == access_log, "".join(log)


def test_ready_says_503_with_the_reason_while_there_is_no_model(tmp_path):
    with running_server(create_app(tmp_path)) as url:  # an empty folder: no model card in it
        deadline = time.monotonic() + PATIENCE
        while (ready := httpx.get(f"{url}/api/ready", timeout=PATIENCE)).status_code == 503:
            if "model.json" in ready.json()["detail"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready.status_code == 503
        assert str(tmp_path) in ready.json()["detail"]
        health = httpx.get(f"{url}/api/health", timeout=PATIENCE)
        assert health.status_code == 200 and health.json()["model"] is None  # alive, not ready
        refused = httpx.post(f"{url}/api/predict", json={"pixels": [0] * 784}, timeout=PATIENCE)
        assert refused.status_code == 503 and refused.json()["detail"] == ready.json()["detail"]


def test_a_503_says_when_to_ask_again_only_while_the_model_loads(tmp_path, monkeypatch):
    """The 503 "still loading" carried no Retry-After, unlike the busy server's 503: a load balancer, a client or
    the page could not tell when to ask again. It says so now while the model loads; once the load has failed it
    says nothing, as the answer will not change until the server is restarted with a model that works."""
    from mnistlab.web import app as web_app
    from mnistlab.web import routes

    loading, load = threading.Event(), web_app.ready_predictor

    def held_load(model):
        loading.wait(PATIENCE)  # the load runs once the test lets it
        return load(model)

    monkeypatch.setattr(web_app, "ready_predictor", held_load)
    monkeypatch.setattr(routes, "LOAD_WAIT", 0.2)  # a prediction waits this long for the model, then 503
    pixels = {"pixels": [0] * 784}
    with running_server(web_app.create_app(tmp_path)) as url:  # an empty folder: the load fails once let go
        ready = httpx.get(f"{url}/api/ready", timeout=PATIENCE)
        refused = httpx.post(f"{url}/api/predict", json=pixels, timeout=PATIENCE)
        for answer in (ready, refused):
            assert answer.status_code == 503 and "still loading" in answer.json()["detail"], answer.text
            assert answer.headers["retry-after"] == str(routes.LOADING_RETRY_AFTER) == "2"
        loading.set()
        deadline = time.monotonic() + PATIENCE
        while "still loading" in (ready := httpx.get(f"{url}/api/ready", timeout=PATIENCE)).json()["detail"]:
            assert time.monotonic() < deadline, "the load did not fail"
            time.sleep(0.05)
        refused = httpx.post(f"{url}/api/predict", json=pixels, timeout=PATIENCE)
        for answer in (ready, refused):
            assert answer.status_code == 503 and "model.json" in answer.json()["detail"], answer.text
            assert "retry-after" not in answer.headers


def test_ready_says_200_once_the_model_answers():
    with running_server(create_app(None)) as url:  # the shipped reader
        answer = httpx.post(f"{url}/api/predict", json={"pixels": [0] * 784}, timeout=PATIENCE)
        assert answer.status_code == 200  # a request made while the model loads waits for it
        ready = httpx.get(f"{url}/api/ready", timeout=PATIENCE)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        health = httpx.get(f"{url}/api/health", timeout=PATIENCE).json()
        assert health["model"] == "mnistlab default reader"  # loaded: named, not null as while it loads


def test_workers_on_a_taken_port_is_one_error_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--workers", "2", "--port", str(port)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=PATIENCE)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: Cannot listen on 127.0.0.1 port {port}") and result.stderr.count("\n") == 1


def test_workers_forked_after_the_model_ran_in_the_parent_get_ready_and_answer(tmp_path, mnist_small):
    """A k-NN model saved without its probability cut is calibrated in the parent before the workers fork, on
    scikit-learn's GNU OpenMP threads, which do not survive a fork: each worker's check of the model waited for
    them forever, and `serve --workers 2` was never ready."""
    import os

    import numpy as np

    from mnistlab import get_recipe
    from mnistlab.models.files import save_model
    from mnistlab.testing import make_photo

    X_train, X_test, y_train, y_test = mnist_small
    knn = get_recipe("knn-deskew").build(0, 1).fit(X_train[:1000], y_train[:1000])
    save_model(knn, tmp_path / "knn", card={"recipe": "knn-deskew"})  # no cut: the parent measures one
    port = _free_port()
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--model", str(tmp_path / "knn"), "--workers", "2"]
    proc = subprocess.Popen([*cmd, "--port", str(port)], stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + PATIENCE
        while len(workers) < 2:  # each request on a new connection, which the kernel hands to any worker
            assert proc.poll() is None and time.monotonic() < deadline, "the workers were never ready"
            try:
                ready = httpx.get(f"{url}/api/ready", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if ready.status_code == 200:
                workers.add(ready.json()["worker"])
        photo = make_photo(X_test[0], np.random.default_rng(0))
        answer = httpx.post(f"{url}/api/predict", files={"file": ("d.jpg", photo, "image/jpeg")}, timeout=PATIENCE)
        assert answer.status_code == 200 and answer.json()["digit"] == y_test[0], answer.text
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.wait(10)


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _parent_of(int(entry.name)) == pid:
                    found.add(int(entry.name))
            except (OSError, IndexError):  # gone meanwhile
                pass
    return found


@contextlib.contextmanager
def _two_workers(port: int):
    """``mnistlab serve --workers 2`` on ``port``, once both workers are ready: (the process, its log lines as they
    come, the workers' pids). It and its workers are killed on leaving."""
    import os

    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while len(workers := _children_of(proc.pid)) < 2 or httpx.get(f"http://127.0.0.1:{port}/api/ready").is_error:
            assert proc.poll() is None and time.monotonic() < deadline, "the workers were never ready"
            time.sleep(0.1)
        yield proc, log, workers
    finally:
        with contextlib.suppress(ProcessLookupError):  # all gone, where they should be
            os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.wait(10)
        reader.join(10)


def test_sigterm_while_a_dead_worker_waits_to_be_replaced_stops_the_server():
    """A worker that dies within a second of its start is replaced after a pause; a SIGTERM that came during that
    pause was passed to the workers then alive, and the pause ended by starting a new worker that no one told to
    stop: the server went on serving and ``mnistlab serve`` never exited. Now nothing is started once it stops.
    The log names how each worker ended: it said "exited (status 9)", os.wait's raw status, for a SIGKILL."""
    import os

    port = _free_port()
    with _two_workers(port) as (proc, log, workers):
        deadline = time.monotonic() + PATIENCE
        os.kill(min(workers), signal.SIGKILL)  # an old worker dies: replaced at once
        while not (new := _children_of(proc.pid) - workers):
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.005)
        _wait_for(log, f"Worker {min(workers)} was killed by SIGKILL; starting another.")
        os.kill(new.pop(), signal.SIGKILL)  # its replacement dies at once: the next one waits for the pause
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # during the pause
        try:
            proc.wait(PATIENCE / 3)
        except subprocess.TimeoutExpired:
            pytest.fail(f"mnistlab serve still runs after SIGTERM, with workers {sorted(_children_of(proc.pid))}")


class _FailsOnEveryImage:
    """A fitted estimator of the user's own code whose predict_proba raises what mnistlab never raises."""

    classes_ = list(range(10))

    def predict_proba(self, X):
        raise RuntimeError("the user's layer 3 failed\nsecond line of its message")


def test_a_model_that_fails_with_its_own_error_when_loaded_is_a_503_that_says_so_not_loading_forever():
    """A model whose own code raised (not a mnistlab error) at its load left the server "still loading" for
    good: every request waited, then 503 "try again in a few seconds", and the reason went nowhere."""
    with running_server(create_app(_FailsOnEveryImage())) as url:
        deadline = time.monotonic() + PATIENCE
        while "still loading" in (ready := httpx.get(f"{url}/api/ready", timeout=PATIENCE)).json()["detail"]:
            assert time.monotonic() < deadline, "the server never said that the load failed"
            time.sleep(0.05)
        refused = httpx.post(f"{url}/api/predict", json={"pixels": [0] * 784}, timeout=PATIENCE)
        for answer in (ready, refused):
            assert answer.status_code == 503 and "retry-after" not in answer.headers, answer.text
            detail = answer.json()["detail"]
            assert detail.startswith("The model failed when it was loaded (RuntimeError: the user's layer 3 failed)")
            assert "second line" not in detail and detail.endswith("restart the server.")


def test_workers_stop_when_their_parent_is_killed_outright():
    """``kill -9`` of ``mnistlab serve --workers 2`` (the OOM killer, a supervisor's timeout) left both workers
    running, orphaned: still serving on the port, none replaced when one died, and a new ``serve`` on that port
    refused. Now each gets SIGTERM when its parent dies, and stops."""

    port = _free_port()
    with _two_workers(port) as (proc, _, workers):
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while alive := {pid for pid in workers if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"}:
            assert time.monotonic() < deadline, f"workers {sorted(alive)} outlived their parent"
            time.sleep(0.05)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # gone meanwhile
        return "Z"


def test_workers_refuse_a_port_another_server_shares_with_so_reuseport():
    """Two `serve --workers 2` started together on one port (both checked it free, then loaded their models) both
    served: the parent's last check bound with SO_REUSEPORT, which another such server of the same user passes,
    and the kernel split the clients between two servers. Now that check refuses any listener, one line."""
    import os

    with socket.socket() as other:  # another server's worker: SO_REUSEPORT, listening
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code = f"from mnistlab.web import serve; serve(None, '127.0.0.1', {port}, workers=2)"
        proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=PATIENCE / 3)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve(workers=2) serves on port {port}, which another server listens on")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the workers too
            proc.wait(10)
    assert proc.returncode == 1 and f"ParameterError: Cannot listen on 127.0.0.1:{port}" in stderr, stderr


def test_serve_from_python_refuses_a_taken_port_or_a_foreign_host_with_a_mnistlab_error():
    """mnistlab.web.serve() on a port in use (a notebook's second serve()), on port -1 or on a host of no address
    here loaded the model, then raised uvicorn's SystemExit (1 or 3) after its log line; now each is one
    ParameterError, raised before the model loads."""
    code = (
        "import sys\n"
        "from mnistlab.web import serve\n"
        "for kwargs in eval(sys.argv[1]):\n"
        "    try:\n"
        "        serve(None, **kwargs)\n"
        "    except BaseException as exc:\n"
        "        print(type(exc).__name__, exc, flush=True)\n"
        "from mnistlab.trust.reader import _READERS\n"
        "print('readers loaded:', len(_READERS))\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        tries = [{"port": port}, {"port": -1}, {"port": 70000}, {"host": "256.1.1.1", "port": port + 1}]
        result = subprocess.run(
            [sys.executable, "-c", code, repr(tries)], capture_output=True, text=True, timeout=PATIENCE
        )
    assert result.stdout.splitlines() == [
        f"ParameterError Cannot listen on 127.0.0.1:{port} (Address already in use); choose another port, or stop "
        "what holds it.",
        "ParameterError port must be a whole number from 1 to 65535, got -1.",
        "ParameterError port must be a whole number from 1 to 65535, got 70000.",
        "ParameterError host '256.1.1.1' is not an address of this machine (Name or service not known); use "
        "127.0.0.1 or 0.0.0.0.",
        "readers loaded: 0",
    ], result.stdout + result.stderr


def test_serve_from_python_refuses_limits_that_are_no_connection_limits():
    """serve(limits=5) served: every connection then hung unanswered, an AttributeError ('int' object has no
    attribute 'read_timeout') in the log for each."""
    code = f"from mnistlab.web import serve; serve(None, port={_free_port()}, limits=5)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE)
    last = result.stderr.splitlines()[-1]
    assert last == "mnistlab.errors.ParameterError: limits must be a ConnectionLimits or None, got 5.", result.stderr


def test_serve_from_python_refuses_an_access_log_flag_given_a_string():
    """serve(access_log="no") served with a log line for every request: "no" is truthy."""
    code = f"from mnistlab.web import serve; serve(None, port={_free_port()}, access_log='no')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE)
    last = result.stderr.splitlines()[-1]
    assert last == "mnistlab.errors.ParameterError: access_log must be True or False, got 'no'.", result.stderr


def test_serve_from_python_holds_workers_to_the_clis_bound():
    """serve(workers=10**6) went on forking servers, each holding the model (--workers stops at 256); the port is
    taken here, so that the old code stopped at its check of the port instead of forking."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = f"from mnistlab.web import serve; serve(None, port={taken.getsockname()[1]}, workers=10**6)"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE)
    last = result.stderr.splitlines()[-1]
    assert last == "mnistlab.errors.ParameterError: workers must be a whole number from 1 to 256, got 1000000.", last


def test_a_worker_that_cannot_start_says_why():
    """A replacement worker that could not listen (another program took the port once every worker had died)
    exited without a word, and the log said only "Worker N exited with code 1; starting another.", each second."""
    import os

    port = _free_port()
    with _two_workers(port) as (proc, log, _):
        deadline = time.monotonic() + PATIENCE
        with socket.socket() as taker:  # every worker killed, then the port taken before the replacements bind it
            taker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            while True:
                assert time.monotonic() < deadline, "the port was never free of workers"
                for pid in _children_of(proc.pid):
                    with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    taker.bind(("127.0.0.1", port))
                    break
            taker.listen()
            _wait_for(log, f"Cannot listen on 127.0.0.1:{port} (Address already in use)")
    assert "Traceback" not in "".join(log), "".join(log)


def test_a_closed_terminal_ends_the_server_without_a_traceback():
    """The CLI ends a command on SIGHUP as on SIGTERM; uvicorn stops on SIGINT and SIGTERM alone, so a server keeps
    SIGHUP's default (it ends at once), not a SystemExit raised into its event loop (two tracebacks)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        _wait_for(log, "Uvicorn running")
        proc.send_signal(signal.SIGHUP)
        proc.wait(PATIENCE)
        reader.join(PATIENCE)
        assert "Traceback" not in "".join(log), "".join(log)
    finally:
        proc.kill()
        proc.wait(10)
