"""`mnistlab data info` and `mnistlab show` through typer's test runner."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.data.idx import write_idx

runner = CliRunner()


def test_data_info_json_contract(mnist_full):
    result = runner.invoke(app, ["data", "info", "mnist", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert {"name", "n_train", "n_test", "verified", "path"} <= info.keys()
    assert (info["name"], info["n_train"], info["n_test"], info["verified"]) == ("mnist", 60000, 10000, True)
    assert info["class_counts"]["test"][1] == 1135


def test_data_info_human_output(mnist_full):
    result = runner.invoke(app, ["data", "info"])
    assert result.exit_code == 0
    assert "60,000 train + 10,000 test" in result.stdout and "verified" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "emnist"], "Unknown dataset 'emnist'"),
        (["data", "info", "--data-dir", "/nonexistent/folder"], "does not hold the four IDX files"),
        (["show", "--index", "60000"], "out of range"),
        (["show", "--split", "validation"], "expected one of train, test"),
        (["show", "--first", "0"], "--first must be between"),
        (["show", "--first", "3", "--random", "3"], "Choose one of"),
        (["show", "--index", "-1"], "Index -1 is out of range for the train split; expected 0 to 59999"),
        (["show", "--first", "60000"], "--first must be between 1 and 400, got 60000"),  # the grid's own bound
        (["show", "--mean", "--balance"], "Choose one of --mean or --balance"),
        (["show", "--ascii", "--mean"], "--mean plots every image of the split; drop --first"),
        (["show", "--balance", "--index", "3"], "--balance plots every image of the split"),
        (["show", "--out", "/proc/forbidden/x.png"], "Cannot write"),
        (
            ["data", "info", "digits", "--data-dir", "/tmp"],
            "--data-dir does not apply to digits, which come with scikit-learn; drop --data-dir, or leave out the "
            "name digits to load the folder as it is.",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(mnist_full, args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output and result.stderr.startswith("Error: ")
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def _png(path):
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 10  # not a blank image
    return arr


def test_show_grid_random_index_mean_balance_write_pngs(mnist_full, tmp_path):
    for args in (
        ["--first", "12"],
        ["--index", "0", "--index", "7"],
        ["--random", "20", "--seed", "1", "--split", "test"],
        ["--mean"],
        ["--balance"],
    ):
        out = tmp_path / ("_".join(a.strip("-") for a in args) + ".png")
        result = runner.invoke(app, ["show", *args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert out.is_file() and f"wrote {out}" in result.stderr.replace("\n", "")
        _png(out)


def test_show_ascii_prints_the_digit(mnist_full):
    result = runner.invoke(app, ["show", "--ascii", "--index", "0"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "train[0]: label 5"
    assert len(lines) == 29 and lines[1].strip() == ""  # MNIST's top row is empty
    assert any(set(line) - {" "} for line in lines[5:25])


def test_show_says_a_dataset_of_images_that_are_not_square_cannot_be_drawn(tmp_path):
    # It said "images have shape (30, 12, 20), expected square images: (N, 28, 28) or (N, 784)." of the
    # images it had picked, and --ascii printed the first digit's label line before it.
    rng = np.random.default_rng(0)
    folder = tmp_path / "wide"
    for prefix, n in (("train", 100), ("t10k", 30)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 12, 20), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    said = (
        f"Error: {folder / 'train-images-idx3-ubyte'} holds images of 12 x 20 pixels (height x width), and show "
        "draws square digits only; crop or pad them to a square, or plot the class counts with --balance."
    )
    for args in ([], ["--ascii"], ["--mean"], ["--index", "3"]):
        result = runner.invoke(app, ["show", "--data-dir", str(folder), *args, "--out", str(tmp_path / "x.png")])
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert result.stderr.strip() == said
    assert not (tmp_path / "x.png").exists()
    result = runner.invoke(app, ["show", "--data-dir", str(folder), "--balance", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 0, result.output
    _png(tmp_path / "x.png")


def test_recipes_lists_names_as_json():
    result = runner.invoke(app, ["recipes", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert all({"recipe", "family", "description"} <= r.keys() for r in rows)


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.startswith("mnistlab ")
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "show" in result.stdout and "data" in result.stdout
