"""Predicting digits and numbers from photos, arrays and files, and knowing when not to trust it."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistlab import (
    InputError,
    ModelFileError,
    ParameterError,
    get_recipe,
    predict_array,
    predict_image,
    read_number,
    to_mnist,
)
from mnistlab.cli import app
from mnistlab.models.cards import card_sha256
from mnistlab.testing import make_non_digit, make_number_photo, make_photo, make_pixel_bomb, run_cli, swapping_link
from mnistlab.testing.fonts import FONT_PACKAGES, available_fonts, font_text
from mnistlab.trust.calibration import calibrate_on_mnist, mnist_test_halves
from mnistlab.trust.predict import load_predictor, predict_file
from mnistlab.trust.reader import load_reader
from mnistlab.trust.thresholds import NO_INK, SMALL_INK

runner = CliRunner()
DIGIT_KEYS = {"digit", "probability", "top", "confident", "reason"}


@pytest.fixture(scope="session")
def model(mnist_full):
    """knn-deskew on 10,000 training digits: ~96% on the test set, fitted in seconds."""
    est = get_recipe("knn-deskew").build(0, 1)
    return est.fit(mnist_full.data[:10000], mnist_full.target[:10000])


@pytest.fixture(scope="session")
def predictor(model):
    return load_predictor(model)  # an unsaved estimator: its probability cut comes from the MNIST test set, once


@pytest.fixture(scope="session")
def model_dir(model, tmp_path_factory):
    from mnistlab.models.files import save_model

    path = tmp_path_factory.mktemp("models") / "knn-deskew"
    return save_model(model, path, card={"recipe": "knn-deskew", "seed": 0, "metrics": {"test_accuracy": 0.96}})


@pytest.fixture(scope="session")
def evaluation_digits():
    """Test digits from the half that calibration never saw: (images, labels)."""
    test, labels, _, eval_idx = mnist_test_halves()
    return test[eval_idx], labels[eval_idx]


def same(a: dict, b: dict) -> bool:
    return (
        a["digit"] == b["digit"] and a["reason"] == b["reason"] and np.array_equal(a["mnist_image"], b["mnist_image"])
    )


def naive(data: bytes) -> np.ndarray:
    """The usual advice: open, grayscale, resize to 28x28, flatten."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((28, 28))).reshape(784)


def test_photos_are_read_much_better_than_resize_and_flatten(predictor, model, evaluation_digits):
    images, labels = evaluation_digits
    rng = np.random.default_rng(0)
    photos = [make_photo(images[i], rng) for i in range(80)]
    # One batch through the model; predict_image is to_mnist + describe one at a time.
    results = predictor.describe(np.stack([to_mnist(p) for p in photos]), top=3)
    accuracy = np.mean(np.array([r["digit"] for r in results]) == labels[:80])
    for photo, batched in zip(photos[:3], results):
        assert same(predict_image(photo, predictor), batched)
    baseline = np.mean(model.predict(np.array([naive(p) for p in photos])) == labels[:80])
    assert accuracy >= 0.9, accuracy
    assert baseline <= 0.5, baseline


