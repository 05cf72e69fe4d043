"""The tracking store as the bench opens it: real MLflow SQLite stores, real folders, real processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mnistlab
from mnistlab.cli import app
from mnistlab.errors import TrackingError
from mnistlab.lab.tracking import Tracker

runner = CliRunner()
_SRC = str(Path(mnistlab.__file__).resolve().parents[1])


def test_a_default_store_folder_that_cannot_be_made_is_one_sentence(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder would be")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["compare", "knn", "--dataset", "digits", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]  # after the progress lines
    assert line.startswith("Error: Cannot make the tracking folder"), line
    assert "XDG_DATA_HOME" in line and "--tracking-uri" in line
    assert not (tmp_path / "r" / "models").exists()  # before anything was fitted


def test_a_store_path_through_a_file_is_said_before_the_data_loads(tmp_path, monkeypatch):
    """compare --tracking-uri notes.txt/runs.db loaded the data, then failed in "Cannot open the tracking store ...
    (FileExistsError: [Errno 17] File exists: '.../notes.txt')", of a file that is no folder; runs said no store."""
    (tmp_path / "notes.txt").write_text("a file where the store's folder would be")
    monkeypatch.chdir(tmp_path)
    said = f"notes.txt/runs.db: {tmp_path / 'notes.txt'} is a file, not a folder, so the store cannot be made there; "
    for args in (["compare", "knn", "--dataset", "digits", "--out", "r"], ["runs"]):
        result = runner.invoke(app, [*args, "--tracking-uri", "notes.txt/runs.db"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            f"Error: --tracking-uri {said}give a path in a folder, or move that file."
        ]
        assert "loading" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_two_processes_opening_one_fresh_store_both_succeed(tmp_path):
    """Two comparisons started at once on a store not yet made: MLflow's set-up of the database ran twice
    ("table experiments already exists", "duplicate column name") and one of them failed."""
    code = (
        "import sys; from mnistlab.lab.tracking import Tracker; "
        "t = Tracker(sys.argv[1]); print(t.experiment_id, len(t.runs()))"
    )
    env = {**os.environ, "PYTHONPATH": _SRC}
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr.decode()[-2000:]
    assert outs[0][0] == outs[1][0]  # one experiment, made once


def test_a_deleted_experiment_is_said_with_how_to_restore_it(tmp_path, made_store):
    """An experiment deleted in `mlflow ui`: runs listed nothing, and compare failed after loading the data with
    "check that it is reachable and writable"."""
    uri = made_store(tmp_path / "mlflow.db")
    tracker = Tracker(uri)
    tracker.client.delete_experiment(tracker.experiment_id)
    for args in (["runs"], ["compare", "knn", "--dataset", "digits", "--out", str(tmp_path / "r")]):
        result = runner.invoke(app, [*args, "--tracking-uri", uri])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()[-1:]
        assert line.startswith(f"Error: The experiment mnistlab-compare in the tracking store {uri} was deleted")
        assert f"mlflow experiments restore -x {tracker.experiment_id}" in line, line
    assert not (tmp_path / "r" / "models").exists()  # refused before anything was fitted


def test_runs_reads_a_store_and_makes_none(tmp_path, monkeypatch):
    """`runs --tracking-uri sqlite:///typo.db` made a new 1 MB store at the typo'd path and listed 0 runs."""
    typo = tmp_path / "typo.db"
    result = runner.invoke(app, ["runs", "--tracking-uri", f"sqlite:///{typo}", "--json"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: No tracking store at {typo}, so no runs; check --tracking-uri")
    assert not typo.exists() and not (tmp_path / "artifacts").exists()
    # The default store before any comparison: no runs, and nothing made.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["runs", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [], result.output
    assert not (tmp_path / "data").exists()
    # A store of other work, without mnistlab's experiment: no runs, and the experiment is not made there.
    other = Tracker(f"sqlite:///{tmp_path / 'other.db'}", "someone-else")
    result = runner.invoke(app, ["runs", "--tracking-uri", other.uri, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [], result.output
    assert other.client.get_experiment_by_name("mnistlab-compare") is None


def test_a_path_to_a_db_file_is_a_sqlite_store(tmp_path, monkeypatch):
    """--tracking-uri ~/runs.db: MLflow took it for its retired folder store and refused it, in a sentence about
    migrating file stores; the path of a .db file is the SQLite store it names."""
    monkeypatch.setenv("HOME", str(tmp_path))
    result = runner.invoke(
        app,
        [
            "compare",
            "knn",
            "--dataset",
            "digits",
            "--limit",
            "200",
            "--cv",
            "0",
            "--tracking-uri",
            "~/runs.db",
            "--out",
            str(tmp_path / "r"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tracking_uri"] == f"sqlite:///{tmp_path / 'runs.db'}"
    assert (tmp_path / "runs.db").is_file() and (tmp_path / "artifacts").is_dir()
    monkeypatch.chdir(tmp_path)
    listed = runner.invoke(app, ["runs", "--tracking-uri", "runs.db", "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1, listed.output


def test_compare_takes_a_path_as_its_store_and_refuses_what_is_neither(tmp_path):
    """compare(tracking_uri=Path("runs.db")) ended in Python's AttributeError ('PosixPath' object has no attribute
    'strip') after the arguments were checked, as did a number; a Path is the store it names, anything else one
    sentence before the data is read."""
    from mnistlab import compare
    from mnistlab.errors import ParameterError

    result = compare(
        ["knn"], datasets=["digits"], limit=200, cv=0, out_dir=tmp_path / "r", tracking_uri=tmp_path / "runs.db"
    )
    assert result["tracking_uri"] == f"sqlite:///{tmp_path / 'runs.db'}" and (tmp_path / "runs.db").is_file()
    for bad in (3, b"runs.db"):
        with pytest.raises(ParameterError) as raised:
            compare(["knn"], datasets=["digits"], limit=200, cv=0, out_dir=tmp_path / "s", tracking_uri=bad)
        assert str(raised.value).startswith("tracking_uri must be a store's URI or a .db file's path, got "), (
            raised.value
        )
    assert not (tmp_path / "s").exists()


def test_a_folder_path_as_the_store_says_how_to_name_a_sqlite_one(tmp_path, monkeypatch):
    """--tracking-uri mlruns (MLflow's own tutorial folder): MLflow's migration notice, cut off at "See …",
    was the error, and its way out (a .db file, or MLFLOW_ALLOW_FILE_STORE) was not in it."""
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    for args in (["runs"], ["compare", "knn", "--dataset", "digits", "--limit", "200", "--out", "r"]):
        result = runner.invoke(app, [*args, "--tracking-uri", "mlruns"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: The tracking store mlruns is a folder path: MLflow's retired folder store"), line
        assert "a path ending in .db, such as mlruns.db" in line and "MLFLOW_ALLOW_FILE_STORE=true" in line, line
        assert "maintenance mode" not in line and "…" not in line, line
    assert not (tmp_path / "r" / "models").exists()  # before anything was fitted


def test_an_empty_tracking_uri_is_refused_not_taken_for_the_default_store(tmp_path, monkeypatch):
    """--tracking-uri "$STORE" with $STORE unset recorded the runs in the default store without a word."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    commands = [
        ["runs"],
        ["compare", "knn", "--dataset", "digits", "--out", str(tmp_path / "r")],
        ["sweep", "knn", "--param", "knn__n_neighbors=1,3", "--out", str(tmp_path / "b.json")],
    ]
    for args in commands:
        result = runner.invoke(app, [*args, "--tracking-uri", ""])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line == (
            "Error: --tracking-uri is empty, which would mean the default store; give a store, or leave it out."
        )
    assert not (tmp_path / "data").exists() and not (tmp_path / "r").exists()


def test_a_run_whose_artifacts_cannot_be_written_is_failed_not_left_running(tmp_path):
    """The artifact folder a file (a full or read-only disk alike): compare stopped with one sentence, and its
    fit's run stayed RUNNING in the store for ever (as did a run whose end could not be written)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    (tmp_path / "artifacts").write_text("in the way of the artifact folder")
    args = ["compare", "knn", "--dataset", "digits", "--limit", "200", "--cv", "0", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--tracking-uri", uri])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: The tracking store {uri} failed")
    run_id = tracker.start_run("by hand", tags={"kind": "comparison"}, params={})
    with pytest.raises(TrackingError, match="failed"):
        tracker.end_run(run_id, metrics={"m": 1.0}, artifacts={"comparison.json": b"{}"})
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FAILED"}, [r.info.status for r in runs]


_RECORD_WITH_A_FULL_TEMPORARY_FOLDER = """
import os, resource, sys
from mnistlab.errors import TrackingError
from mnistlab.lab.tracking import Tracker

tracker = Tracker(sys.argv[1])
size = os.path.getsize(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 500_000,) * 2)  # the store grows; a larger file fails (EFBIG)
try:
    tracker.record(name="r", tags={}, params={}, metrics={}, cv_scores=[], artifacts={"big.bin": bytes(size + 10**6)})
except TrackingError as exc:
    print(exc)
print(tracker.client.search_runs([tracker.experiment_id])[0].info.status)
"""


def test_a_full_temporary_folder_is_not_blamed_on_the_store(tmp_path, made_store):
    """A run's files are written to the temporary folder first, for MLflow to copy into the store: a full one was
    "The tracking store ... failed (OSError: [Errno 28] No space left on device); check that it is reachable and
    writable", of a store that was both."""
    store, staging = tmp_path / "mlflow.db", tmp_path / "tmp"
    made_store(store)  # made, at its size
    staging.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", _RECORD_WITH_A_FULL_TEMPORARY_FOLDER, f"sqlite:///{store}", str(store)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(staging)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == [
        f"Cannot write a run's files in the temporary folder {staging} (File too large) to record them; free space "
        "there, or set TMPDIR to a folder with room.",
        "FAILED",
    ]
    assert list(staging.iterdir()) == []


def _digits_folder(folder: Path, n_train: int | None = None) -> str:
    """scikit-learn's digits as an IDX folder; ``n_train`` training images (all of them when None)."""
    from mnistlab.data.load import load_mnist
    from mnistlab.testing import write_idx_folder

    digits = load_mnist("digits")
    n = digits.details["n_train"]
    arrays = {
        "train_images": digits.images[: n_train or n],
        "train_labels": digits.target[: n_train or n],
        "test_images": digits.images[n:],
        "test_labels": digits.target[n:],
    }
    return str(write_idx_folder(folder, arrays, gzip=False))


def _comparison_run(uri: str):
    tracker = Tracker(uri)
    (parent,) = tracker.client.search_runs([tracker.experiment_id], "tags.mnistlab_kind = 'comparison'")
    return parent


def _renamed(data) -> dict[str, str]:
    """A run's keys that mnistlab renamed for MLflow, by the name each stands for (its ``mnistlab_key/`` tag)."""
    return {
        name: tag.removeprefix("mnistlab_key/") for tag, name in data.tags.items() if tag.startswith("mnistlab_key/")
    }


def test_datasets_whose_names_differ_in_a_character_mlflow_refuses_keep_their_own_keys(tmp_path, made_store):
    """Datasets "set#1" and "set_1": the comparison's run kept one accuracy and one checksum, the first's lost
    without a word (both made test_accuracy/knn/set_1 and data_sha256/set_1)."""
    from mnistlab.lab.compare import compare

    folders = [
        _digits_folder(tmp_path / "a" / "set#1"),
        _digits_folder(tmp_path / "b" / "set_1", n_train=300),  # other data: another accuracy, another checksum
    ]
    uri = made_store(tmp_path / "s.db")
    summary = compare("knn", datasets=folders, cv=0, n_jobs=1, limit=200, tracking_uri=uri, out_dir=tmp_path / "r")
    data = _comparison_run(uri).data
    accuracies = {r["dataset"]: r["test_accuracy_mean"] for r in summary["results"]}
    checksums = {d["dataset"]: d["data_sha256"] for d in summary["data"]}
    assert len(set(accuracies.values())) == len(set(checksums.values())) == 2
    assert len(data.metrics) == 2, data.metrics
    renamed = _renamed(data)
    assert set(renamed) == {"test_accuracy/knn/set#1", "data_sha256/set#1", "data_dir/set#1"}, renamed
    for dataset in ("set#1", "set_1"):
        metric, checksum = f"test_accuracy/knn/{dataset}", f"data_sha256/{dataset}"
        assert data.metrics[renamed.get(metric, metric)] == accuracies[dataset]
        assert data.params[renamed.get(checksum, checksum)] == checksums[dataset]


USER_PIPELINE = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def build(seed):
    steps = [("scale #1", StandardScaler()), ("scale _1", StandardScaler(with_mean=False))]
    steps.append(("s" * 240, StandardScaler(with_std=False)))  # its parameters' names: over MLflow's 250
    return Pipeline([*steps, ("lr", LogisticRegression(max_iter=50, random_state=seed))])
"""


def test_a_users_parameter_names_mlflow_refuses_are_recorded_not_a_failure_after_the_fit(tmp_path, made_store):
    """A Pipeline step named "scale #1" (or with a name of 240 characters): every fit ran, then recording it failed
    ("Invalid value 'scale #1' ... check that it is reachable and writable")."""
    (tmp_path / "piped.py").write_text(USER_PIPELINE)
    uri = made_store(tmp_path / "s.db")
    args = ["compare", f"{tmp_path / 'piped.py'}:build", "--dataset", "digits", "--limit", "200", "--cv", "0"]
    done = runner.invoke(app, [*args, "--n-jobs", "1", "--out", str(tmp_path / "r"), "--tracking-uri", uri, "--json"])
    assert done.exit_code == 0, done.output
    (row,) = Tracker(uri).runs()
    data = Tracker(uri).client.get_run(row["run_id"]).data
    renamed = _renamed(data)
    assert data.params[renamed["scale #1__with_mean"]] == "true" and data.params["scale _1__with_mean"] == "false"
    assert data.params[renamed["s" * 240 + "__with_std"]] == "false" and data.params["lr__C"] == "1.0"
    assert len(renamed) == 2 * 4 and all(len(key) <= 250 - len("mnistlab_key/") for key in renamed.values())


def test_a_long_parameter_value_such_as_a_folder_is_recorded_whole(tmp_path, made_store):
    """A data folder of 527 characters was recorded as its first 499 and "…": the run could not be redone."""
    folder = "/" + "/".join(["d" * 200] * 3)
    tracker = Tracker(made_store(tmp_path / "s.db"))
    run_id = tracker.start_run("long", tags={}, params={"data_dir": folder})
    assert tracker.client.get_run(run_id).data.params["data_dir"] == folder


def _store_with_a_fit(db: Path) -> str:
    """A SQLite store at ``db`` holding one finished fit's run; its URI."""
    tracker = Tracker(f"sqlite:///{db}")
    run_id = tracker.start_run("knn", tags={"model": "knn", "dataset": "digits", "seed": 1}, params={})
    tracker.end_run(run_id, metrics={"test_accuracy": 0.9})
    return tracker.uri


def test_a_read_only_store_is_read_and_a_write_to_it_is_one_sentence_with_its_reason(tmp_path):
    """A store opened read-only (SQLite's file: URI, mode=ro): `runs` said there was no store at file:..., and
    compare printed MLflow's traceback, then "(raised as a result of Query-invoked autoflush ...)"."""
    _store_with_a_fit(tmp_path / "mlflow.db")
    read_only = f"sqlite:///file:{tmp_path / 'mlflow.db'}?mode=ro&uri=true"
    here = tmp_path / "here"
    here.mkdir()
    env = {**os.environ, "PYTHONPATH": _SRC}
    listed = subprocess.run(
        [sys.executable, "-m", "mnistlab", "runs", "--tracking-uri", read_only, "--json"],
        cwd=here, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1, listed.stderr
    args = ["compare", "knn", "--dataset", "digits", "--limit", "200", "--cv", "0", "--tracking-uri", read_only]
    args += ["--out", str(tmp_path / "r")]
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab", *args], cwd=here, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: The tracking store {read_only} failed (OperationalError: attempt to write a re")
    assert not (tmp_path / "r" / "models").exists()  # refused before the fit
    assert not any(here.iterdir())  # nor the folders MLflow made of the URI's text ("./file:/tmp/...")


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("ffffffffffff", "was made by a newer MLflow than this one"),
        ("0a8213491aaa", "was made by an older MLflow; back it up, then upgrade it with `mlflow db upgrade sqlite:///"),
    ],
)
def test_a_store_of_another_mlflow_says_which_one_to_upgrade(tmp_path, schema, says):
    """A store from a newer MLflow was said to be "out-of-date", with "run 'mlflow db upgrade'", which cannot
    upgrade it: this MLflow is the one to upgrade."""
    import sqlite3

    _store_with_a_fit(tmp_path / "made.db")
    shutil.copy(tmp_path / "made.db", tmp_path / "mlflow.db")  # a store this process has not opened (MLflow keeps it)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as db, db:
        db.execute("update alembic_version set version_num = ?", (schema,))
    result = runner.invoke(app, ["runs", "--tracking-uri", uri])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: The tracking store {uri} {says}") and "--tracking-uri" in line, line
    assert ("mlflow db upgrade" in line) == (schema != "ffffffffffff")


def test_a_tracking_server_that_does_not_answer_is_said_with_why(tmp_path):
    """A server not listening: the sentence was cut at "(Caused by …", before saying the connection was refused."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{free.getsockname()[1]}"
    result = runner.invoke(app, ["runs", "--tracking-uri", uri])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: Cannot open the tracking store {uri} (ConnectionRefusedError: "), line
    assert line.endswith("MLFLOW_TRACKING_URI."), line


def test_runs_json_is_json_when_a_run_holds_a_metric_that_is_not_a_number(tmp_path):
    """A run logged by hand into mnistlab's experiment with test_accuracy NaN: `runs --json` printed NaN, which
    JSON has no word for (jq and JavaScript refuse the whole list)."""
    uri = _store_with_a_fit(tmp_path / "mlflow.db")
    tracker = Tracker(uri)
    run_id = tracker.client.create_run(tracker.experiment_id, run_name="by hand").info.run_id
    tracker.client.log_metric(run_id, "test_accuracy", float("nan"))
    result = runner.invoke(app, ["runs", "--tracking-uri", uri, "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout, parse_constant=lambda word: pytest.fail(f"{word} in --json"))
    by_hand = next(r for r in runs if r["run_id"] == run_id)
    assert (by_hand["test_accuracy"], by_hand["model"]) == (None, None)


def test_runs_shows_the_newest_fifty_and_says_how_to_see_more(tmp_path, made_store):
    """A store of thousands of fits: `runs` read every one and printed a table of every one (5,000 runs: 12 s and
    5,006 lines), with no way to ask for fewer."""
    tracker = Tracker(made_store(tmp_path / "mlflow.db"))
    for seed in range(60):
        run_id = tracker.start_run("knn", tags={"model": "knn", "dataset": "digits", "seed": seed}, params={})
        tracker.end_run(run_id, metrics={"test_accuracy": 0.9})
    table = runner.invoke(app, ["runs", "--tracking-uri", tracker.uri])
    assert table.exit_code == 0, table.output
    rows = re.compile(r"^[0-9a-f]{32} +knn ", re.MULTILINE)  # a run's row: its whole id, then its model
    assert len(rows.findall(table.stdout)) == 50 and "newest 50 runs" in table.stdout
    assert "--last N shows more" in table.stdout
    newest = runner.invoke(app, ["runs", "--tracking-uri", tracker.uri, "--last", "3", "--json"])
    assert newest.exit_code == 0 and len(json.loads(newest.stdout)) == 3, newest.output
    every = json.loads(runner.invoke(app, ["runs", "--tracking-uri", tracker.uri, "--json"]).stdout)
    assert len(every) == 60 and {r["run_id"] for r in json.loads(newest.stdout)} <= {r["run_id"] for r in every}
    few = runner.invoke(app, ["runs", "--tracking-uri", tracker.uri, "--last", "100"])
    assert len(rows.findall(few.stdout)) == 60 and "60 run(s) in" in few.stdout and "shows more" not in few.stdout


def test_a_new_store_appears_whole_so_a_stopped_first_run_leaves_none_half_made(tmp_path):
    """A first comparison stopped (Ctrl+C, a kill) while MLflow set up its new SQLite database: the half-made
    database stayed, and every later compare failed with "table _alembic_tmp_latest_metrics already exists".
    Watched while it is made, the store's file is not there or holds the whole schema, never part of it."""
    database = tmp_path / "store" / "mlflow.db"
    code = "import sys; from mnistlab.lab.tracking import Tracker; Tracker(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": _SRC}
    maker = subprocess.Popen([sys.executable, "-c", code, str(database)], env=env, stderr=subprocess.PIPE)
    seen = set()
    while maker.poll() is None:
        seen.add(_schema_version(database))
        time.sleep(0.05)
    assert maker.wait() == 0, maker.stderr.read().decode()[-2000:]
    final = _schema_version(database)
    assert final and seen <= {None, final}, f"part of the schema was in place: {sorted(seen - {None})}"
    assert [p.name for p in database.parent.iterdir()] == ["mlflow.db"]  # no temporary file left beside it


def _schema_version(database: Path) -> str | None:
    """The version of MLflow's schema ``database`` records; None where it records none (yet) or is locked."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.01)) as db:
            rows = db.execute("select version_num from alembic_version").fetchall()
    except sqlite3.Error:  # not there yet, no such table yet, or locked by the writer
        return None
    return rows[0][0] if rows else None


def test_the_runs_table_shows_each_run_id_whole(tmp_path, made_store):
    """In a pipe or an 80-column terminal the table cut every run id to "9335f7cee8d94c4b8ff43acd62f573…", the one
    value a reader copies (into `mlflow ui`, MlflowClient.get_run)."""
    tracker = Tracker(made_store(tmp_path / "mlflow.db"))
    run_id = tracker.start_run("knn", tags={"model": "extra-trees", "dataset": "fashion-mnist", "seed": 42}, params={})
    tracker.end_run(run_id, metrics={"test_accuracy": 0.9, "fit_seconds": 1.5})
    table = runner.invoke(app, ["runs", "--tracking-uri", tracker.uri], terminal_width=80)
    assert table.exit_code == 0, table.output
    assert len(run_id) == 32 and run_id in table.stdout, table.stdout


def test_a_store_whose_folder_name_holds_percent_question_or_hash_is_the_one_used(tmp_path, monkeypatch):
    """XDG_DATA_HOME (or a .db path) in a folder named "exp? #1 100%25": MLflow read the URI mnistlab built as a
    URL, so the runs went to a file "exp" (cut at "?") beside that folder, or to "100%" for "100%25", and `runs`
    then listed none of them."""
    odd = tmp_path / "exp? #1 100%25 é"
    monkeypatch.setenv("XDG_DATA_HOME", str(odd / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["compare", "knn", "--dataset", "digits", "--limit", "200", "--cv", "0", "--out", str(tmp_path / "r")]
    for store in ([], ["--tracking-uri", str(odd / "runs #2?.db")]):
        result = runner.invoke(app, [*args, *store, "--json"])
        assert result.exit_code == 0, result.output
        listed = runner.invoke(app, ["runs", *store, "--json"])
        assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1, listed.output
    assert (odd / "data" / "mnistlab" / "tracking" / "mlflow.db").is_file() and (odd / "runs #2?.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [odd.name, "r"]  # no store beside the folder


def test_the_mlflow_ui_command_runs_names_works_pasted_into_a_shell(tmp_path):
    """`runs` ended with `mlflow ui --backend-store-uri sqlite:///.../my runs #1/mlflow.db`: pasted into a shell, the
    space split the URI and the # made the rest a comment, so mlflow ui opened another store."""
    import shlex

    uri = _store_with_a_fit(tmp_path / "my runs #1" / "mlflow.db")
    result = runner.invoke(app, ["runs", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    (command,) = [line for line in result.stdout.splitlines() if line.startswith("mlflow ui ")]
    assert shlex.split(command) == ["mlflow", "ui", "--backend-store-uri", uri], command


def test_runs_of_a_folder_are_found_by_the_folder_compare_was_given(tmp_path, monkeypatch):
    # `compare --dataset ./my-digits` records the runs under the folder's name, and `runs --dataset ./my-digits`,
    # the same words, listed none of them: "0 run(s)".
    from mnistlab import load_mnist
    from mnistlab.testing import write_idx_folder

    digits = load_mnist("digits")
    n = digits.details["n_train"]
    parts = {"test_images": digits.images[n:], "test_labels": digits.target[n:]}
    for name, m in (("a", n), ("b", n - 1)):  # two folders of one name (and other data): each one's runs its own
        write_idx_folder(
            tmp_path / name / "my-digits",
            {**parts, "train_images": digits.images[:m], "train_labels": digits.target[:m]},
        )
    monkeypatch.chdir(tmp_path)
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    for name in ("a", "b"):
        done = runner.invoke(
            app, ["compare", "knn", "--dataset", f"{name}/my-digits", "--cv", "0", "--out", f"r{name}", *store]
        )
        assert done.exit_code == 0, done.output
    listed = json.loads(runner.invoke(app, ["runs", "--dataset", "./a/my-digits", "--json", *store]).stdout)
    assert [(r["dataset"], r["data_dir"]) for r in listed] == [
        ("my-digits", str((tmp_path / "a" / "my-digits").resolve()))
    ]
    assert len(json.loads(runner.invoke(app, ["runs", "--dataset", "my-digits", "--json", *store]).stdout)) == 2
    table = runner.invoke(app, ["runs", "--dataset", "b/my-digits", *store])
    assert table.exit_code == 0 and "1 run(s)" in table.stdout, table.output


def test_runs_of_a_folder_of_a_registered_datasets_files_are_found_by_that_folder(tmp_path, mnist_dir, monkeypatch):
    # `compare --dataset ./my-mnist`, a copy of MNIST's published files (Fashion-MNIST's as cloned from GitHub),
    # records its runs as mnist's, without the folder; `runs --dataset ./my-mnist` listed none: "0 run(s)".
    shutil.copytree(mnist_dir, tmp_path / "my-mnist")
    monkeypatch.chdir(tmp_path)
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    args = ["compare", "logreg", "--dataset", "my-mnist", "--limit", "500", "--cv", "0", "--n-jobs", "1"]
    done = runner.invoke(app, [*args, "--out", "r", *store])
    assert done.exit_code == 0, done.output
    listed = json.loads(runner.invoke(app, ["runs", "--dataset", "./my-mnist", "--json", *store]).stdout)
    assert [(r["model"], r["dataset"], r["data_dir"]) for r in listed] == [("logreg", "mnist", None)]
    table = runner.invoke(app, ["runs", "--dataset", "my-mnist", *store])
    assert table.exit_code == 0 and "1 run(s)" in table.stdout, table.output


def test_runs_says_its_store_whole_on_one_line_however_narrow_the_table(tmp_path):
    # The count and the store's URI were the table's title, folded to the table's width: with no run, or none of a
    # --dataset, the URI came out cut mid-word over three lines ("...data/mnis" / "tlab/tracking/mlflow.db").
    folder = tmp_path / "a-store-folder-with-a-name-long-enough-to-be-wider-than-an-empty-table"
    folder.mkdir()
    tracker = Tracker(f"sqlite:///{folder / 'mlflow.db'}")
    run_id = tracker.start_run("knn", tags={"model": "knn", "dataset": "digits", "seed": 1}, params={})
    tracker.end_run(run_id, metrics={"test_accuracy": 0.9})
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": _SRC}
    for dataset in ("digits", "mnist"):  # one run, and none
        shown = subprocess.run(
            [sys.executable, "-m", "mnistlab.cli", "runs", "--tracking-uri", tracker.uri, "--dataset", dataset],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert shown.returncode == 0, shown.stderr
        count = "1 run(s)" if dataset == "digits" else "0 run(s)"
        assert f"{count} in {tracker.uri}\n" in shown.stdout, shown.stdout


def test_a_dataset_and_out_folder_whose_names_are_not_utf8_are_recorded_and_reused(tmp_path):
    """`compare --dataset` a folder named b"r\\xfe" (or --out under b"caf\\xe9"): MLflow keeps UTF-8 text, and the
    run's data_dir, name and keys held lone surrogates, so every comparison ended in "The tracking store ...
    failed (UnicodeEncodeError ...); check that it is reachable and writable", blaming the store; the models'
    folder name and the report's page failed the same way. Now the names are recorded as r\\xfe, and the next
    run reuses the fit."""
    import numpy as np

    from mnistlab.testing import random_idx_arrays, write_idx_folder

    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9")
    folder = write_idx_folder(odd + os.fsdecode(b"/r\xfe"), random_idx_arrays(np.random.default_rng(0), 200, 100))
    uri = str(tmp_path / "runs.db")
    args = ["compare", "knn", "--dataset", str(folder), "--cv", "0", "--out", odd + "/rep", "--tracking-uri", uri]
    for reused in (0, 1):
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["results"][0]["reused"] == reused
    listed = runner.invoke(app, ["runs", "--dataset", str(folder), "--tracking-uri", uri, "--json"])
    assert listed.exit_code == 0, listed.output
    (run,) = json.loads(listed.stdout)
    assert run["dataset"] == "r\\xfe" and run["data_dir"] == f"{tmp_path}/caf\\xe9/r\\xfe"
    assert run["model_dir"].startswith(f"{tmp_path}/caf\\xe9/rep/models/r-")
    assert f"{tmp_path}/caf\\xe9/r\\xfe" in (Path(odd) / "rep" / "index.html").read_text(encoding="utf-8")


def test_a_store_whose_path_is_not_utf8_is_one_sentence_before_the_data_loads(tmp_path, monkeypatch):
    """A store in a folder named b"caf\\xe9" (--tracking-uri, or XDG_DATA_HOME's default store): MLflow opens a
    store by text alone, and compare said "Cannot open the tracking store ... (UnicodeEncodeError: ...
    surrogates not allowed); check --tracking-uri" after loading the data, of a default store no one named."""
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["compare", "knn", "--dataset", "digits", "--limit", "200", "--cv", "0", "--out", str(tmp_path / "r")]
    for store, where in (["--tracking-uri", odd + "/runs.db"], "runs.db"), ([], "d/mnistlab/tracking/mlflow.db"):
        monkeypatch.setenv("XDG_DATA_HOME", odd + "/d")
        result = runner.invoke(app, [*args, *store])
        assert result.exit_code == 2, result.output
        assert result.stderr.splitlines() == [
            f"Error: The tracking store {tmp_path}/caf\\xe9/{where} is named by bytes that are not utf-8 text, and "
            "MLflow opens a store by text alone; give one elsewhere with --tracking-uri or MLFLOW_TRACKING_URI (a "
            "path ending in .db), or rename the folder."
        ]
    assert not os.path.lexists(odd) and not (tmp_path / "r").exists()


# What MLflow and onnxruntime look for to stay quiet under a test runner or in CI: a user's machine has none.
_CI_MARKERS = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "TF_BUILD")


def test_tracking_and_reading_on_a_users_machine_leave_no_usage_ids_behind(tmp_path):
    """MLflow 3 wrote an installation id into ~/.config/mlflow as mnistlab imported it, ready for its usage
    events (but not under pytest or in CI, so the command runs here as on a user's machine); onnxruntime kept a
    device id and its events in ~/.cache/Microsoft. mnistlab turns both off unless the user turns them on."""
    folders = {name: tmp_path / name for name in ("home", "config", "cache")}
    for folder in folders.values():
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in _CI_MARKERS and not k.startswith(("XDG_", "MLFLOW_"))}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env.update(HOME=str(folders["home"]), XDG_CONFIG_HOME=str(folders["config"]), XDG_CACHE_HOME=str(folders["cache"]))
    code = (  # a store opened and its runs read (MLflow), a digit read by the shipped reader (onnxruntime)
        "import sys, numpy as np; from mnistlab.lab.tracking import Tracker; from mnistlab.trust.reader import "
        "load_reader; Tracker(sys.argv[1]).runs(); load_reader().digit_proba(np.zeros((1, 28, 28), np.uint8))"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-c", code, uri], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    left = sorted(str(p.relative_to(tmp_path)) for folder in folders.values() for p in folder.rglob("*"))
    assert not [p for p in left if "mlflow" in p or "Microsoft" in p], left


def test_the_mlflow_ui_compare_names_opens_the_store_it_recorded_in(tmp_path, monkeypatch):
    """compare ended with "runs recorded in sqlite:///... (`mnistlab runs`, `mlflow ui`)": `mlflow ui` run as shown
    opens the store in the current folder, empty of these runs. It names the store now, as `runs` does."""
    import shlex

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'my runs' / 'mlflow.db'}"
    args = ["compare", "knn", "--dataset", "digits", "--cv", "0", "--out", str(tmp_path / "r"), "--tracking-uri", uri]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("runs recorded in ")]
    assert shlex.split(line.split("`")[3]) == ["mlflow", "ui", "--backend-store-uri", uri], line


def test_runs_of_a_tracking_server_point_to_its_page_not_to_mlflow_ui(tracking_server):
    """`runs --tracking-uri http://...` ended with `mlflow ui --backend-store-uri http://...`, which stops with
    MLflow's traceback (UnsupportedModelRegistryStoreURIException): a tracking server is its own page."""
    import urllib.request

    tracker = Tracker(tracking_server)
    run_id = tracker.start_run("knn", tags={"model": "knn", "dataset": "digits", "seed": 1}, params={})
    tracker.end_run(run_id, metrics={"test_accuracy": 0.9})
    result = runner.invoke(app, ["runs", "--tracking-uri", tracking_server])
    assert result.exit_code == 0 and "knn" in result.stdout, result.output
    assert result.stdout.splitlines()[-1] == f"open {tracking_server} in a browser", result.stdout
    with urllib.request.urlopen(tracking_server, timeout=10) as page:
        assert page.status == 200


def test_runs_help_does_not_send_to_a_bare_mlflow_ui():
    """`runs --help` said "`mlflow ui` shows them too": run so, it opens the store in the current folder, not
    mnistlab's; `runs` prints the command that opens its store."""
    usage = runner.invoke(app, ["runs", "--help"], terminal_width=200).stdout
    assert "`mlflow ui` shows" not in usage and "then the `mlflow ui` command that shows them" in usage, usage
    listed = runner.invoke(app, ["--help"], terminal_width=200).stdout
    assert "then the `mlflow ui` command" in listed, listed


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 (its own SQLite store), its ``http://`` URI; stopped after."""
    folder = tmp_path_factory.mktemp("server")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    mlflow = [sys.executable, "-c", "from mlflow.cli import cli; cli()", "server", "--host", "127.0.0.1"]
    args = [*mlflow, "--port", str(port), "--backend-store-uri", f"sqlite:///{folder / 's.db'}", "--workers", "1"]
    log = (folder / "server.log").open("wb")
    server = subprocess.Popen(
        [*args, "--default-artifact-root", str(folder / "artifacts")], cwd=folder, stdout=log, stderr=log
    )
    try:
        for _ in range(240):  # it sets up its database first: seconds
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_a_password_in_the_tracking_uri_is_never_printed_or_recorded_in_clear(tmp_path, tracking_server):
    """``--tracking-uri http://USER:PASSWORD@host``: the password was in `compare --json`'s tracking_uri, in "runs
    recorded in", in `runs`' title and its `mlflow ui` line, in MLflow's "View run … at: URL" lines and in every
    error about the store, all of them kept in logs and shared."""
    uri = tracking_server.replace("http://", "http://alice:s3cret@")
    shown = tracking_server.replace("http://", "http://alice:***@")
    env = {**os.environ, "PYTHONPATH": _SRC}
    args = ["compare", "knn", "--dataset", "digits", "--limit", "200", "--cv", "0", "--out", str(tmp_path / "r")]
    said = []
    for command in ([*args, "--json"], args, ["runs"]):
        done = subprocess.run(
            [sys.executable, "-m", "mnistlab.cli", *command, "--tracking-uri", uri],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        said.append(done.stdout + done.stderr)
        if command[-1] == "--json":
            assert json.loads(done.stdout)["tracking_uri"] == shown
    assert all("s3cret" not in text for text in said), said
    assert f"runs recorded in {shown} " in said[1] and f"in {shown}\n" in said[2]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = f"http://alice:s3cret@127.0.0.1:{free.getsockname()[1]}"
    refused = runner.invoke(app, ["runs", "--tracking-uri", closed])
    assert refused.exit_code == 2 and "s3cret" not in refused.output, refused.output
    assert "Cannot open the tracking store http://alice:***@127.0.0.1:" in refused.stderr


def test_a_comparison_whose_terminal_closes_ends_its_run_not_leaves_it_running(tmp_path, made_store):
    """SIGHUP (the terminal closed, an ssh session dropped) ended compare outright: exit -1, and the comparison's
    run stayed RUNNING in the store for ever. It now ends the command as SIGTERM does."""
    uri = made_store()
    args = ["compare", "knn", "--dataset", "digits", "--cv", "0", "--seeds", "2", "--out", str(tmp_path / "r")]
    run = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", *args, "--tracking-uri", uri],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": _SRC},
    )
    seen, deadline = b"", time.monotonic() + 120
    while b"fitting on" not in seen and time.monotonic() < deadline and run.poll() is None:
        seen += run.stderr.read1(65536)
    run.send_signal(signal.SIGHUP)
    seen += run.communicate(timeout=60)[1]
    assert b"fitting on" in seen and run.returncode == 128 + signal.SIGHUP, seen.decode(errors="replace")[-2000:]
    assert b"Traceback" not in seen, seen.decode(errors="replace")[-2000:]
    tracker = Tracker(uri)
    statuses = [r.info.status for r in tracker.client.search_runs([tracker.experiment_id])]
    assert statuses and "RUNNING" not in statuses, statuses
