"""`compare --cluster` on a real local Ray runtime: the same answers as in-process, each run recorded once.

One Ray runtime (two CPUs) serves the module; it starts in seconds, so the
tests share it and it stops at the end. The CLI tests run in subprocesses
that join it by address, as a user joins a cluster.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mnistlab.errors import ClusterError, RecipeError
from mnistlab.lab.compare import compare
from mnistlab.lab.tracking import Tracker
from mnistlab.models.files import load_model
from mnistlab.testing.cli import run_cli

ray = pytest.importorskip("ray")

SETTINGS = {"limit": 300, "n_jobs": 1, "cv": 0}
FLAGS = ["--limit", "300", "--n-jobs", "1", "--cv", "0"]
USER_FILE = """
from sklearn.linear_model import LogisticRegression


def build(seed):
    return LogisticRegression(max_iter=50, random_state=seed)
"""


@pytest.fixture(scope="module")
def in_process(tmp_path_factory, _empty_store):
    """Two recipes x 2 seeds fitted here, without a cluster: the answers a cluster must give."""
    root = tmp_path_factory.mktemp("local")
    shutil.copyfile(_empty_store, root / "mlflow.db")  # a new store, without its migrations again
    summary = compare(
        ["logreg", "knn"],
        seeds=2,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        out_dir=root / "report",
        **SETTINGS,
    )
    return {r["model"]: r["test_accuracies"] for r in summary["results"]}


def _accuracies(summary: dict) -> dict:
    return {r["model"]: r["test_accuracies"] for r in summary["results"]}


def _runs(uri: str) -> list[tuple]:
    return sorted((r["model"], r["seed"]) for r in Tracker(uri).runs())


def test_a_cluster_comparison_gives_the_local_answers_and_records_each_run_once(
    runtime, in_process, tmp_path, made_store
):
    (tmp_path / "mine.py").write_text(USER_FILE)
    uri = made_store(tmp_path / "mlflow.db")
    specs = ["logreg", "knn", f"{tmp_path / 'mine.py'}:build"]  # a user's file: its code travels with the task
    summary = compare(specs, seeds=2, tracking_uri=uri, out_dir=tmp_path / "report", cluster="local", **SETTINGS)
    accuracies = _accuracies(summary)
    assert {m: accuracies[m] for m in in_process} == in_process
    assert all(0.5 < a < 1 for a in accuracies["mine.py:build"])
    expected = sorted((m, s) for m in ("logreg", "knn", "mine.py:build") for s in (42, 43))
    assert _runs(uri) == expected
    # The model files came back from the workers into the report folder and load as saved.
    for run in summary["runs"]:
        estimator, card = load_model(run["model_dir"])
        assert card["seed"] == run["seed"] and Path(run["model_dir"]).is_relative_to(tmp_path / "report")
    # Again: every unit is reused from the store, no task runs and nothing is recorded twice.
    again = compare(specs, seeds=2, tracking_uri=uri, out_dir=tmp_path / "report", cluster="local", **SETTINGS)
    assert _accuracies(again) == accuracies and all(r["reused"] == 2 for r in again["results"])
    assert _runs(uri) == expected


def test_the_cli_joins_a_cluster_by_ray_address(runtime, in_process, tmp_path, made_store):
    uri = made_store(tmp_path / "mlflow.db")
    args = ["compare", "logreg", "knn", "--seeds", "2", *FLAGS, "--out", str(tmp_path / "r"), "--tracking-uri", uri]
    done = run_cli([*args, "--json"], env={"RAY_ADDRESS": runtime})
    assert done.returncode == 0, done.stderr
    assert _accuracies(json.loads(done.stdout)) == in_process
    assert _runs(uri) == sorted((m, s) for m in ("logreg", "knn") for s in (42, 43))


def test_a_cluster_run_records_its_model_folders_whole_so_runs_from_other_folders_reuse_them(
    runtime, tmp_path, monkeypatch, made_store
):
    # Written as the driver's --out named them (relative), the recorded folders were not found from another
    # folder: every unit was fitted again there, where a local run's were reused.
    uri = made_store(tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    first = compare("logreg", tracking_uri=uri, out_dir="report", cluster="local", **SETTINGS)
    assert [run["model_dir"] for run in first["runs"]] == [str(tmp_path / "report/models/mnist/logreg/seed-42")]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = compare("logreg", tracking_uri=uri, out_dir="../report", cluster="local", **SETTINGS)
    assert again["results"][0]["reused"] == 1 and _runs(uri) == [("logreg", 42)]


BROKEN_FILE = """
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Broken(ClassifierMixin, BaseEstimator):
    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        raise RuntimeError("broken on purpose")

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