def test_result_shape(predictor, evaluation_digits):
    images, labels = evaluation_digits
    result = predict_image(make_photo(images[0], np.random.default_rng(1)), predictor, top=4)
    assert DIGIT_KEYS | {"mnist_image"} == set(result)
    assert result["mnist_image"].shape == (28, 28) and result["mnist_image"].dtype == np.uint8
    assert len(result["top"]) == 4 and result["top"][0] == [result["digit"], result["probability"]]
    probs = [p for _, p in result["top"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
    assert isinstance(result["confident"], bool)
    with pytest.raises(InputError, match="top"):
        predict_image(images[0], predictor, top=0)


def test_numbers_are_read_exactly(predictor, evaluation_digits):
    images, labels = evaluation_digits
    rng = np.random.default_rng(2)
    exact = 0
    for _ in range(12):
        idx = rng.choice(len(images), int(rng.integers(2, 6)), replace=False)
        result = read_number(make_number_photo(images[idx], rng), predictor)
        exact += result["number"] == "".join(map(str, labels[idx]))
        assert set(result) == {"number", "digits", "confident"}
    assert exact >= 9, exact


def test_real_digits_are_rarely_flagged(predictor, evaluation_digits):
    images, labels = evaluation_digits
    flagged = np.mean([not r["confident"] for r in predictor.describe(images[:1000], top=1)])
    assert flagged <= 0.025, flagged
    assert same(predict_array(images[0], predictor), predictor.describe(images[:1], top=3)[0])
    cut = predictor.cut
    assert cut.flag_rate_evaluation <= 0.02 and "split at random" in cut.method


@pytest.mark.parametrize("kind", ["blank", "noise", "texture"])
def test_pages_without_a_digit_are_not_confident(predictor, kind):
    rng = np.random.default_rng(3)
    results = [predict_image(make_non_digit(kind, rng), predictor) for _ in range(5)]
    assert not any(r["confident"] for r in results)
    assert all(r["reason"] for r in results)
    if kind == "blank":
        assert {r["reason"] for r in results} == {NO_INK}
        assert read_number(make_non_digit("blank", rng), predictor) == {"number": "", "digits": [], "confident": False}


def test_most_non_digits_are_flagged(predictor):
    rng = np.random.default_rng(4)
    kinds = ["scribble", "letter", "shapes"]
    images = np.stack([to_mnist(make_non_digit(k, rng)) for k in kinds for _ in range(8)])
    flagged = [not r["confident"] for r in predictor.describe(images, top=1)]
    assert np.mean(flagged) >= 0.5  # the benchmark measures the full rates (benchmarks/RESULTS.md)


def test_arrays_and_array_files(predictor, evaluation_digits, tmp_path):
    digit = evaluation_digits[0][5]
    expected = predict_array(digit, predictor)
    np.save(tmp_path / "flat.npy", digit.reshape(784))
    np.save(tmp_path / "square.npy", digit.astype(np.float32) / 255)
    np.savetxt(tmp_path / "row.csv", digit.reshape(1, 784), fmt="%d", delimiter=",")
    for name in ("flat.npy", "square.npy", "row.csv"):
        got = predict_array(tmp_path / name, predictor)
        assert got["digit"] == expected["digit"] and got["probability"] == pytest.approx(expected["probability"])
    np.save(tmp_path / "small.npy", np.zeros((6, 6)))
    with pytest.raises(InputError, match=r"got 36 values with shape \(6, 6\), expected 784 values or a 28x28 array"):
        predict_array(tmp_path / "small.npy", predictor)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="could not be read"):
        predict_array(tmp_path / "objects.npy", predictor)  # never unpickled
    with pytest.raises(InputError, match="0-255"):
        predict_array(np.full(784, 300.0), predictor)


def test_a_blank_array_file_read_as_a_number_holds_no_digit(predictor, evaluation_digits, tmp_path):
    # As read_number answers a blank image: with --number, a blank .npy was the number "1", its digit "no ink found".
    np.save(tmp_path / "blank.npy", np.zeros(784, np.uint8))
    assert predict_file(tmp_path / "blank.npy", predictor, number=True) == {
        "number": "",
        "digits": [],
        "confident": False,
    }
    np.save(tmp_path / "digit.npy", evaluation_digits[0][5])
    got = predict_file(tmp_path / "digit.npy", predictor, number=True)
    assert got["number"] == str(got["digits"][0]["digit"]) and len(got["digits"]) == 1


def jpeg_bytes(grey: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.skipif("dkg" not in available_fonts(), reason=f"apt-get install {FONT_PACKAGES}")
def test_a_digit_small_in_a_big_photo_says_to_crop_it_and_reads_once_cropped():
    # 180 px tall in a 4000 x 3000 photo: at the 320 px work size it spans 4.5% of the longer side, as the
    # specks of an empty page do, and the answer said "no ink found" of a digit anyone can see.
    ink = font_text("3", "dkg", np.random.default_rng(3), 180)
    photo = np.full((3000, 4000), 235, np.uint8)
    photo[1200 : 1200 + ink.shape[0], 1800 : 1800 + ink.shape[1]] = (235 - 200 * ink).astype(np.uint8)
    whole = predict_image(jpeg_bytes(photo))
    assert not whole["confident"] and whole["reason"] == SMALL_INK and "crop" in SMALL_INK
    cropped = predict_image(jpeg_bytes(photo[1000:1600, 1600:2200]))
    assert cropped["confident"] and cropped["digit"] == 3


def test_without_a_model_the_shipped_reader_answers(evaluation_digits):
    images, labels = evaluation_digits
    results = [predict_image(images[i]) for i in range(20)]
    assert np.mean([r["digit"] == labels[i] for i, r in enumerate(results)]) >= 0.95
    assert load_predictor().card["name"] == "mnistlab default reader"
    # Nothing at all (a blank array, canvas or page): no advice to crop what is not there.
    assert predict_image(np.zeros((28, 28), np.uint8))["reason"] == NO_INK == "no ink found"
    with pytest.raises(ParameterError, match="fitted classifier"):  # the caller's argument, not a model file
        predict_image(images[0], object())


def test_a_model_saved_without_its_cut_is_calibrated_once_and_cached(model_dir, evaluation_digits):
    image = evaluation_digits[0][7]
    result = predict_image(image, model_dir)
    assert result["digit"] == int(evaluation_digits[1][7])
    card = json.loads((model_dir / "model.json").read_text())
    assert "calibration" not in card  # saved by hand, as cards were before `mnistlab train` stored the cut
    folder = os.path.join(os.environ["XDG_CACHE_HOME"], "mnistlab", "calibration")
    # One file per model *and* reader: other not-a-digit thresholds mean another cut.
    (cached,) = [f for f in os.listdir(folder) if f.startswith(f"cut-{card['weights_sha256']}-")]
    saved = json.loads(Path(folder, cached).read_text())
    fields = {"min_probability", "flag_rate_calibration", "flag_rate_evaluation", "method", "measure"}
    assert set(saved) == fields | {"cut_sha256"}
    assert 0 <= saved["min_probability"] < 1 and saved["flag_rate_evaluation"] <= 0.02
    # A cut cached before cuts weighed the probability by the digit's shape (or carried a checksum) is calibrated again.
    older = {k: v for k, v in saved.items() if k in fields - {"measure"}} | {"min_probability": 0.99}
    Path(folder, cached).write_text(json.dumps(older))
    cut = calibrate_on_mnist(load_predictor(model_dir).classify, load_reader(), card["weights_sha256"])
    assert cut.to_json() | {"cut_sha256": saved["cut_sha256"]} == saved == json.loads(Path(folder, cached).read_text())


def test_a_card_given_another_cut_is_loaded_again(model_dir, tmp_path):
    """Loaded models were kept by their weights' sha256 alone: a card re-signed with another cut (the weights
    unchanged) kept answering with the cut loaded first, for as long as the process ran."""
    from mnistlab.models.cards import card_sha256

    folder = Path(shutil.copytree(model_dir, tmp_path / "model"))
    card = json.loads((folder / "model.json").read_text())
    for cut in (0.2, 0.9):
        card["calibration"] = {
            "min_probability": cut,
            "flag_rate_calibration": 0.01,
            "flag_rate_evaluation": 0.01,
            "method": "set by hand",
            "measure": "probability_x_digit_shape",
        }
        card["card_sha256"] = card_sha256(card)
        (folder / "model.json").write_text(json.dumps(card))
        assert load_predictor(folder).cut.min_probability == cut


def test_a_trained_model_carries_its_cut_in_its_card(tmp_path):
    from mnistlab import train_recipe

    result = train_recipe("knn-deskew", limit=2000, cv=0, out=tmp_path / "knn", seed=0)
    card = json.loads((tmp_path / "knn" / "model.json").read_text())
    cut = card["calibration"]
    assert 0 < cut["min_probability"] < 1 and "the run's test set" in cut["method"]
    assert cut["measure"] == "probability_x_digit_shape"
    loaded = load_predictor(result["model_dir"]).cut
    assert (loaded.min_probability, loaded.measure) == (cut["min_probability"], cut["measure"])
    # A card written before cuts recorded their measure still loads, and compares the probability alone.
    older = shutil.copytree(tmp_path / "knn", tmp_path / "older")
    card["calibration"] = {k: v for k, v in cut.items() if k != "measure"}
    card["card_sha256"] = card_sha256(card)
    (older / "model.json").write_text(json.dumps(card))
    assert load_predictor(older).cut.measure == "probability"


# --- the command line -------------------------------------------------------------------


@pytest.fixture(scope="session")
def files(tmp_path_factory, evaluation_digits):
    images, labels = evaluation_digits
    rng = np.random.default_rng(5)
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "digit.jpg").write_bytes(make_photo(images[10], rng, style="paper"))
    (folder / "canvas.png").write_bytes(make_photo(images[11], rng, style="canvas-white-on-black"))
    (folder / "number.png").write_bytes(make_number_photo(images[12:15], rng, style="canvas-black-on-white"))
    good = folder / "canvas.png"
    (folder / "cut.png").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(make_pixel_bomb(100_000, 100_000))
    np.save(folder / "wrong.npy", np.zeros(36))
    np.save(folder / "digit.npy", images[13])
    return folder, labels[10:15]


def test_cli_json_lines_and_per_file_errors(model_dir, files):
    folder, labels = files
    names = ["digit.jpg", "cut.png", "canvas.png", "notes.txt", "empty.png", "bomb.png", "wrong.npy", "digit.npy"]
    result = runner.invoke(app, ["predict", *[str(folder / n) for n in names], "--model", str(model_dir), "--json"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(folder / n) for n in names]
    ok = {n: line for n, line in zip(names, lines) if "error" not in line}
    assert set(ok) == {"digit.jpg", "canvas.png", "digit.npy"}
    for line in ok.values():
        assert set(line) == {"file"} | DIGIT_KEYS
    assert ok["digit.jpg"]["digit"] == labels[0] and ok["canvas.png"]["digit"] == labels[1]
    errors = {n: line["error"] for n, line in zip(names, lines) if "error" in line}
    assert "truncated" in errors["cut.png"] and "not an image" in errors["notes.txt"]
    assert "empty" in errors["empty.png"] and "pixels" in errors["bomb.png"]
    assert "expected 784 values or a 28x28 array" in errors["wrong.npy"]


def test_cli_number_table_and_preprocessed_images(model_dir, files, tmp_path, monkeypatch):
    folder, labels = files
    result = runner.invoke(
        app,
        [
            "predict",
            str(folder / "number.png"),
            "--number",
            "--json",
            "--model",
            str(model_dir),
            "--save-preprocessed",
            str(tmp_path / "seen"),
        ],
    )
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert set(line) == {"file", "number", "digits", "confident"}
    assert line["number"] == "".join(map(str, labels[2:5]))
    assert all(set(d) == DIGIT_KEYS for d in line["digits"])
    saved = sorted(p.name for p in (tmp_path / "seen").iterdir())
    assert saved == ["number-0.png", "number-1.png", "number-2.png"]
    assert Image.open(tmp_path / "seen" / "number-0.png").size == (28, 28)
    # `predict --help` said every file's image is saved as <file stem>.png, with --number too
    usage = runner.invoke(app, ["predict", "--help"], terminal_width=200).stdout
    assert "with --number <file stem>-<i>.png for its digits" in usage, usage

    monkeypatch.chdir(folder)  # short names, so the table does not abbreviate them
    table = runner.invoke(app, ["predict", "digit.jpg", "notes.txt", "--model", str(model_dir)])
    assert table.exit_code == 1
    assert "digit.jpg" in table.stdout and "Digit" in table.stdout
    assert "notes.txt" in table.stderr and "not an image" in table.stderr


def test_a_number_doubted_as_a_whole_says_why_on_the_command_line(tmp_path):
    """A pen row of 21374 that the shipped reader reads again (a second look) keeps the second reading's digits,
    each confident, and doubts the row: the table said "no: no digits found" beside the digits it had found."""
    from mnistlab.testing.hands import number_samples

    photo = tmp_path / "row.jpg"
    photo.write_bytes(number_samples("pen", 6, np.random.default_rng(7))[5].data)
    answer = read_number(photo)
    assert answer["digits"] and not answer["confident"] and all(d["confident"] for d in answer["digits"])
    result = run_cli(["predict", str(photo), "--number"], env={"COLUMNS": "300"})  # a row a line
    assert result.returncode == 0, result.stderr
    assert "no digits found" not in result.stdout
    assert "no: each digit looks clear on its own, but the first look at the photo doubted the number" in result.stdout


def test_a_long_number_is_shown_whole_in_a_narrow_table(tmp_path):
    """A row of 20 pen digits read in an 80-column terminal beside a doubted digit's reason: the table cut the
    number short ("7450048926246557…"), the number read nowhere in full; its column now folds, as the file's does."""
    from mnistlab.testing.hands import number_samples

    photo = tmp_path / "row.png"
    rows = number_samples("pen", 4, np.random.default_rng(7), surface="canvas-black-on-white", lengths=(12, 20))
    photo.write_bytes(rows[2].data)
    answer = json.loads(run_cli(["predict", str(photo), "--number", "--json", "--jobs", "1"]).stdout)
    assert len(answer["number"]) >= 20 and not answer["confident"], answer["number"]
    result = run_cli(["predict", str(photo), "--number", "--jobs", "1"], env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = [line.split("\u2502") for line in result.stdout.splitlines() if line.startswith("\u2502")]
    assert "".join(cells[2].strip() for cells in lines) == answer["number"], result.stdout


def test_number_answers_rank_top_digits_for_images_as_for_arrays(model_dir, files):
    """`predict --number --top 1` ranked 3 digits for each digit of an image (read_number took no top) and 1
    for an array file's: one run's JSON lines differed in shape. Both honour --top now, as read_number does."""
    folder, _ = files
    paths = [str(folder / "number.png"), str(folder / "digit.npy")]
    result = runner.invoke(app, ["predict", *paths, "--number", "--top", "1", "--json", "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(d["top"]) for line in lines for d in line["digits"]] == [1, 1, 1, 1]
    answer = read_number(folder / "number.png", model_dir, top=5)
    assert all(len(d["top"]) == 5 for d in answer["digits"]) and len(answer["digits"]) == 3
    with pytest.raises(InputError, match="top must be a whole number from 1 to 10, got 0"):
        read_number(folder / "number.png", model_dir, top=0)


def test_array_files_are_bounded_before_reading_and_an_empty_one_is_named(tmp_path):
    np.save(tmp_path / "big.npy", np.zeros(100_000))  # 800 kB: refused by its size, not loaded
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="holds 800,128 bytes, more than one digit's 784 values"):
        predict_array(tmp_path / "big.npy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no loadtxt warning printed before the error's sentence
        with pytest.raises(InputError, match="got 0 values"):
            predict_array(tmp_path / "empty.csv")


def test_ragged_rows_are_refused_in_a_sentence():
    """Nested lists of different lengths: np.asarray's bare ValueError ("inhomogeneous shape") escaped."""
    rows = [[0] * 28] * 27 + [[0] * 27]
    with pytest.raises(InputError, match="the array has rows of different lengths .* expected 784 values"):
        predict_array(rows)
    assert predict_array([[0] * 28] * 28)["digit"] in range(10)  # a list of equal rows is an array


def test_a_path_from_the_home_folder_is_read_as_a_shell_names_it(files, monkeypatch):
    """ "~/digit.jpg" was looked for in a folder named "~" ("does not exist"), as an image and as an array."""
    folder, labels = files
    monkeypatch.setenv("HOME", str(folder))
    assert predict_image("~/digit.jpg")["digit"] == predict_image(folder / "digit.jpg")["digit"]
    assert predict_array(Path("~/digit.npy"))["digit"] == labels[3]
    assert read_number("~/number.png")["number"] == read_number(folder / "number.png")["number"]
    with pytest.raises(InputError, match=f"{folder / 'nothing.png'} does not exist"):
        predict_image("~/nothing.png")


def test_a_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_is_read(files, tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark: it was "could not convert string '\\ufeff0'"."""
    folder, labels = files
    values = ",".join(str(v) for v in np.load(folder / "digit.npy").ravel())
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + values.encode() + b"\r\n")
    assert predict_array(tmp_path / "excel.csv")["digit"] == labels[3]


def test_a_path_with_a_nul_character_is_refused_in_a_sentence(tmp_path):
    """No file name holds a NUL: os.stat raised a bare ValueError ("embedded null byte") through the API."""
    for call, name in ((predict_array, "a\x00b.npy"), (predict_image, "a\x00b.png"), (read_number, "a\x00b.png")):
        with pytest.raises(InputError, match="holds a NUL character, which no file name can; check the path"):
            call(str(tmp_path / name))


def test_an_npy_header_that_declares_a_giant_array_is_refused_without_allocating_it(tmp_path):
    """128 bytes whose header declares 10**15 float64 values (8 PB): refused as unreadable, not a MemoryError."""
    path = tmp_path / "giant.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
    with pytest.raises(InputError, match="giant.npy could not be read as numbers"):
        predict_array(path)
    result = runner.invoke(app, ["predict", str(path), "--json"])
    assert result.exit_code == 2 and "could not be read as numbers" in json.loads(result.stdout)["error"]


def test_cli_exits_2_when_no_file_could_be_read(files):
    """Nothing read is bad input (exit 2, one `Error:` line a file, no traceback); some read is exit 1."""
    folder, _ = files
    one = runner.invoke(app, ["predict", str(folder / "notes.txt")])
    assert one.exit_code == 2, one.output
    assert one.stderr.startswith("Error: ") and one.stderr.count("\n") == 1, one.stderr
    assert "notes.txt" in one.stderr and "not an image" in one.stderr and "Traceback" not in one.output
    assert one.stdout == ""  # no empty table

    broken = [str(folder / n) for n in ("cut.png", "empty.png", "wrong.npy")]
    every = runner.invoke(app, ["predict", *broken, "--json"])
    assert every.exit_code == 2, every.output
    assert [json.loads(line)["file"] for line in every.stdout.splitlines()] == broken
    assert all("error" in json.loads(line) for line in every.stdout.splitlines())

    some = runner.invoke(app, ["predict", *broken, str(folder / "digit.npy"), "--json"])
    assert some.exit_code == 1, some.output


def test_preprocessed_images_never_overwrite_each_other(files, tmp_path):
    folder, _ = files
    seen = tmp_path / "seen"
    both = runner.invoke(
        app, ["predict", str(folder / "digit.jpg"), str(folder / "digit.npy"), "--save-preprocessed", str(seen)]
    )
    assert both.exit_code == 0, both.output
    assert sorted(p.name for p in seen.iterdir()) == ["digit.jpg.png", "digit.npy.png"]  # one stem, two files
    assert not np.array_equal(
        np.asarray(Image.open(seen / "digit.jpg.png")), np.asarray(Image.open(seen / "digit.npy.png"))
    )

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(folder / "canvas.png", other / "digit.jpg")
    clash = runner.invoke(
        app,
        ["predict", str(folder / "digit.jpg"), str(other / "digit.jpg"), "--save-preprocessed", str(tmp_path / "new")],
    )
    assert clash.exit_code == 2 and "would both be saved as digit.jpg.png" in clash.stderr, clash.output
    assert not (tmp_path / "new").exists()  # refused before anything was read or written


def test_preprocessed_images_are_never_saved_over_the_files_being_read(files, tmp_path):
    """A folder of PNGs saved into itself replaced each photo by its 28x28 image; a number's digits too
    (``7.png`` saves ``7-0.png``), and a link's target. Refused before anything is read or written."""
    folder, _ = files
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("7.png", "7-0.png"):
        shutil.copy(folder / "canvas.png", inbox / name)
    (tmp_path / "link.png").symlink_to(inbox / "7.png")
    before = {p.name: p.read_bytes() for p in inbox.iterdir()}
    cases = [
        ([str(inbox)], str(inbox), "7-0.png", inbox / "7-0.png"),
        ([str(inbox / "7.png")], f"{inbox}/../inbox", "7.png", inbox / "7.png"),
        ([str(inbox / "7.png"), str(inbox / "7-0.png"), "--number"], str(inbox), "7-0.png", inbox / "7-0.png"),
        ([str(tmp_path / "link.png")], str(tmp_path), "link.png", tmp_path / "link.png"),
    ]
    for args, out, file, read in cases:
        result = runner.invoke(app, ["predict", *args, "--save-preprocessed", out, "--json"])
        assert result.exit_code == 2 and result.stdout == "", (args, result.output)
        assert result.stderr == (
            f"Error: --save-preprocessed {Path(out)} would save a 28x28 image as {file} over {read}, which is being "
            "read; choose another folder.\n"
        )
    assert {p.name: p.read_bytes() for p in inbox.iterdir()} == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "7-0.png").write_bytes(b"an earlier run's image, not read now")
    elsewhere = runner.invoke(app, ["predict", str(inbox / "7.png"), "--number", "--save-preprocessed", str(out)])
    assert elsewhere.exit_code == 0, elsewhere.output  # a file of the name that is not being read is replaced
    assert Image.open(out / "7-0.png").size == (28, 28)


def test_an_image_that_cannot_be_saved_is_an_error_for_its_file_alone(files, tmp_path):
    """A folder where one 28x28 image goes (or a full disk, or the folder removed meanwhile) was an
    IsADirectoryError traceback halfway through the files; now that file's error, the others answered."""
    folder, _ = files
    seen = tmp_path / "seen"
    (seen / "canvas.png").mkdir(parents=True)
    names = ["canvas.png", "digit.jpg"]
    result = runner.invoke(
        app, ["predict", *[str(folder / n) for n in names], "--save-preprocessed", str(seen), "--json"]
    )
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {
        "file": str(folder / "canvas.png"),
        "error": f"The 28x28 image could not be saved as {seen / 'canvas.png'} (Is a directory); free space in "
        f"--save-preprocessed {seen}, or move what is in the way.",
    }
    assert lines[1]["file"] == str(folder / "digit.jpg") and "error" not in lines[1]
    assert sorted(p.name for p in seen.iterdir()) == ["canvas.png", "digit.png"]  # no temporary file left


def test_a_symlink_loop_with_save_preprocessed_is_an_error_for_that_file_alone(files, tmp_path):
    """A link in a loop (``a.png -> b.png -> a.png``), given with ``--save-preprocessed``: pathlib's
    ``resolve`` raised RuntimeError "Symlink loop" while the names were checked, a traceback before any answer."""
    folder, _ = files
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    for loop in (tmp_path / "a.png", tmp_path / "a.png" / "c.png"):  # the file itself, or a folder above it
        args = [str(loop), str(folder / "canvas.png"), "--save-preprocessed", str(tmp_path / "seen"), "--json"]
        result = runner.invoke(app, ["predict", *args])
        assert result.exit_code == 1, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert lines[0] == {"file": str(loop), "error": f"{loop} does not exist or is not a file; check the path."}
        assert lines[1]["file"] == str(folder / "canvas.png") and "error" not in lines[1]
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == ["canvas.png"]


def test_a_folder_or_a_pipe_given_as_the_file_is_said_to_be_one(tmp_path):
    """A folder given to predict_image, or a pipe (a shell's ``mnistlab predict <(curl -s URL)``, /dev/fd/63), was
    "does not exist or is not a file; check the path", though the path was right; each is now said to be what it
    is, with what to give instead."""
    folder = tmp_path / "scans.png"
    folder.mkdir()
    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)
    for read in (predict_image, read_number, predict_array):
        with pytest.raises(InputError) as caught:
            read(folder)
        assert str(caught.value) == (
            f"{folder} is a folder, not a file; give a file in it (mnistlab predict reads a whole folder)."
        )
    refusal = f"{pipe} is a pipe or a device, not a file; pipe it to mnistlab predict - instead, or save it to a file."
    for read in (predict_image, read_number, predict_array):
        with pytest.raises(InputError) as caught:
            read(pipe)  # refused before it is opened: no writer, and no wait for one
        assert str(caught.value) == refusal
    result = run_cli(["predict", str(pipe), "--json"], timeout=120)
    assert result.returncode == 2 and json.loads(result.stdout) == {"file": str(pipe), "error": refusal}


def test_an_image_saved_under_an_array_s_name_is_read_as_the_image_it_is(files, tmp_path):
    """A PNG or JPEG saved as digit.npy or digit.csv, which predict_image reads, was refused by mnistlab predict as
    'could not be read as numbers (This file contains pickled (object) data. If you trust the file you can load it
    unsafely using the `allow_pickle=` keyword argument...)', or as more bytes than 784 values take; the command
    now reads it as the image it is, and predict_array says it is one."""
    folder, _ = files
    names = []
    for source, name in (("canvas.png", "canvas.npy"), ("digit.jpg", "photo.csv")):
        (tmp_path / name).write_bytes((folder / source).read_bytes())
        names.append(name)
    expected = [predict_image(folder / source) for source in ("canvas.png", "digit.jpg")]
    for args in ([str(tmp_path / n) for n in names], [str(tmp_path)]):  # the files, or their folder
        result = run_cli(["predict", *args, "--json"], timeout=120)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(line["digit"], line["probability"]) for line in lines] == [
            (answer["digit"], round(answer["probability"], 4)) for answer in expected
        ]
    with pytest.raises(InputError) as caught:
        predict_array(tmp_path / "canvas.npy")
    assert (
        str(caught.value)
        == f"{tmp_path / 'canvas.npy'} is a PNG image, not a digit's values; read it with predict_image."
    )


def test_a_model_of_other_classes_or_unfitted_is_refused_when_loaded(mnist_full):
    from sklearn.base import clone

    X, y = mnist_full.data[:600], mnist_full.target[:600]
    base = get_recipe("logreg").build(0, 1)
    for labels, shown in [(np.where(y == 3, 200, y), "200"), (np.array(list("abcdefghij"))[y], "'a'")]:
        with pytest.raises(ModelFileError, match=f"trained on the classes .*{shown}.*not on digits 0-9"):
            load_predictor(clone(base).fit(X, labels))
    assert load_predictor(clone(base).fit(X, y.astype(str))).classify(X[:2].reshape(2, 28, 28)).shape == (2, 10)
    with pytest.raises(ModelFileError, match="not fitted yet"):
        predict_array(X[0], model=clone(base))


def test_a_model_of_other_image_sizes_is_refused_when_loaded(tmp_path):
    """scikit-learn's 8x8 digits: a model of them cannot read the 28x28 digit a photo becomes."""
    from sklearn.datasets import load_digits

    from mnistlab import train_recipe

    digits = load_digits()
    X, y = (digits.data * 255 / 16).astype(np.uint8)[:400], digits.target[:400]
    train_recipe("logreg", data=(X[:300], X[300:], y[:300], y[300:]), cv=0, out=tmp_path / "logreg")
    result = runner.invoke(app, ["predict", "x.png", "--model", str(tmp_path / "logreg")])
    assert result.exit_code == 2 and "trained on images of 64 pixels" in result.stderr, result.output
    cnn = get_recipe("cnn-fast").build(0, 1).set_params(epochs=1).fit(X.reshape(-1, 8, 8), y)
    with pytest.raises(ModelFileError, match="trained on 8 x 8 images, and mnistlab reads every photo into a 28 x 28"):
        predict_array(np.zeros((28, 28)), model=cnn)


def test_top_is_a_whole_number_not_a_flag(evaluation_digits):
    with pytest.raises(InputError, match="top must be a whole number from 1 to 10, got True"):
        predict_array(evaluation_digits[0][0], top=True)


def test_float_images_that_overshoot_1_are_read_on_the_0_1_scale(evaluation_digits):
    """A 0-1 image resampled bicubically overshoots 1 a little; it is still a 0-1 image, not a blank 0-255 one."""
    import cv2

    images, labels = evaluation_digits
    paper = (255 - images[:5].astype(np.float64)) / 255  # black ink on white, 0-1
    for image, label in zip(paper, labels[:5]):
        big = cv2.resize(image, (200, 200), interpolation=cv2.INTER_CUBIC)
        assert big.max() > 1.0  # the overshoot this is about: read as 0-255 before, a blank page
        assert predict_image(big)["digit"] == predict_image(np.clip(big, 0, 1))["digit"] == label
    bright = np.clip(images[0] / 255 * 1.02, 0, 1.02)  # ink at 1.02
    np.testing.assert_array_equal(
        predict_array(bright)["mnist_image"], predict_array(np.clip(bright, 0, 1))["mnist_image"]
    )
    with pytest.raises(InputError, match="outside 0-255"):
        predict_array(images[0] * -1.0)


def test_whole_number_pixels_are_the_digit_their_floats_are(evaluation_digits):
    """``as_digit`` takes 0-255 integers as they are (a shortcut: every JSON request's pixels are whole numbers);
    each integer type, and the edges of its range, gives what the same values as floats give."""
    from mnistlab.data.pixels import as_digit

    image = evaluation_digits[0][0].astype(np.int64)
    for values in (image, np.where(image > 0, 255, 0), np.full((28, 28), 2), (image > 0).astype(np.int64)):
        for dtype in (np.uint8, np.int16, np.int64, np.uint32):
            got = as_digit(values.astype(dtype))
            assert got.dtype == np.uint8 and got.shape == (28, 28)
            np.testing.assert_array_equal(got, as_digit(values.astype(np.float64)))
    np.testing.assert_array_equal(as_digit(image.ravel().tolist()), image)  # a JSON list of 784 whole numbers
    for bad in (image - 1, image + 1):  # -1 and 256: outside 0-255
        with pytest.raises(InputError, match="outside 0-255"):
            as_digit(bad)


def test_one_value_where_a_digit_belongs_is_named(predictor, tmp_path):
    # None, bytes or a dict (an image's bytes given to predict_array) said "got 1 values with shape ()".
    for given, shown in ((None, "None"), (b"\x89PNG", "b'\\x89PNG'"), ({"pixels": []}, "{'pixels': []}"), (7, "7")):
        with pytest.raises(InputError) as caught:
            predict_array(given, predictor)
        assert str(caught.value) == (
            f"the array is one value ({shown}), not a digit's pixels; pass 784 values or a 28x28 array (one digit)."
        )
    np.save(tmp_path / "one.npy", np.array(5))
    with pytest.raises(InputError, match=r"one.npy is one value \(5\), not a digit's pixels"):
        predict_array(tmp_path / "one.npy", predictor)


def test_cli_without_a_model_uses_the_shipped_reader(tmp_path, monkeypatch, files):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))
    result = runner.invoke(app, ["predict", str(files[0] / "digit.jpg"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["digit"] == files[1][0]


def _touching(a: np.ndarray, b: np.ndarray, overlap: int = 2) -> np.ndarray:
    """Two 28x28 digits cropped to their ink and set side by side, ``overlap`` columns into each other."""
    a, b = (d[:, np.flatnonzero(d.any(0))[0] : np.flatnonzero(d.any(0))[-1] + 1].astype(float) for d in (a, b))
    row = np.zeros((28, a.shape[1] + b.shape[1] + 16))
    row[:, 8 : 8 + a.shape[1]] = a
    x = 8 + a.shape[1] - overlap
    row[:, x : x + b.shape[1]] = np.maximum(row[:, x : x + b.shape[1]], b)
    return 255 - np.kron(row, np.ones((8, 8))).astype(np.uint8)  # a black-on-white canvas, 8x larger


def test_touching_digits_are_read_as_two(evaluation_digits):
    images, labels = evaluation_digits
    rng = np.random.default_rng(0)
    pairs = [rng.choice(len(images), 2, replace=False) for _ in range(20)]
    exact = [read_number(_touching(images[i], images[j]))["number"] == f"{labels[i]}{labels[j]}" for i, j in pairs]
    assert np.mean(exact) >= 0.6, np.mean(exact)


def test_numbers_on_ruled_and_squared_paper():
    from mnistlab.testing import number_samples

    rng = np.random.default_rng(1)
    for surface in ("paper-ruled", "paper-squared"):
        samples = number_samples("fonts", 6, rng, surface=surface)
        exact = [read_number(s.data)["number"] == s.label for s in samples]
        assert np.mean(exact) >= 0.8, (surface, exact)


def test_cli_reads_an_image_piped_in_as_dash(files, tmp_path):
    """``mnistlab predict -`` said "- does not exist or is not a file"; a pipe is how a photo comes from curl."""
    folder, labels = files
    photo = (folder / "digit.jpg").read_bytes()
    for args in (["predict", "-", "--json"], ["predict", "-", "--json", "--number"]):
        result = runner.invoke(app, args, input=photo)
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert answer["file"] == "-" and (answer.get("number") or str(answer["digit"])) == str(labels[0])
    saved = runner.invoke(app, ["predict", "-", "--save-preprocessed", str(tmp_path / "seen")], input=photo)
    assert saved.exit_code == 0 and [p.name for p in (tmp_path / "seen").iterdir()] == ["stdin.png"]
    for given, message in (
        (b"", "Standard input was empty; pipe an image in"),
        (b"hello\n", "-: the image data is not an image mnistlab reads"),
    ):
        refused = runner.invoke(app, ["predict", "-"], input=given)
        (line,) = refused.stderr.strip().splitlines()  # one line, no traceback
        assert refused.exit_code == 2 and line.startswith("Error: ") and message in line, refused.output
    mixed = runner.invoke(app, ["predict", "-", str(folder / "digit.jpg")], input=photo)
    assert mixed.exit_code == 2 and "- reads one image from standard input and is given alone" in mixed.stderr
    # A file named - is ./-, as for other Unix tools.
    shutil.copy(folder / "digit.jpg", tmp_path / "-")
    here = Path.cwd()
    os.chdir(tmp_path)
    try:
        named = runner.invoke(app, ["predict", "./-", "--json"], input=b"")
    finally:
        os.chdir(here)
    assert named.exit_code == 0 and json.loads(named.stdout)["file"] == str(tmp_path / "-"), named.output


def test_cli_says_so_when_standard_input_is_closed(tmp_path):
    """``predict - <&-`` (no standard input at all) was an AttributeError traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab", "predict", "-"],
        preexec_fn=lambda: os.close(0),  # as the shell's <&-: Python then starts without sys.stdin
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
    )
    assert done.returncode == 2 and done.stderr.strip() == (
        "Error: Standard input is closed; pipe an image in: mnistlab predict - < photo.png"
    ), done.stderr


def test_cli_says_what_dash_is_for_when_standard_input_is_a_terminal(tmp_path):
    """On a terminal, ``predict -`` would wait for an image no one types."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mnistlab", "predict", "-"],
            stdin=follower,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "XDG_DATA_HOME": str(tmp_path)},
        )
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2 and done.stderr.strip().startswith(
        "Error: - reads an image from standard input, which is a terminal"
    )


def test_json_never_rounds_a_probability_under_1_up_to_1():
    """Probabilities go out to 4 places; 0.99996 went out as 1, which the page shows as "100% sure"."""
    from mnistlab.trust.predict import to_json

    one = {"digit": 3, "probability": 0.99996, "top": [(3, 0.99996), (8, 0.00004)], "confident": True, "reason": None}
    out = to_json({"number": "33", "digits": [one, {**one, "probability": 1.0}], "confident": True}, "a.png")
    assert out["digits"][0]["probability"] == 0.9999 and out["digits"][0]["top"] == [[3, 0.9999], [8, 0.0]]
    assert out["digits"][1]["probability"] == 1.0  # a probability of 1 is said as 1
    assert to_json({**one, "probability": 0.12345, "mnist_image": np.zeros((28, 28))})["probability"] == 0.1235
    assert "mnist_image" not in to_json({**one, "mnist_image": np.zeros((28, 28))})


def test_a_model_of_fashion_mnist_is_refused_as_a_reader_of_digits(tmp_path):
    """Fashion-MNIST's classes are numbered 0-9 too: its class 5 (Sandal) was answered as the digit 5, "confident"."""
    from sklearn.linear_model import LogisticRegression

    from mnistlab.models.files import save_model

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (40, 784)).astype(np.uint8), np.arange(40) % 10
    clothes = save_model(
        LogisticRegression(max_iter=50).fit(X, y),
        tmp_path / "fashion",
        card={"recipe": "logreg", "dataset": "fashion-mnist"},
    )
    sentence = (
        f"{clothes} was trained on fashion-mnist, whose classes are T-shirt/top, Trouser, Pullover, ..., not "
        "digits, so it cannot read digits; answer with a model trained on digits, such as MNIST's."
    )
    with pytest.raises(ModelFileError) as caught:
        predict_array(np.zeros((28, 28), np.uint8), model=clothes)
    assert str(caught.value) == sentence
    photo = tmp_path / "seven.png"
    photo.write_bytes(make_photo(np.eye(28, dtype=np.uint8) * 255, rng, style="canvas-black-on-white"))
    result = runner.invoke(app, ["predict", str(photo), "--model", str(clothes)])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr == f"Error: {sentence}\n"
    # A folder of IDX files that is merely named fashion-mnist holds digits 0-9, as any unregistered folder does.
    cut = {"min_probability": 0.5, "flag_rate_calibration": 0.1, "flag_rate_evaluation": 0.1, "method": "test"}
    card = {"recipe": "logreg", "dataset": "fashion-mnist", "data_dir": str(tmp_path), "calibration": cut}
    folder = save_model(LogisticRegression(max_iter=50).fit(X, y), tmp_path / "folder", card=card)
    assert predict_array(np.zeros((28, 28), np.uint8), model=folder)["digit"] in range(10)


