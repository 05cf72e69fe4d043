"""`mnistlab data info` and `mnistlab show` through typer's test runner."""

import json
import re

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.data.idx import write_idx
from mnistlab.testing import random_idx_arrays, write_idx_folder

runner = CliRunner()


def test_data_info_json_contract(mnist_full):
    result = runner.invoke(app, ["data", "info", "mnist", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert {"name", "n_train", "n_test", "verified", "path"} <= info.keys()
    assert (info["name"], info["n_train"], info["n_test"], info["verified"]) == ("mnist", 60000, 10000, True)
    assert info["class_counts"]["test"][1] == 1135


def test_data_info_human_output(mnist_full, tmp_path, monkeypatch):
    result = runner.invoke(app, ["data", "info"])
    words = " ".join(result.stdout.split())  # as the terminal's width wraps it
    assert result.exit_code == 0 and "60,000 train + 10,000 test" in words
    assert "verified yes (sha256 of every file matches; the cached arrays match their digests)" in words
    # No cache to vouch for (its folder cannot be made): the files were read, and that is what it says.
    (tmp_path / "blocker").write_text("a file where the cache folder would be\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocker"))
    uncached = " ".join(runner.invoke(app, ["data", "info"]).stdout.split())
    assert "verified yes (sha256 of every file matches, read from them)" in uncached, uncached


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "emnist"], "Unknown dataset 'emnist'"),
        (["data", "info", "--data-dir", "/nonexistent/folder"], "/nonexistent/folder does not exist; give the folder"),
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
        # --out was dropped without a word: the digit went to the terminal and no PNG was written.
        (["show", "--ascii", "--out", "x.png"], "--ascii prints the digit in the terminal and writes no PNG; drop"),
        # Both were dropped without a word: --balance drew both splits, --first the first images, unseeded.
        (["show", "--balance", "--split", "test"], "--balance plots the class counts of both splits; drop --split"),
        (["show", "--first", "5", "--seed", "3"], "--seed draws the images --random picks; drop --seed, or give"),
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
        png = [] if "--ascii" in args else ["--out", str(tmp_path / "x.png")]  # --ascii writes no PNG
        result = runner.invoke(app, ["show", "--data-dir", str(folder), *args, *png])
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


def test_help_pages_show_flags_without_a_type():
    """typer wrote every flag as `--json <bool>`, `--help <bool>`, as if it took a value; every command's help
    page shows its flags bare, and the flags still act as flags."""
    group = typer.main.get_command(app)
    pages = [[]] + [[name] for name in group.commands]
    pages += [[name, sub] for name, cmd in group.commands.items() for sub in getattr(cmd, "commands", {})]
    for page in pages:
        result = runner.invoke(app, [*page, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (page, result.output)
        assert "--help" in result.stdout and "<bool>" not in result.stdout, (page, result.stdout)
    assert json.loads(runner.invoke(app, ["recipes", "--json"]).stdout)


def test_help_pages_show_a_repeatable_option_as_taking_one_value():
    """In click's plain help, typer wrote `--index <list[int]>` and `--dataset <list[str]>`, as if each took a
    list; each takes one value, repeated."""
    group = typer.main.get_command(app)
    for page, line in ((["show"], "--index I "), (["compare"], "--dataset NAME ")):
        result = runner.invoke(app, [*page, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert line in result.stdout, result.stdout
    for name in group.commands:
        options = runner.invoke(app, [name, "--help"], env={"COLUMNS": "80"}).stdout.partition("Options:")[2]
        assert "<list[" not in options, (name, options)


def test_help_pages_name_values_by_a_word_not_a_python_type():
    """typer wrote a value's Python type where an option or argument had no metavar: `--seed <int>`,
    `--test-size <float>`, `files... <list[Path]>`; a learner reads `--seed N`, `--test-size NUMBER`, `files...`."""
    group = typer.main.get_command(app)
    pages = [[name] for name in group.commands] + [["data", sub] for sub in group.commands["data"].commands]
    for page in pages:
        text = runner.invoke(app, [*page, "--help"], env={"COLUMNS": "80"}).stdout
        assert not re.search(r"<(int|float|str|Path|list)", text), (page, text)
    text = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "80"}).stdout
    assert "\n  files...  Images" in text and "--top N " in text, text
    assert "--read-timeout NUMBER " in runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "80"}).stdout


def test_show_without_a_selection_shows_a_small_split_whole(mnist_full, tmp_path):
    """The default 30 digits of a split that holds 5 (a folder of IDX files) were refused as "--first 30", a
    flag no one gave; the grid shows the 5, and --ascii the first."""
    from mnistlab.data.idx import write_idx

    images, labels = mnist_full.images, mnist_full.target
    write_idx(tmp_path / "train-images-idx3-ubyte", images[:5])
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:5].astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images[-3:])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[-3:].astype(np.uint8))
    out = tmp_path / "grid.png"
    grid = runner.invoke(app, ["show", "--data-dir", str(tmp_path), "--out", str(out)])
    assert grid.exit_code == 0, grid.output
    _png(out)
    ascii_art = runner.invoke(app, ["show", "--data-dir", str(tmp_path), "--ascii", "--split", "test"])
    assert ascii_art.exit_code == 0, ascii_art.output
    assert ascii_art.stdout.splitlines()[0] == f"test[0]: label {labels[-3]}"
    too_many = runner.invoke(app, ["show", "--data-dir", str(tmp_path), "--first", "6", "--out", str(out)])
    assert too_many.exit_code == 2 and "--first must be between 1 and 5, got 6." in too_many.stderr


