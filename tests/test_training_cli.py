"""train / evaluate / compare: the Python API and the CLI through typer's test runner."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.errors import InputError, ParameterError, RecipeError
from mnistlab.lab.evaluate import evaluate_model
from mnistlab.lab.formats import format_size
from mnistlab.lab.options import RunOptions
from mnistlab.lab.train import train_recipe
from mnistlab.models.files import load_model, models_root

runner = CliRunner()
CONTRACT = {"recipe", "cv_scores", "test_accuracy", "fit_seconds", "predict_seconds", "model_dir"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_full):
    """`mnistlab train knn-deskew` on 1,000 digits, 2-fold CV, saved to a temp folder."""
    out = tmp_path_factory.mktemp("train") / "knn-deskew"
    result = runner.invoke(
        app, ["train", "knn-deskew", "--limit", "1000", "--cv", "2", "--n-jobs", "1", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_train_json_is_one_object_with_the_contract_keys(trained, mnist_full):
    out, row = trained
    assert CONTRACT <= row.keys()
    assert row["recipe"] == "knn-deskew" and row["model_dir"] == str(out)
    assert len(row["cv_scores"]) == 2 and all(0.8 < s <= 1 for s in row["cv_scores"])
    assert row["cv_mean"] == pytest.approx(np.mean(row["cv_scores"]))
    assert row["test_accuracy"] > 0.9 and row["n_train"] == 1000 and row["n_test"] == 10000
    assert row["seed"] == 42 and row["model_size_bytes"] > 0
    assert row["data_sha256"] == mnist_full.details["data_sha256"]


def test_train_json_records_the_dataset_and_the_package_versions_as_the_card_does(trained):
    """train --json held the seed, split and data checksum but neither the dataset nor the package versions:
    a result kept without its model folder did not say which packages made it."""
    out, row = trained
    card = json.loads((out / "model.json").read_text())
    assert row["dataset"] == card["dataset"] == "mnist" and row["versions"] == card["versions"]
    assert row["versions"]["scikit-learn"] == importlib.metadata.version("scikit-learn")


def test_card_records_how_to_reproduce(trained, mnist_full):
    out, row = trained
    card = json.loads((out / "model.json").read_text())
    assert card["recipe"] == "knn-deskew" and card["seed"] == 42 and card["limit"] == 1000
    assert card["split"] == "official" and card["data_sha256"] == mnist_full.details["data_sha256"]
    assert card["params"]["knn__n_neighbors"] == 4 and card["params"]["pca__random_state"] == 42
    assert {"python", "numpy", "scikit-learn", "mnistlab"} <= card["versions"].keys()
    assert card["metrics"]["test_accuracy"] == row["test_accuracy"]
    assert len(card["weights_sha256"]) == 64 and card["format_version"] == 2


def test_cards_record_the_same_versions_whatever_ran_before_them(trained, tmp_path):
    """skops imports torch as it saves: the first model a process saved recorded no torch version, every later one
    did; and no card recorded onnxruntime, which ran the reader's nets that set the card's "not sure" cut."""
    script = (
        "import sys\n"
        "from sklearn.datasets import load_digits\n"
        "from mnistlab.lab.train import train_recipe\n"
        "X, y = load_digits(return_X_y=True)\n"
        "X = (X * 16).astype('uint8')\n"
        "for out in sys.argv[1:]:\n"
        "    train_recipe('knn', cv=0, data=(X[:300], X[300:400], y[:300], y[300:400]), out=out)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "a"), str(tmp_path / "b")], check=True)
    first, second, mnist = (
        json.loads((folder / "model.json").read_text())["versions"]
        for folder in (tmp_path / "a", tmp_path / "b", trained[0])
    )
    installed = {name: importlib.metadata.version(name) for name in ("torch", "onnxruntime", "scikit-learn")}
    assert first == second == mnist and installed.items() <= first.items()


def test_evaluate_round_trip_gives_identical_predictions(trained, mnist_full, tmp_path):
    out, row = trained
    result = runner.invoke(app, ["evaluate", str(out), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == row["test_accuracy"]
    assert report["same_predictions_as_training"] is True and report["same_data_as_training"] is True
    assert [c["digit"] for c in report["per_class"]] == list(range(10))
    assert sum(c["support"] for c in report["per_class"]) == 10000
    assert all(0 < c["f1"] <= 1 for c in report["per_class"])
    assert np.trace(np.array(report["confusion_matrix"])) == round(row["test_accuracy"] * 10000)
    for key in ("confusion_png", "gallery_png"):
        path = Path(report[key])
        assert path.parent == tmp_path and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # And directly: the reloaded model predicts exactly what training recorded.
    model, card = load_model(out)
    n = mnist_full.details["n_train"]
    y_pred = model.predict(mnist_full.data[n:])
    assert float(np.mean(y_pred == mnist_full.target[n:])) == row["test_accuracy"]


def test_evaluate_json_records_the_split_and_seed_it_measured_on_and_the_versions(tmp_path):
    """evaluate --json held the data checksum and the metrics, but not the split and seed that cut its test set
    nor the package versions it ran with: "predictions differ from training" could not be traced."""
    out = tmp_path / "knn"
    train_recipe("knn", cv=0, limit=500, seed=3, split="random", test_size=0.2, n_jobs=1, out=out)
    done = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert done.exit_code == 0, done.output
    report, card = json.loads(done.stdout), json.loads((out / "model.json").read_text())
    assert {k: report[k] for k in ("dataset", "seed", "split", "test_size")} == {
        "dataset": "mnist", "seed": 3, "split": "random", "test_size": 0.2,
    }  # fmt: skip
    assert report["n_test"] == 14_000 and report["data_sha256"] == card["data_sha256"]
    assert report["versions"] == card["versions"]  # the same environment that trained it


def test_train_and_evaluate_human_output(trained):
    out, _ = trained
    result = runner.invoke(app, ["train", "knn-deskew", "--limit", "500", "--cv", "3", "--n-jobs", "1"])
    assert result.exit_code == 0, result.output
    assert re.search(r"array\(\[0\.[0-9 ]+, 0\.[0-9 ]+, 0\.[0-9 ]+\]\)", result.stdout), result.stdout
    assert "test accuracy" in result.stdout and "fit" in result.stdout
    assert (models_root() / "knn-deskew" / "model.json").exists()  # the default model dir
    result = runner.invoke(app, ["evaluate", str(out)])
    assert result.exit_code == 0, result.output
    assert "precision" in result.stdout and "confusion.png" in result.stdout and "mistakes.png" in result.stdout
    skipped = runner.invoke(app, ["train", "knn-deskew", "--limit", "500", "--cv", "0", "--n-jobs", "1"])
    assert skipped.exit_code == 0 and "cross-validation: skipped (--cv 0)" in skipped.stdout, skipped.output


def test_retraining_into_a_folder_removes_what_the_previous_model_left(tmp_path):
    # The old model's confusion matrix and mistakes stayed beside the new model's weights.
    out = tmp_path / "m"
    flags = ["--limit", "200", "--cv", "0", "--n-jobs", "1", "--out", str(out), "--json"]
    assert runner.invoke(app, ["train", "knn", *flags]).exit_code == 0
    assert runner.invoke(app, ["evaluate", str(out), "--json"]).exit_code == 0
    assert {"confusion.png", "mistakes.png"} <= {p.name for p in out.iterdir()}
    (out / "notes.txt").write_text("the user's own file")
    result = runner.invoke(app, ["train", "logreg", *flags])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.skops", "notes.txt"]


def test_the_model_size_counts_the_models_files_not_the_folders_others(tmp_path):
    # A 52 kB logreg trained into a folder that also held 5 MB of the user's data was said to be 5.1 MB.
    out = tmp_path / "m"
    out.mkdir()
    (out / "data.bin").write_bytes(bytes(3_000_000))
    result = runner.invoke(app, ["train", "logreg", "--limit", "200", "--cv", "0", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["model_size_bytes"] == sum((out / name).stat().st_size for name in ("model.json", "model.skops"))


def test_tampered_weights_exit_2_without_traceback(trained, tmp_path):
    out, _ = trained
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.glob("model.*"):
        (copy / f.name).write_bytes(f.read_bytes())
    weights = copy / "model.skops"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    weights.write_bytes(bytes(data))
    result = runner.invoke(app, ["evaluate", str(copy)])
    assert result.exit_code == 2
    assert "sha256" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "sgd-hing"], "Unknown recipe 'sgd-hing'; expected one of: sgd-hinge, sgd-log"),
        (["compare", "knn", "nope"], "Unknown recipe 'nope'"),
        (["train", "knn", "--cv", "1", "--limit", "100"], "--cv must be 0"),
        (["train", "knn", "--split", "sideways"], "expected one of official, random"),
        (["train", "knn", "--limit", "5"], "--limit must be a count of at least 20"),
        (["evaluate", "/nonexistent/model"], "does not exist"),
        (["evaluate", "/etc/passwd"], "/etc/passwd is a file, not a model directory"),  # not a bad "--out"
    ],
)
def test_user_errors_exit_2_with_one_sentence(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_recipe_name_given_for_its_model_folder_names_the_folder_train_saved_it_in(trained, tmp_path, monkeypatch):
    """`mnistlab train knn-deskew` then `mnistlab evaluate knn-deskew`: it said "Model directory knn-deskew does not
    exist; train one with `mnistlab train RECIPE --out knn-deskew`", a model that was there trained again."""
    import shutil

    out, _ = trained
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    saved = tmp_path / "data" / "mnistlab" / "models" / "knn-deskew"
    shutil.copytree(out, saved)
    monkeypatch.chdir(tmp_path)
    for args in (["evaluate", "knn-deskew"], ["predict", "x.png", "--model", "knn-deskew"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        line = result.stderr.strip().splitlines()[-1]
        assert f"`mnistlab train knn-deskew` saved a model in {saved}; pass that folder" in line and "--out" not in line


def test_other_format_version_exits_2(trained, tmp_path):
    out, _ = trained
    copy = tmp_path / "old"
    copy.mkdir()
    (copy / "model.skops").write_bytes((out / "model.skops").read_bytes())
    card = json.loads((out / "model.json").read_text())
    card["format_version"] = 0
    (copy / "model.json").write_text(json.dumps(card))
    result = runner.invoke(app, ["evaluate", str(copy)])
    assert result.exit_code == 2 and "format version" in result.output


def test_api_accepts_arrays_and_reports_progress(mnist_small, tmp_path):
    X_tr, X_te, y_tr, y_te = mnist_small
    steps = []
    row = train_recipe(
        "knn-deskew",
        cv=0,
        data=(X_tr[:800], X_te[:300], y_tr[:800], y_te[:300]),
        out=tmp_path / "m",
        progress=steps.append,
    )
    assert row["n_train"] == 800 and row["n_test"] == 300 and row["cv_scores"] == []
    assert any("fitting on 800" in s for s in steps) and any("saving" in s for s in steps)
    with pytest.raises(InputError, match="data="):
        evaluate_model(tmp_path / "m")
    said = runner.invoke(app, ["evaluate", str(tmp_path / "m")])
    assert (
        said.exit_code == 2 and "was trained on arrays passed from Python, and evaluate finds only MNIST" in said.stderr
    )
    report = evaluate_model(tmp_path / "m", data=(X_tr[:800], X_te[:300], y_tr[:800], y_te[:300]))
    assert report["accuracy"] == row["test_accuracy"] and report["same_predictions_as_training"]
    with pytest.raises(RecipeError):
        train_recipe("no-such-recipe")


@pytest.mark.parametrize(
    "kwargs, param, flag_message",
    [
        ({"limit": 5}, "limit", "--limit must be a count of at least 20 training images, got 5."),
        ({"cv": 1}, "cv", "--cv must be 0 (skip cross-validation) or a count of at least 2 folds, got 1."),
        (
            {"n_jobs": 0},
            "n_jobs",
            "--n-jobs must be a positive number of processes (at most 256) or -1 for all cores, got 0.",
        ),
        (
            {"target": 0.9},
            "target",
            "--target applies to CNN recipes only, got 'knn'; drop --target or pick a CNN recipe.",
        ),
    ],
)
def test_library_errors_name_parameters_and_the_cli_names_flags(kwargs, param, flag_message):
    with pytest.raises(ParameterError) as info:
        train_recipe("knn", **kwargs)
    assert info.value.param == param and isinstance(info.value, InputError)
    assert str(info.value).startswith(param + " ") and "--" not in str(info.value)
    flag = flag_message.split()[0]
    args = ["train", "knn", flag, str(next(iter(kwargs.values()))), "--json"]
    result = runner.invoke(app, args if param != "limit" else [*args, "--cv", "0"])
    assert result.exit_code == 2 and flag_message in result.output


@pytest.mark.parametrize(
    "kwargs, said",
    [
        ({"limit": 20.5}, "limit must be a count of at least 20 training images, got 20.5."),
        ({"limit": "300"}, "limit must be a count of at least 20 training images, got '300'."),
        ({"cv": 2.0}, "cv must be 0 (skip cross-validation) or a count of at least 2 folds, got 2.0."),
    ],
)
def test_a_limit_or_folds_of_no_whole_number_are_not_said_to_be_too_few(kwargs, said):
    """train_recipe(limit=20.5) (or limit='300', cv=2.0) was told its limit must be at least 20, which it is."""
    with pytest.raises(ParameterError) as info:
        train_recipe("knn", **kwargs)
    assert str(info.value) == said


def test_run_options_check_once_for_library_and_cli():
    assert RunOptions().n_jobs == 1 and RunOptions(cv=0).cv == 0
    with pytest.raises(ParameterError, match="^Unknown split 'sideways'"):
        RunOptions(split="sideways")
    result = runner.invoke(app, ["compare", "knn", "--cv", "1"])
    assert result.exit_code == 2 and "--cv must be 0" in result.output


def test_format_size():
    assert [format_size(n) for n in (None, 812, 96_300, 2_100_000, 3e9)] == [
        "–",
        "812 B",
        "96.3 kB",
        "2.1 MB",
        "3.0 GB",
    ]


def test_train_says_an_ensembles_epochs_are_summed_over_its_members(tmp_path):
    """`train` of an ensemble of 3 nets of 1 epoch each printed "epochs 3", as if one net had run 3 epochs."""
    spec = tmp_path / "small.json"
    params = {"n_members": 3, "epochs": 1, "arch": "tiny", "augment": "none", "batch_size": 64}
    spec.write_text(json.dumps({"recipe": "ensemble", "params": params}))
    args = ["train", str(spec), "--limit", "300", "--n-jobs", "1", "--out", str(tmp_path / "m")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "epochs         3 over 3 members (" in result.stdout, result.stdout
    single = runner.invoke(app, ["train", "cnn-fast", "--limit", "300", "--n-jobs", "1", "--out", str(tmp_path / "c")])
    assert single.exit_code == 0 and re.search(r"epochs         2 \(", single.stdout), single.output


def test_a_model_folder_with_brackets_in_its_path_is_printed_as_it_is(tmp_path):
    # rich read the path as markup: "logreg[v2]" was printed "logreg", and "run[/tag]" ended the command in a
    # MarkupError traceback after the model had been trained and saved.
    for model_dir in (tmp_path / "logreg[v2]", tmp_path / "run[" / "tag]"):
        args = ["train", "logreg", "--limit", "200", "--cv", "0", "--n-jobs", "1", "--out", str(model_dir)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.exception is None, result.output
        assert f"model          {model_dir} (" in result.stdout, result.stdout
        result = runner.invoke(app, ["evaluate", str(model_dir)])
        assert result.exit_code == 0 and result.exception is None, result.output
        assert f"logreg from {model_dir}: accuracy" in result.stdout, result.stdout
        assert f"confusion matrix: {model_dir / 'confusion.png'}\n" in result.stdout


def test_compare_and_runs_print_paths_with_brackets_as_they_are(tmp_path):
    # rich read them as markup: the report in "rep[v2]" was said to be in "rep", the store in "tr[x]" in "tr".
    out, store = tmp_path / "rep[v2]", tmp_path / "tr[x]" / "m.db"
    args = ["compare", "knn", "--dataset", "digits", "--limit", "300", "--out", str(out), "--tracking-uri", str(store)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and result.exception is None, result.output
    assert f"report: {out / 'index.html'}\n" in result.stdout, result.stdout
    assert f"runs recorded in sqlite:///{store} (" in result.stdout, result.stdout
    result = runner.invoke(app, ["runs", "--tracking-uri", str(store)])
    assert result.exit_code == 0 and result.exception is None, result.output
    # quoted for a shell, where [x] is a pattern
    assert f"mlflow ui --backend-store-uri 'sqlite:///{store}'\n" in result.stdout, result.stdout


# The CLI started with this process's address space capped at what it maps once imported, plus ``headroom`` bytes:
# the machine of a learner whose other programs hold the rest.
_CAPPED_CLI = """
import os, resource, sys
import sklearn.neighbors  # what train knn loads anyway, mapped before the cap
from mnistlab import load_mnist
from mnistlab.cli import main
from mnistlab.trust.reader import load_reader
load_mnist(), load_reader()
size = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ["mnistlab", *sys.argv[2:]]
main()
"""


def test_running_out_of_memory_is_one_sentence_that_says_what_asks_for_less(tmp_path):
    """k-NN's predict on 60,000 images takes a float64 copy of them (376 MB) and chunks of distances; on a machine
    with less free it was numpy's MemoryError traceback ("Unable to allocate ..."), exit 1."""
    out = tmp_path / "knn"
    run = subprocess.run(
        [sys.executable, "-c", _CAPPED_CLI, str(250 * 2**20), "train", "knn", "--out", str(out)],
        env={**os.environ, "MALLOC_ARENA_MAX": "1"},  # a thread's first malloc reserves no 64 MiB arena of its own
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    error = run.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: not enough memory for `mnistlab train` (Unable to allocate "), error
    assert error.endswith("; try a smaller --limit or --n-jobs 1, or close other programs and run it again."), error
    assert not out.exists()  # no half-saved model


def _children(pid: int, marker: str) -> list[int]:
    """The processes whose parent is ``pid`` and whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if f"\nPPid:\t{pid}\n" in status and marker in command:
            found.append(int(entry.name))
    return found


def test_a_worker_the_system_kills_is_one_sentence_that_says_what_asks_for_less(tmp_path):
    """A cross-validation worker killed by the system's out-of-memory killer (SIGKILL, as here) was joblib's
    TerminatedWorkerError traceback, exit 1; it is one sentence naming the signal and what asks for less."""
    out = tmp_path / "logreg"
    args = [sys.executable, "-m", "mnistlab.cli", "train", "logreg", "--cv", "3", "--n-jobs", "2", "--out", str(out)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 120
        while not (workers := _children(proc.pid, "popen_loky")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers, "no cross-validation worker started"
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "Error: a worker process of `mnistlab train` was killed ({SIGKILL(-9)}), most likely for lack of memory; "
        "try a smaller --limit or --n-jobs 1, or close other programs and run it again."
    )
    assert not out.exists()


def test_train_prints_the_lessons_cv_scores_mean_and_std_as_scikit_learn_computes_them(mnist_full, tmp_path):
    """train's CV line said "mean 0.7900 ± 0.0115": numpy's std over the folds (ddof=0), where compare's std is
    the sample std (ddof=1) and a ± reads as either, or as an interval; it now says which std it is."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import cross_val_score, train_test_split

    result = runner.invoke(app, ["train", "sgd-hinge", "--limit", "300", "--n-jobs", "1", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    n = mnist_full.details["n_train"]
    X, _, y, _ = train_test_split(
        mnist_full.data[:n], mnist_full.target[:n], train_size=300, stratify=mnist_full.target[:n], random_state=42
    )
    scores = cross_val_score(SGDClassifier(loss="hinge", random_state=42), X, y, cv=3, scoring="accuracy")
    assert scores.std() != pytest.approx(scores.std(ddof=1), abs=1e-4)  # the two stds print apart
    shown = np.array2string(scores, precision=5, separator=", ")
    line = f"array({shown})  mean {scores.mean():.4f}, std {scores.std():.4f} (over the folds, ddof=0)"
    assert line in result.stdout, result.stdout