def test_file_names_in_the_table_are_text_not_markup(tmp_path, monkeypatch):
    """The table read a file's name as rich markup: "[bold]7.npy" was listed as "7.npy", and "a[/b].npy" (the
    file b].npy in the folder a[) stopped the command with a MarkupError traceback instead of its table."""
    (tmp_path / "a[").mkdir()
    names = ["[bold]7.npy", "a[/b].npy"]
    for name in names:
        np.save(tmp_path / name, np.zeros(784))
    monkeypatch.chdir(tmp_path)  # short names, so the table does not abbreviate them
    for number in ([], ["--number"]):
        result = runner.invoke(app, ["predict", *names, *number])
        assert result.exit_code == 0, result.output
        assert all(name in result.stdout for name in names), result.stdout


def test_an_estimator_given_as_the_model_is_freed_once_the_script_drops_it(mnist_full):
    """The cut calibrated for it is kept beside it, not a predictor holding it: every one was kept alive."""
    import gc
    import weakref

    X, y = mnist_full.data[:600], mnist_full.target[:600]
    estimator = get_recipe("logreg").build(0, 1).fit(X, y)
    first = predict_array(X[0], model=estimator)
    assert load_predictor(estimator).cut is load_predictor(estimator).cut  # calibrated once
    assert same(predict_array(X[0], model=estimator), first)
    dropped = weakref.ref(estimator)
    del estimator
    gc.collect()
    assert dropped() is None