def build(seed):
    return Broken(random_state=seed)
"""


def test_a_fit_that_fails_on_the_cluster_is_one_sentence_once_the_other_fits_are_recorded(
    runtime, tmp_path, made_store
):
    # Its failure cancelled the fits still running or queued: none of the other models' results was kept.
    (tmp_path / "broken.py").write_text(BROKEN_FILE)
    uri = made_store(tmp_path / "mlflow.db")
    specs = [f"{tmp_path / 'broken.py'}:build", "logreg", "knn"]  # two CPUs: knn waits while the others run
    with pytest.raises(RecipeError) as error:
        compare(specs, tracking_uri=uri, out_dir=tmp_path / "r", cluster="local", **SETTINGS)
    assert str(error.value) == (
        "mnist seed 42: broken.py:build failed (RuntimeError: broken on purpose); fix the classifier's code."
    )
    assert _runs(uri) == [("knn", 42), ("logreg", 42)]  # kept, for the next run to reuse


def test_a_module_the_workers_cannot_import_is_one_sentence_saying_what_to_do(runtime, tmp_path, monkeypatch):
    # The runtime's workers have the driver's sys.path as it was when Ray started: a module put on it later is
    # importable here only, as a module in one machine's folder is on a cluster. Said as "the fit failed on the
    # cluster (RaySystemError: System error: No module named ...)", with nothing to do about it.
    (tmp_path / "only-here").mkdir()
    (tmp_path / "only-here" / "only_here_models.py").write_text(USER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path / "only-here"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ClusterError) as error:
        compare("only_here_models:build", tracking_uri=uri, out_dir=tmp_path / "r", cluster="local", **SETTINGS)
    assert str(error.value) == (
        "mnist seed 42: only_here_models:build: the cluster's workers cannot import the module 'only_here_models' "
        "the model needs; install it on every node, or give your own model as path/to/file.py:callable, whose "
        "code travels with its tasks."
    )


def test_a_users_file_takes_the_modules_beside_it_to_the_workers(runtime, tmp_path, made_store):
    # README: a file.py:callable imports the modules beside it, and its code travels with its tasks. The file
    # travelled, the module beside it did not: "the cluster's workers cannot import the module 'near_helpers'
    # ... give your own model as path/to/file.py:callable", which it was.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "near_helpers.py").write_text(USER_FILE)
    (tmp_path / "mine" / "top.py").write_text(
        "from near_helpers import build as made\n\n\ndef build(seed):\n    return made(seed)\n"
    )
    uri = made_store(tmp_path / "mlflow.db")
    spec = f"{tmp_path / 'mine' / 'top.py'}:build"
    summary = compare(spec, seeds=2, tracking_uri=uri, out_dir=tmp_path / "r", cluster="local", **SETTINGS)
    here = compare(spec, seeds=2, tracking_uri=uri, out_dir=tmp_path / "r2", retrain=True, **SETTINGS)
    assert _accuracies(summary)["top.py:build"] == _accuracies(here)["top.py:build"]
    assert all(0.5 < a < 1 for a in _accuracies(summary)["top.py:build"])


def test_fits_asking_for_more_cpus_than_any_node_has_are_refused_not_queued(runtime, tmp_path):
    # Ray kept such a task queued without a word and without end: compare --n-jobs 4 on two CPUs never returned.
    store = tmp_path / "mlflow.db"
    args = ["compare", "logreg", "--limit", "300", "--cv", "0", "--n-jobs", "4", "--out", str(tmp_path / "r")]
    done = run_cli([*args, "--tracking-uri", f"sqlite:///{store}"], env={"RAY_ADDRESS": runtime}, timeout=90)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: --n-jobs 4 asks for 4 CPUs per fit, and the largest node of the cluster has 2; give --n-jobs 2 or less."
    )
    assert not store.exists()


def test_sigterm_while_the_fits_run_on_a_local_runtime_exits_143(tmp_path, made_store):
    # Ray's wait, in a process that started its own runtime, turned the SystemExit(143) of the command's SIGTERM
    # handler into SystemExit(1): a job scheduler saw exit code 1, a bug's, for a run it had stopped itself.
    args = ["compare", "logreg", "knn", "--limit", "3000", "--seeds", "2", "--out", str(tmp_path / "r")]
    args += ["--cluster", "local"]
    command = [sys.executable, "-m", "mnistlab.cli", *args, "--tracking-uri", made_store()]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stderr is not None
        for line in run.stderr:  # each step's line comes when it is done: the fit runs on the cluster now
            if "submitted to the cluster" in line:
                break
        time.sleep(2)  # into Ray's wait for the fits (no line says it waits; the fits take 10 s and more)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once the socket closes: nothing listens there


@pytest.mark.parametrize("address", ["ray://127.0.0.1:{port}", "nohost", "127.0.0.1:99999"])
def test_an_address_that_does_not_answer_is_one_sentence_and_records_nothing(tmp_path, address):
    store = tmp_path / "mlflow.db"
    address = address.format(port=_closed_port())
    args = ["compare", "logreg", *FLAGS, "--out", str(tmp_path / "r"), "--tracking-uri", f"sqlite:///{store}"]
    done = run_cli([*args, "--cluster", address])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in done.stderr, done.stderr
    says = ("No Ray cluster answers", "names no host and port", "names port 99999, outside 1-65535")
    assert any(s in lines[0] for s in says), lines[0]
    assert not store.exists() and not (tmp_path / "r" / "models").exists()


def test_an_address_where_something_else_listens_is_one_sentence_in_seconds(tmp_path):
    # A socket that accepts and never speaks (not a Ray head): ray.init would retry with no deadline.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        args = [
            "compare",
            "logreg",
            *FLAGS,
            "--out",
            str(tmp_path / "r"),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 's.db'}",
        ]
        start = time.monotonic()
        done = run_cli([*args, "--cluster", f"127.0.0.1:{port}"], timeout=60)
    assert done.returncode == 2 and time.monotonic() - start < 30
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: Something listens at 127.0.0.1:{port}, but not a Ray head"), done.stderr


def test_another_grpc_server_or_the_other_ray_port_is_one_sentence_in_seconds(runtime, tmp_path):
    # ray.init kept asking such a server for a cluster id, a line of its own each second: past this test's 90 s
    # for a gRPC server that is not Ray's, 20 s for a head's Ray Client port given without ray://; ray:// before
    # a head's own port waited 30 s for Ray Client's timeout.
    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=1))  # a gRPC server with no service of Ray's
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    args = [
        "compare",
        "logreg",
        *FLAGS,
        "--out",
        str(tmp_path / "r"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 's.db'}",
    ]
    cases = {
        f"127.0.0.1:{port}": f"Error: A gRPC server answers at 127.0.0.1:{port}, but not a Ray head; check --cluster",
        f"ray://{runtime}": f"Error: ray://{runtime} is a Ray head's own port, not its Ray Client server; give {runtime} "
        "without ray://",
    }
    try:
        for address, says in cases.items():
            start = time.monotonic()
            done = run_cli([*args, "--cluster", address], timeout=90)
            assert done.returncode == 2 and time.monotonic() - start < 30, done.stderr
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith(says), line
    finally:
        server.stop(None)
    assert not (tmp_path / "s.db").exists()


SLOW_FILE = """
import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