@pytest.mark.parametrize("name", ["grid.txt", "grid", ".png"])
@pytest.mark.parametrize("mode", [[], ["--mean"], ["--balance"]])
def test_show_refuses_an_out_that_is_no_png_name_before_loading_the_data(tmp_path, mode, name):
    # Its suffix was checked only as the figure was saved: after the data had loaded (or failed to, which was
    # said instead here), or after a download, and the drawing.
    out = tmp_path / name
    result = runner.invoke(app, ["show", "--data-dir", str(tmp_path / "none"), *mode, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"Error: --out {out} has suffix {out.suffix!r}; give a file name ending in .png."
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--mean", "--balance", "--first"])
def test_show_names_fashion_mnists_classes_by_their_clothes(tmp_path, monkeypatch, flag):
    # --mean and --balance labelled Fashion-MNIST's classes 0-9, where the grid and --ascii name them ("Sneaker");
    # the mean images and the grid were titled "Mean digit per class" and "30 digits", of clothes.
    # A stand-in for Fashion-MNIST: its registered spec, with the checksums of a few random images.
    import dataclasses

    from mnistlab.data.registry import DATASETS, ROLES
    from mnistlab.data.sources import sha256_decompressed
    from mnistlab.lab import plots

    spec = DATASETS["fashion-mnist"]
    arrays = random_idx_arrays(np.random.default_rng(0), 200, 50)
    folder = write_idx_folder(tmp_path / "fashion", arrays, "fashion-mnist")
    checksums = {role: sha256_decompressed(folder / spec.files[role]) for role in ROLES}
    monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(spec, sha256=checksums))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "shown.png"
    args = [flag, "12"] if flag == "--first" else [flag]
    result = runner.invoke(app, ["show", "fashion-mnist", "--data-dir", str(folder), *args, "--out", str(out)])
    assert result.exit_code == 0, result.output

    def drawn(names) -> bytes:  # the same figure makes the same PNG bytes
        images, labels = arrays["train_images"], arrays["train_labels"]
        if flag == "--mean":
            title = "Mean image per class"
            return plots.save_mean_digits(images, labels, tmp_path / "m.png", names=names, title=title).read_bytes()
        if flag == "--first":
            shown = [spec.target_names[k] if names else str(k) for k in labels[:12]]
            title = "fashion-mnist train: 12 images"
            return plots.save_digit_grid(images[:12], shown, tmp_path / "g.png", title=title).read_bytes()
        counts = {"train": np.full(10, 20), "test": np.full(10, 5)}
        return plots.save_class_balance(counts, tmp_path / "b.png", names=names).read_bytes()

    assert out.read_bytes() == drawn(spec.target_names)  # the clothes' names
    assert out.read_bytes() != drawn(None)  # not the class numbers


def test_paths_with_brackets_are_printed_as_they_are(tmp_path):
    # rich read them as markup: data info printed the folder "runs[v2]" as "runs" and ended in a MarkupError
    # traceback for "a[/b]"; show said "wrote digits.png" of the file it wrote as "digits[v2].png".
    rng = np.random.default_rng(0)
    for name in ("runs[v2]", "a[/b]c"):
        folder = write_idx_folder(tmp_path / name, random_idx_arrays(rng, 40, 20))
        result = runner.invoke(app, ["data", "info", "--data-dir", str(folder)])
        assert result.exit_code == 0 and result.exception is None, result.output
        printed = "".join(result.stdout.split())  # as the terminal's width wraps it (the paths hold no spaces)
        assert f"path{folder}verified" in printed and f"IDXdatasetfrom{folder}(not" in printed, result.stdout
        png = tmp_path / f"digits{name.replace('/', '')}.png"
        result = runner.invoke(app, ["show", "--data-dir", str(folder), "--first", "3", "--out", str(png)])
        assert result.exit_code == 0 and result.stderr == f"wrote {png}\n", result.output
        _png(png)


def test_data_info_of_scikit_learns_digits_claims_no_file_check_it_did_not_make():
    # It said "verified yes (sha256 of every file matches, read from them)" of digits, which have no files and no
    # published sha256: their checksum is computed from what scikit-learn ships, and checked against nothing.
    result = runner.invoke(app, ["data", "info", "digits"])
    words = " ".join(result.stdout.split())
    assert result.exit_code == 0 and "sha256" not in words and "read from them" not in words, words
    assert "verified yes (bundled with scikit-learn: no files to check)" in words