def test_an_estimator_fitted_again_is_calibrated_and_checked_again(mnist_full):
    """A notebook refits the estimator it answers with: the cut of its earlier fit was kept, and a refit on
    8 x 8 digits was answered with scikit-learn's traceback, not the sentence its first answer would have been."""
    import copy

    from sklearn.datasets import load_digits

    X, y = mnist_full.data, mnist_full.target
    estimator = get_recipe("logreg").build(0, 1).fit(X[:300], y[:300])
    first = load_predictor(estimator).cut
    assert load_predictor(estimator).cut is first  # the same fit: calibrated once
    estimator.fit(X[:5000], y[:5000])
    again = load_predictor(estimator).cut
    assert again is not first and again == load_predictor(copy.deepcopy(estimator)).cut  # a new object, the same fit
    digits = load_digits()
    estimator.fit((digits.data * 255 / 16).astype(np.uint8), digits.target)
    with pytest.raises(ModelFileError, match="trained on images of 64 pixels"):
        predict_array(X[0], model=estimator)


def test_a_tensor_that_requires_grad_is_read_as_its_values(evaluation_digits):
    """predict_array took a torch tensor but not one attached to autograd: torch's RuntimeError, not an answer."""
    import torch

    digit = np.asarray(evaluation_digits[0][0], np.float32) / 255
    tensor = torch.from_numpy(digit).requires_grad_()
    assert same(predict_array(tensor), predict_array(digit))
    assert same(predict_array(tensor[None, None]), predict_array(digit))