MARKS = None  # the test's folder: a fit that starts leaves its worker's pid there


class Slow(ClassifierMixin, BaseEstimator):
    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y):
        Path(MARKS, f"slow-{os.getpid()}").touch()
        time.sleep(600)
        return self

    def predict(self, X):
        return np.zeros(len(X), dtype=int)


def build(seed):
    return Slow(random_state=seed)
"""


def test_an_interrupted_run_cancels_its_cluster_tasks(runtime, tmp_path, made_store, process_running):
    """Ctrl-C in the driver (here: raised when the first fit is in) stops the fit still running on the cluster."""
    _write_slow_file(tmp_path)
    uri = made_store(tmp_path / "mlflow.db")

    def interrupt(row: dict) -> None:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("slow-*")):  # Ctrl-C once the slow fit runs
            assert time.monotonic() < deadline, "the slow fit did not start"
            time.sleep(0.2)
        raise KeyboardInterrupt

    specs = ["logreg", f"{tmp_path / 'slow.py'}:build"]
    with pytest.raises(KeyboardInterrupt):
        compare(specs, tracking_uri=uri, out_dir=tmp_path / "r", cluster="local", on_result=interrupt, **SETTINGS)
    assert _runs(uri) == [("logreg", 42)]  # the fit that finished is kept, for the next run to reuse
    _slow_fits_ended_and_cpus_free(tmp_path, process_running)


def test_ctrl_c_while_the_fits_go_out_cancels_those_already_submitted(runtime, tmp_path, made_store, process_running):
    """Ctrl-C (here: raised as the reused logreg run comes in, once the slow fit submitted before it runs)
    cancels that fit: only fits submitted before the first one was collected were cancelled."""
    _write_slow_file(tmp_path)
    uri = made_store(tmp_path / "mlflow.db")
    compare("logreg", tracking_uri=uri, out_dir=tmp_path / "r", cluster="local", **SETTINGS)  # reused below

    def interrupt(row: dict) -> None:
        deadline = time.monotonic() + 60
        while ray.available_resources().get("CPU", 0) == 2:  # once the slow fit holds its CPU
            assert time.monotonic() < deadline, ray.available_resources()
            time.sleep(0.2)
        raise KeyboardInterrupt

    specs = [f"{tmp_path / 'slow.py'}:build", "logreg"]  # the slow fit is submitted first, then logreg looked up
    with pytest.raises(KeyboardInterrupt):
        compare(specs, tracking_uri=uri, out_dir=tmp_path / "r", cluster="local", on_result=interrupt, **SETTINGS)
    _slow_fits_ended_and_cpus_free(tmp_path, process_running)


def _write_slow_file(folder: Path) -> None:
    (folder / "slow.py").write_text(SLOW_FILE.replace("MARKS = None", f"MARKS = {str(folder)!r}"))


def _slow_fits_ended_and_cpus_free(marks: Path, running) -> None:
    """Every slow fit that started has ended (it would hold its CPU 10 minutes), then the head counts both CPUs
    free. The head's view lags the node's: read as the cancel returns, it could still say 2 from before the fit
    held its CPU, and a second read 0 (CI failed so once); the worker's process is the node's own word."""
    deadline = time.monotonic() + 60
    for mark in marks.glob("slow-*"):
        while running(int(mark.name.split("-")[1])):
            assert time.monotonic() < deadline, f"the slow fit's worker ({mark.name}) still runs"
            time.sleep(0.2)
    while (free := ray.available_resources().get("CPU", 0)) < 2:
        assert time.monotonic() < deadline, f"{free} CPUs free after the slow fit's worker ended"
        time.sleep(0.2)


def test_train_runs_its_cv_folds_on_the_cluster_with_the_local_scores(runtime, tmp_path):
    from mnistlab.lab.train import train_recipe

    here = train_recipe("logreg", cv=3, limit=300, n_jobs=2, out=tmp_path / "here")
    args = ["train", "logreg", "--cv", "3", "--limit", "300", "--n-jobs", "2", "--out", str(tmp_path / "there")]
    done = run_cli([*args, "--json"], env={"RAY_ADDRESS": runtime})
    assert done.returncode == 0, done.stderr
    there = json.loads(done.stdout)
    assert len(there["cv_scores"]) == 3 and there["cv_scores"] == here["cv_scores"]
    assert there["test_accuracy"] == here["test_accuracy"]


def test_model_files_from_a_task_replace_what_the_previous_model_left(tmp_path):
    # Written into the folder of a model saved before, they stayed beside that model's figures and ONNX.
    import numpy as np

    from mnistlab.lab.cluster import _install
    from mnistlab.lab.fitting import Fitted

    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("model.skops", "model.onnx", "confusion.png", "notes.txt"):
        (folder / name).write_bytes(b"the previous model's")
    (folder / "model.json").write_bytes(b'{"format_version": 2, "recipe": "the previous model"}')
    fitted = Fitted({"model_dir": "on the worker"}, np.zeros(0), {}, [], [])
    files = {"model.json": b"{}", "model.safetensors": b"weights"}
    installed = _install(fitted, files, folder)
    assert installed.result["model_dir"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors", "notes.txt"]
