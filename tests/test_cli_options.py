"""Every CLI option is checked before work starts: one `Error:` line, exit code 2, never a traceback.

The same values are refused by the Python API (``RunOptions``, ``train_recipe``),
which names the parameter where the CLI names its flag.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mnistlab
from mnistlab.cli import app
from mnistlab.errors import ParameterError
from mnistlab.lab.options import MAX_SEED, RunOptions, check_writable_dir, check_writable_file
from mnistlab.lab.train import train_recipe
from mnistlab.reading.decode import encode_png

runner = CliRunner()


def one_error_line(result) -> str:
    """The single `Error:` line of a refused command (exit 2, nothing else printed, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "╭" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return path


# Each of these printed a Python traceback.
TRACEBACK_CASES = {
    "show seed -1": (["show", "--random", "3", "--seed", "-1"], "--seed must be a whole number from 0 to 4294967295"),
    "cv 100000": (["train", "logreg", "--limit", "2000", "--cv", "100000"], "--cv must be at most the 2000"),
    "test-size inf": (["train", "knn", "--split", "random", "--test-size", "inf"], "--test-size must be a fraction"),
    # Refused as "got 1000000000000000052504760255204420248704468581108159154915854115511802457988908195...".
    "test-size 1e300": (["train", "knn", "--split", "random", "--test-size", "1e300"], "test images, got 1e+300."),
    "train seed -1": (["train", "knn", "--seed", "-1"], "--seed must be a whole number"),
    "train seed huge": (["train", "knn", "--seed", "99999999999"], "got 99999999999"),
    "compare seed -1": (["compare", "knn", "--seed", "-1"], "--seed must be a whole number"),
    "compare seed huge": (["compare", "knn", "--seed", "99999999999"], "got 99999999999"),
    "onnx in /proc": (["export", "{model}", "--onnx", "/proc/x/y.onnx"], "Cannot write --onnx /proc/x/y.onnx"),
    "onnx a folder": (["export", "{model}", "--onnx", "{folder}"], "is a folder; give a file name"),
    # Named after the model's own card or weights, the export would have replaced them.
    "onnx over the card": (["export", "{model}", "--onnx", "{model}/model.json"], "give a file name ending in .onnx"),
    "preprocessed in /proc": (
        ["predict", "x.jpg", "--save-preprocessed", "/proc/x"],
        "Cannot write --save-preprocessed /proc/x",
    ),
    "preprocessed a file": (
        ["predict", "x.jpg", "--save-preprocessed", "{file}"],
        "is a file, not a folder",
    ),
}


@pytest.mark.parametrize("case", list(TRACEBACK_CASES))
def test_bad_options_give_one_line_and_exit_2(case, tmp_path, a_file):
    args, message = TRACEBACK_CASES[case]
    args = [a.format(model=tmp_path, folder=tmp_path, file=a_file) for a in args]
    line = one_error_line(runner.invoke(app, args))
    assert message in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "knn", "--nope"], "No such option: --nope; see `"),
        (["train", "knn", "--cv", "abc"], "Invalid value for '--cv'"),
        (["train"], "Missing argument"),
        (["predict", "x.png", "--top", "11"], "Invalid value for '--top'"),
        (["serve", "--port", "70000"], "Invalid value for '--port'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["data", "nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_line_too(args, message):
    assert message in one_error_line(runner.invoke(app, args))


def test_usage_errors_in_a_real_process_are_one_line():
    """The installed entry point, not the test runner: no boxed panel, no usage block."""
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run(
        [sys.executable, "-m", "mnistlab.cli", "train", "knn", "--cv", "abc"], capture_output=True, text=True, env=env
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("Error: Invalid value for '--cv'"), run.stderr


@pytest.mark.parametrize("module", ["mnistlab", "mnistlab.cli"])
def test_python_dash_m_runs_the_command(module):
    # ``python -m mnistlab`` said "No module named mnistlab.__main__"; it is the command, as the cli's is.
    run = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip().endswith(mnistlab.__version__), run.stderr


def test_no_command_still_shows_the_help():
    result = runner.invoke(app, [])
    assert result.exit_code == 2 and "train" in result.output and "Error" not in result.output


# compare's own options: usage errors and refused values alike, before the tracking store opens.
COMPARE_CASES = {
    "seeds not a number": (["--seeds", "abc"], "Invalid value for '--seeds'"),
    "seeds 0": (["--seeds", "0"], "--seeds must be a whole number from 1 to 100, got 0."),
    "seeds huge": (["--seeds", "99999999999"], "got 99999999999"),
    "seeds past the last seed": (["--seeds", "2", "--seed", str(MAX_SEED)], "runs past 4294967295"),
    "dataset without a value": (["--dataset"], "Option '--dataset' requires an argument"),
    "dataset twice": (["--dataset", "mnist", "--dataset", "mnist"], "--dataset names a dataset twice"),
    "unknown dataset": (["--dataset", "nowhere-set"], "Unknown dataset 'nowhere-set'"),
    "baseline not compared": (["--baseline", "svm-rbf"], "--baseline 'svm-rbf' is not among the compared models"),
    "baseline without a value": (["--baseline"], "Option '--baseline' requires an argument"),
    "retrain with a value": (["--retrain=yes"], "Option '--retrain' does not take a value"),
    "update-models with a value": (["--update-models=1"], "Option '--update-models' does not take a value"),
    "tracking-uri without a value": (["--tracking-uri"], "Option '--tracking-uri' requires an argument"),
    "out in /proc": (["--out", "/proc/x"], "Cannot write --out /proc/x"),
    "out a file": (["--out", "{file}"], "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(COMPARE_CASES))
def test_compare_options_give_one_line_and_exit_2(case, tmp_path, a_file):
    extra, message = COMPARE_CASES[case]
    store = tmp_path / "store.db"
    args = ["compare", "knn", "--tracking-uri", f"sqlite:///{store}", "--out", str(tmp_path / "report")]
    result = runner.invoke(app, [*args, *(a.format(file=a_file) for a in extra)])
    assert message in one_error_line(result)
    assert not store.exists() and not (tmp_path / "report").exists()  # refused before any work


def test_compare_checks_the_default_model_folders_it_would_update(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "/proc/x")
    args = ["compare", "knn", "--update-models", "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "report")])
    assert "Cannot write --update-models /proc/x/mnistlab/models/knn" in one_error_line(result)
    assert "loading" not in result.output


def test_train_refuses_an_unwritable_out_before_loading_data():
    result = runner.invoke(app, ["train", "knn", "--out", "/proc/x"])
    assert "Cannot write --out /proc/x" in one_error_line(result)
    assert "loading" not in result.output and "fitting" not in result.output


def test_train_refuses_an_empty_out_before_loading_data(tmp_path, monkeypatch):
    # typer turned "" into Path("."): the model was trained and saved into the current folder.
    monkeypatch.chdir(tmp_path)
    for out in (["--out", ""], ["--out="]):
        result = runner.invoke(app, ["train", "knn", "--limit", "200", "--cv", "0", *out])
        line = one_error_line(result)
        assert line == "Error: --out is empty, which would mean the current folder; give it a path."
        assert "loading" not in result.output
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ParameterError, match="^out is empty") as info:
        train_recipe("knn", out="")
    assert info.value.param == "out"


@pytest.mark.parametrize("name", ["model.json", "model.safetensors"])
def test_train_refuses_an_out_where_a_model_file_is_a_folder_before_loading_data(tmp_path, name):
    # The save failed after the training; with model.safetensors a folder, after writing new weights and card.
    (tmp_path / "m" / name).mkdir(parents=True)
    result = runner.invoke(app, ["train", "knn", "--limit", "200", "--cv", "0", "--out", str(tmp_path / "m")])
    line = one_error_line(result)
    assert line == f"Error: --out {tmp_path / 'm'} holds a folder named {name}, where the model's file goes; " + (
        "remove it or choose another folder."
    )
    assert [p.name for p in (tmp_path / "m").iterdir()] == [name]
    with pytest.raises(ParameterError, match=f"^out .* holds a folder named {name}"):
        train_recipe("knn", out=tmp_path / "m")


def test_train_refuses_an_out_holding_another_tools_model_files_before_loading_data(tmp_path):
    """`train logreg --out hf` of a folder holding a Hugging Face model (config.json, model.safetensors,
    model.onnx) removed both files after the training, as if a previous model had left them."""
    theirs = {"config.json": b"{}", "model.safetensors": b"their weights", "model.onnx": b"their graph"}
    (tmp_path / "hf").mkdir()
    for name, data in theirs.items():
        (tmp_path / "hf" / name).write_bytes(data)
    result = runner.invoke(app, ["train", "knn", "--limit", "200", "--cv", "0", "--out", str(tmp_path / "hf")])
    assert one_error_line(result) == (
        f"Error: --out {tmp_path / 'hf'}: it holds model.safetensors, which mnistlab did not save (there is no "
        "mnistlab model card), and the save would write over it or remove it; move that file away or choose "
        "another folder."
    )
    assert "loading" not in result.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()} == theirs


def test_cv_beyond_the_rarest_class_is_refused_once_the_data_is_known(tmp_path):
    result = runner.invoke(app, ["train", "knn", "--limit", "100", "--cv", "50", "--json", "--out", str(tmp_path)])
    assert "the training images of the rarest class, got 50" in one_error_line(result)


def test_a_recipes_own_folds_beyond_the_rarest_class_are_said_as_its_default_not_a_traceback(mnist_full, tmp_path):
    """--limit 20, the least there is, leaves 2 images of each digit, fewer than logreg's own 3 folds: compare
    stopped in a traceback (scikit-learn's "n_splits=3 cannot be greater than the number of members in each
    class"), and train said "--cv must be at most 2 ..., got 3" of a --cv no one gave."""
    train = ["train", "logreg", "--out", str(tmp_path / "m")]
    compare = ["compare", "logreg", "--out", str(tmp_path), "--tracking-uri", str(tmp_path / "runs.db")]
    for args in (train, compare):
        result = runner.invoke(app, [*args, "--limit", "20"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        line = result.stderr.strip().splitlines()[-1]  # after the progress lines
        assert line == (
            "Error: logreg cross-validates in 3 folds unless --cv says otherwise, more than the 2 training images "
            "of the rarest class; give --cv 2 or less (0 skips cross-validation)."
        ), line
    assert not (tmp_path / "m").exists() and not (tmp_path / "models").exists()  # nothing was fitted
    given = runner.invoke(app, [*train, "--limit", "20", "--cv", "3"])  # a --cv given is said as before
    assert "--cv must be at most 2, the training images of the rarest class, got 3." in given.output


@pytest.mark.parametrize(
    "args, says",
    [
        (
            ["train", "knn-deskew", "--limit", "20", "--cv", "0"],
            "knn-deskew keeps 40 principal components, so each of its fits needs 40 training images or more, and "
            "--limit 20 leaves 20; give --limit 40 or more.",
        ),
        (
            ["train", "knn-deskew", "--limit", "50"],
            "knn-deskew keeps 40 principal components, so each of its fits needs 40 training images or more, and "
            "--limit 50 leaves 33 in a fold of its 3-fold cross-validation; give a larger --limit, or --cv 0.",
        ),
        (
            ["train", "knn-deskew", "--limit", "30"],  # too few for the final fit too: --cv 0 would not help
            "knn-deskew keeps 40 principal components, so each of its fits needs 40 training images or more, and "
            "--limit 30 leaves 30; give --limit 40 or more.",
        ),
        (
            ["compare", "svm-rbf", "--limit", "30"],
            "svm-rbf keeps 50 principal components, so each of its fits needs 50 training images or more, and "
            "--limit 30 leaves 30; give --limit 50 or more.",
        ),
    ],
)
def test_a_limit_smaller_than_a_recipes_principal_components_is_one_sentence(mnist_full, tmp_path, args, says):
    """scikit-learn's traceback ("ValueError: n_components=40 must be between 0 and min(n_samples, n_features)=20
    with svd_solver='full'"), after the data had loaded."""
    extra = ["--tracking-uri", str(tmp_path / "runs.db")] if args[0] == "compare" else []
    result = runner.invoke(app, [*args, *extra, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1] == f"Error: {says}"
    assert not (tmp_path / "o" / "model.json").exists() and not (tmp_path / "o" / "models").exists()


def test_a_training_set_of_a_users_own_too_small_for_a_fold_is_not_told_to_raise_a_limit():
    """50 images of a user's own (no --limit given) were told "give a larger limit", which there was none of."""
    from mnistlab.lab.options import RunOptions
    from mnistlab.models.recipes import get_recipe

    recipe = get_recipe("knn-deskew")
    with pytest.raises(ParameterError) as said:
        RunOptions().for_recipe(recipe).check_fit_sizes(recipe, np.repeat(np.arange(10), 5))
    assert str(said.value).endswith("the training set leaves 33 in a fold of its 3-fold cross-validation; give it "
                                    "more training images, or --cv 0.")  # fmt: skip


@pytest.mark.parametrize(("recipe", "kept"), [("knn-deskew", 40), ("svm-rbf", 50)])
def test_images_of_fewer_pixels_than_a_recipe_keeps_components_are_one_sentence_before_any_fit(tmp_path, recipe, kept):
    """A folder of 6x6 images: compare and train of a PCA recipe failed mid-run in scikit-learn's traceback
    (ValueError: n_components=40 must be between 0 and min(n_samples, n_features)=36)."""
    from mnistlab.errors import DatasetError
    from mnistlab.lab.train import train_recipe
    from mnistlab.testing import write_idx_folder

    rng = np.random.default_rng(0)
    y, y_test = np.arange(300) % 10, np.arange(100) % 10
    X, X_test = ((rng.random((len(labels), 6, 6)) * 255).astype(np.uint8) for labels in (y, y_test))
    folder = write_idx_folder(tmp_path / "small", {"train_images": X, "train_labels": y, "test_images": X_test,
                                                   "test_labels": y_test})  # fmt: skip
    says = (
        f"{recipe} keeps {kept} principal components of each image, more than the 36 pixels the images of small "
        f"hold; use images of {kept} pixels or more, or a model without so many components (logreg, knn and "
        "extra-trees keep none)."
    )
    store = tmp_path / "s.db"
    args = ["compare", "logreg", recipe, "--dataset", str(folder), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{store}"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1] == f"Error: {says}"
    assert not store.exists()  # before any fit, or any run recorded
    with pytest.raises(DatasetError, match="more than the 36 pixels these images hold"):
        train_recipe(recipe, cv=0, out=tmp_path / "m", data=(X, X_test, y, y_test))
    assert not (tmp_path / "m").exists()


def test_a_folder_of_images_that_are_not_square_is_one_sentence_before_any_fit(tmp_path):
    """A folder of 28 x 20 images: compare fitted every model on their 560 pixels (a CNN on them laid out as a
    24 x 24 image), recorded the runs, then failed drawing the report ("560 pixels per row, expected a square
    number ... flattened row by row"), a sentence about arrays the user never gave."""
    from mnistlab.testing import write_idx_folder

    rng = np.random.default_rng(0)
    y, y_test = np.arange(100) % 10, np.arange(40) % 10
    X, X_test = ((rng.random((len(labels), 28, 20)) * 255).astype(np.uint8) for labels in (y, y_test))
    folder = write_idx_folder(tmp_path / "wide", {"train_images": X, "train_labels": y, "test_images": X_test,
                                                  "test_labels": y_test})  # fmt: skip
    for model in ("knn", "cnn-fast"):
        assert _compare_refused(tmp_path, folder, model) == (
            f"Error: {folder / 'train-images-idx3-ubyte.gz'} holds images of 28 x 20 pixels (height x width), and "
            "mnistlab's models read square images only; crop or pad them to a square."
        )


def _compare_refused(tmp_path, folder, model: str) -> str:
    """The last line ``compare MODEL --dataset FOLDER`` says, having refused the folder before any fit or run."""
    store = tmp_path / "s.db"
    args = ["compare", model, "--cv", "0", "--dataset", str(folder), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{store}"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert not store.exists() and not (tmp_path / "r").exists()  # before any fit, or any run recorded
    return result.stderr.strip().splitlines()[-1]


def test_test_images_of_a_class_no_training_image_has_are_one_sentence_before_any_fit(tmp_path):
    """Training files of 0s and 3s, test files of 0s, 3s and 7s: compare fitted, and every model got each 7 wrong
    (knn 66%) without a word of why; evaluate_model(data=...) refuses such test labels already."""
    from mnistlab.testing import write_idx_folder

    rng = np.random.default_rng(0)
    y, y_test = np.arange(100) % 2 * 3, np.arange(30) % 3 * 3 + np.arange(30) % 3 // 2  # 0 and 3; 0, 3 and 7
    X, X_test = ((rng.random((len(labels), 8, 8)) * 255).astype(np.uint8) for labels in (y, y_test))
    folder = write_idx_folder(tmp_path / "some", {"train_images": X, "train_labels": y, "test_images": X_test,
                                                  "test_labels": y_test})  # fmt: skip
    assert sorted(set(y_test.tolist())) == [0, 3, 7]
    assert _compare_refused(tmp_path, folder, "knn") == (
        f"Error: {folder / 't10k-labels-idx1-ubyte.gz'} labels 10 test images with classes no training image has "
        "(7), so every model would get them wrong; give test and training files of the same classes."
    )


def test_serve_refuses_a_busy_port_before_loading_the_model():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port), "--model", "/nonexistent/model"])
    assert f"Cannot listen on 127.0.0.1 port {port}" in one_error_line(result)


def test_serve_refuses_an_unknown_host():
    result = runner.invoke(app, ["serve", "--host", "no-such-host.invalid"])
    assert "--host 'no-such-host.invalid' is not an address" in one_error_line(result)


def test_serve_refuses_an_address_of_another_machine_as_a_host_not_as_a_busy_port():
    # 192.0.2.1 (TEST-NET-1) is no machine's own: the bind fails with "Cannot assign requested address", which
    # was said as a port in use ("stop the program using it or pick another --port").
    result = runner.invoke(app, ["serve", "--host", "192.0.2.1", "--port", "42001"])
    line = one_error_line(result)
    assert "--host '192.0.2.1' is not an address of this machine" in line and "--port" not in line, line


def test_serve_refuses_a_link_local_host_without_its_interface_as_a_host_not_as_a_busy_port():
    # fe80::1 without "%eth0": the bind fails with "Invalid argument", which was said as a port in use.
    result = runner.invoke(app, ["serve", "--host", "fe80::1", "--port", "42001", "--model", "/nonexistent/model"])
    line = one_error_line(result)
    assert "Cannot listen on fe80::1 port 42001 (Invalid argument)" in line, line
    assert "give --host one of this machine's addresses" in line and "stop the program" not in line, line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_serve_refuses_a_privileged_port_saying_why_not_as_a_busy_port():
    result = runner.invoke(app, ["serve", "--port", "1", "--model", "/nonexistent/model"])
    line = one_error_line(result)
    assert "Cannot listen on 127.0.0.1 port 1 (Permission denied)" in line and "needs root" in line, line
    assert "stop the program" not in line, line


@pytest.mark.parametrize(
    "kwargs, param, message",
    [
        ({"seed": -1}, "seed", "seed must be a whole number from 0 to 4294967295, got -1."),
        ({"seed": MAX_SEED + 1}, "seed", "got 4294967296"),
        ({"seed": 1.5}, "seed", "got 1.5"),
        ({"cv": 100000, "limit": 2000}, "cv", "cv must be at most the 2000 training images"),
        ({"cv": True}, "cv", "got True"),
        ({"split": "random", "test_size": float("inf")}, "test_size", "got inf"),
        ({"split": "random", "test_size": float("nan")}, "test_size", "got nan"),
        ({"split": "random", "test_size": 5}, "test_size", "at least 10 test images, got 5"),
        ({"test_size": 0.2}, "test_size", "applies to the random split only"),
        ({"limit": 5}, "limit", "limit must be a count of at least 20"),
        ({"n_jobs": 100000}, "n_jobs", "at most 256"),
        ({"target": 1.5}, "target", "target must be an accuracy above 0 and at most 1, got 1.5."),
    ],
)
def test_run_options_refuse_what_the_cli_refuses(kwargs, param, message):
    with pytest.raises(ParameterError) as info:
        RunOptions(**kwargs)
    assert info.value.param == param and message in str(info.value)


def test_train_recipe_checks_its_output_folder_first(a_file):
    with pytest.raises(ParameterError, match="Cannot write out /proc/x") as info:
        train_recipe("knn", out="/proc/x")
    assert info.value.param == "out"
    with pytest.raises(ParameterError, match="is a file, not a folder"):
        train_recipe("knn", out=a_file)


def test_a_folder_option_naming_a_link_to_nothing_is_refused_before_any_work(tmp_path):
    """A link in a loop or to a folder that is gone (or a path below one) was taken as a folder to make: the
    check climbed past it to tmp_path, and every file's image then failed to save (File exists)."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "gone").symlink_to(tmp_path / "removed")
    photo = tmp_path / "7.png"
    photo.write_bytes(b"never read: the option is refused first")
    for given, link in [("loop", "loop"), ("loop/seen", "loop"), ("gone", "gone"), ("gone/seen", "gone")]:
        result = runner.invoke(app, ["predict", str(photo), "--save-preprocessed", str(tmp_path / given)])
        assert result.exit_code == 2 and result.stdout == "", (given, result.output)
        assert result.stderr == (
            f"Error: Cannot write --save-preprocessed {tmp_path / given} ({tmp_path / link} is a link to nothing: "
            "a loop, or its target is gone); choose a place you can write to.\n"
        )
    assert not (tmp_path / "removed").exists()


def test_writable_checks_accept_what_can_be_written_and_leave_nothing(tmp_path):
    assert check_writable_dir(tmp_path / "new" / "deeper", "out") == tmp_path / "new" / "deeper"
    assert check_writable_file(tmp_path / "new" / "model.onnx", "onnx") == tmp_path / "new" / "model.onnx"
    assert list(tmp_path.iterdir()) == []  # probed, not created


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "MODEL", "--out", ""],
        ["compare", "--out="],
        ["show", "--out", ""],
        ["show", "--data-dir", ""],
        ["export", "MODEL", "--onnx", ""],
        ["sweep", "logreg", "--out", ""],
        ["predict", "digit.png", "--save-preprocessed", ""],
        ["predict", "digit.png", "--model", ""],
        ["serve", "--model="],
    ],
)
def test_an_empty_path_option_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch, args):
    # typer turned "" into Path("."): evaluate drew its figures, compare wrote its report, into the current folder.
    monkeypatch.chdir(tmp_path)
    flag = next(a for a in args if a.startswith("--")).split("=")[0]
    result = runner.invoke(app, [a.replace("MODEL", str(tmp_path)) for a in args])
    line = one_error_line(result)
    assert line.startswith(f"Error: Invalid value for '{flag}': is empty, which would mean the current folder;")
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_to_predict_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch):
    # `mnistlab predict "$PHOTO"` with PHOTO unset read every image in the current folder.
    (tmp_path / "7.png").write_bytes(encode_png(np.zeros((28, 28), np.uint8)))
    monkeypatch.chdir(tmp_path)
    for args in ([""], ["7.png", ""]):
        result = runner.invoke(app, ["predict", *args, "--json"])
        line = one_error_line(result)
        assert line.startswith("Error: Invalid value for 'files': is empty, which would mean the current folder;")
        assert result.exit_code == 2 and result.stdout == ""


FILE_OPTIONS = {
    "show --out": ["show", "digits", "--out", "{target}"],
    "export --onnx": ["export", "{model}", "--onnx", "{target}"],
    "sweep --out": ["sweep", "logreg", "--param", "logreg__C=1", "--limit", "100", "--out", "{target}"],
}


@pytest.mark.parametrize("name", ["figs/", "digits.png/", "model.onnx/", "best.json/"])
@pytest.mark.parametrize("case", list(FILE_OPTIONS))
def test_a_file_option_ending_in_a_slash_names_a_folder_and_is_refused(case, name, tmp_path, monkeypatch):
    # Path() dropped the slash: `show --out digits.png/` and `sweep --out best.json/` wrote a file under the
    # folder's name, `show --out figs/` was told of a suffix '' of "figs".
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    args = [a.format(model=tmp_path / "model", target=name) for a in FILE_OPTIONS[case]]
    line = one_error_line(runner.invoke(app, args))
    flag = args[-2]
    assert line.startswith(f"Error: Invalid value for '{flag}': {name} ends in /, which names a folder;"), line
    assert "give a file name inside it" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing written


@pytest.mark.parametrize("case", list(FILE_OPTIONS))
def test_a_file_option_naming_an_existing_folder_is_refused(case, tmp_path):
    folder = tmp_path / "taken.json"  # named as a spec would be: only a folder, not a suffix, is wrong with it
    folder.mkdir()
    args = [a.format(model=tmp_path, target=folder) for a in FILE_OPTIONS[case]]
    line = one_error_line(runner.invoke(app, args))
    assert line.endswith(f"{folder} is a folder; give a file name inside it."), line
    assert list(folder.iterdir()) == []


def test_a_file_path_ending_in_a_slash_is_refused_in_python_too(tmp_path):
    with pytest.raises(ParameterError, match=r"best\.json/ ends in /, which names a folder") as info:
        check_writable_file(f"{tmp_path}/best.json/", "out_dir")
    assert info.value.param == "out_dir"
    assert check_writable_file(tmp_path / "best.json", "out_dir") == tmp_path / "best.json"


@pytest.mark.parametrize("command", ["train", "compare", "sweep"])
def test_the_help_says_how_many_images_the_random_split_tests_on_by_default(command):
    # --test-size's help said what it takes, not what --split random does without it: as many test images as
    # the official split (10,000 of MNIST), where scikit-learn's train_test_split would take a quarter.
    done = runner.invoke(app, [command, "--help"])
    assert done.exit_code == 0, done.output
    text = " ".join(done.stdout.replace("│", " ").split())  # the help's lines, wrapped in a box, as one line
    assert "for --split random (default: as many test images as the official split)" in text


def test_an_option_refused_once_the_command_runs_is_one_line_with_no_blank_line_before_it(mnist_full):
    # The progress display, started before the first step, was stopped by the error and left an empty line on
    # stderr above "Error: --limit must be between 20 and 60000 training images, got 70000."
    done = runner.invoke(app, ["train", "sgd-hinge", "--limit", "70000"])
    assert done.exit_code == 2, done.output
    assert done.stderr == "Error: --limit must be between 20 and 60000 training images, got 70000.\n"