def test_a_session_keeps_one_model_per_folder_and_a_few_folders(mnist_full, tmp_path):
    """A notebook that retrained a model into its folder, or read many folders in turn, kept every model it had
    predicted with (a knn model holds its training images: 376 MB of floats for MNIST's)."""
    from mnistlab import train_recipe
    from mnistlab.trust import predict

    X, y = mnist_full.data[:400], mnist_full.target[:400]
    data = (X[:300], X[300:], y[:300], y[300:])
    predict._BY_DIR.clear()
    for seed in range(3):  # retrained into one folder: each card read anew, one model kept
        train_recipe("logreg", data=data, cv=0, out=tmp_path / "again", seed=seed)
        predict_array(X[0], model=tmp_path / "again")
        assert len(predict._BY_DIR) == 1
        assert load_predictor(tmp_path / "again").card["seed"] == seed
    for i in range(predict._KEPT_FOLDERS + 2):
        train_recipe("logreg", data=data, cv=0, out=tmp_path / f"m{i}", seed=0)
        predict_array(X[0], model=tmp_path / f"m{i}")
    assert len(predict._BY_DIR) == predict._KEPT_FOLDERS


def test_a_model_of_fashion_mnist_swapped_in_through_a_link_is_refused_never_answered_with(tmp_path):
    """A model folder reached through a link another process swaps (`ln -sfn v2 current`): the classes were checked
    on the card read through the link, the model loaded through it a moment later, so a Fashion-MNIST model
    swapped in between answered digits with its clothes' classes. The link is followed once: the model checked is
    the model loaded."""
    from sklearn.linear_model import LogisticRegression

    from mnistlab.models.files import save_model

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (40, 784)).astype(np.uint8), np.arange(40) % 10
    model = LogisticRegression(max_iter=50).fit(X, y)
    digits = save_model(model, tmp_path / "digits", card={"recipe": "logreg"})
    clothes = save_model(model, tmp_path / "clothes", card={"recipe": "logreg", "dataset": "fashion-mnist"})
    load_predictor(digits)  # calibrated once, before the swaps
    current = tmp_path / "current"
    current.symlink_to(digits)
    datasets = []
    with swapping_link(current, clothes, digits):
        for _ in range(100):
            try:
                datasets.append(load_predictor(current).card.get("dataset"))
            except ModelFileError as exc:  # the clothes, refused
                assert "cannot read digits" in str(exc)
    assert "fashion-mnist" not in datasets
