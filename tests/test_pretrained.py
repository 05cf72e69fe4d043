"""`make pretrained`'s code path: a tiny reader built the same way loads and answers like the shipped one."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab.errors import ParameterError
from mnistlab.lab import pretrained
from mnistlab.lab.pretrained import Plan, build_reader
from mnistlab.models.cnn.hyper import Hyper
from mnistlab.trust.drawings import HANDWRITING_FONTS, font_paths
from mnistlab.trust.reader import CARD_FILE, PRETRAINED_DIR, READER_FILES, load_reader

TINY = Plan(
    fit_digits=2000,
    detector_strokes=300,
    detector_copies=1,  # a sixth of the letters: the drawing took half of a tiny build (25 s of 59 on a Xeon)
    detector=Hyper(arch="tiny", epochs=2, batch_size=128, lr=0.1),
    classifier=Hyper(arch="tiny", epochs=2, batch_size=64, lr=0.1),
    classifier_members=1,
    classifier_digits=5000,
    printed_copies=1,
    restroked_digits=200,
)


@pytest.fixture(scope="module")
def tiny_reader(tmp_path_factory, mnist_full):
    folder = tmp_path_factory.mktemp("reader")
    return folder, build_reader(folder, TINY)


def test_a_build_writes_every_file_and_a_card_that_covers_them(tiny_reader, mnist_full):
    folder, card = tiny_reader
    assert sorted(p.name for p in folder.iterdir()) == sorted([CARD_FILE, *READER_FILES])
    assert json.loads((folder / CARD_FILE).read_text()) == card
    assert card["data_sha256"] == mnist_full.details["data_sha256"]
    assert card["plan"]["fit_digits"] == 2000 and card["plan"]["classifier"]["arch"] == "tiny"
    shipped = json.loads((PRETRAINED_DIR / CARD_FILE).read_text())
    assert set(card) == set(shipped)  # the shipped reader was written by this same code
    # The thresholds come from the last 10,000 training digits, as the shipped reader's, whatever the plan fits on.
    held_out = "10000 MNIST training digits that fitted neither the detector nor the digit space;"
    assert card["thresholds"]["method"].startswith(held_out) and shipped["thresholds"]["method"].startswith(held_out)


def test_a_plan_fitting_on_the_thresholds_digits_is_refused_before_any_work(tmp_path):
    with pytest.raises(ParameterError, match="^fit_digits must be at most 50,000: the training digits after them"):
        build_reader(tmp_path, Plan(fit_digits=50_001))
    assert list(tmp_path.iterdir()) == []


def test_a_second_build_writes_the_same_files(tiny_reader, tmp_path):
    # What makes `make pretrained` reproduce the shipped files: every net fits from its own seeds on one thread,
    # the detector in a process of its own beside the classifier, and the drawings come from seeded generators.
    folder, card = tiny_reader
    again = build_reader(tmp_path, TINY)
    assert again["files"] == card["files"]
    assert again["thresholds"] == card["thresholds"] and again["classifier"] == card["classifier"]


def test_the_card_records_every_font_the_build_drew_from(tiny_reader):
    _, card = tiny_reader
    fonts = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in font_paths()}
    assert card["fonts_sha256"] == fonts and len(fonts) >= 10
    shipped = json.loads((PRETRAINED_DIR / CARD_FILE).read_text())["fonts_sha256"]
    assert {Path(name).name for name in HANDWRITING_FONTS} <= set(shipped)  # the shipped reader saw every hand


def test_the_built_reader_answers(tiny_reader, mnist_full):
    folder, card = tiny_reader
    reader = load_reader(folder)
    n = mnist_full.details["n_train"]
    digits, labels = np.asarray(mnist_full.images[n : n + 500]), np.asarray(mnist_full.target[n : n + 500])
    assert (reader.digit_proba(digits).argmax(1) == labels).mean() >= 0.8
    scores = reader.scores(digits)
    assert scores.shape == (500, 5) and np.isfinite(scores).all()
    assert card["metrics"]["mnist_test_flagged_not_a_digit"] <= 0.02
    assert 0 < reader.probability_cut.min_probability < 1


def test_a_build_without_its_handwriting_fonts_stops_before_training(monkeypatch, tmp_path, capsys):
    # Without a font the build would quietly draw fewer letters and digits, and differ from the shipped reader.
    monkeypatch.setattr(pretrained, "HANDWRITING_FONTS", (*pretrained.HANDWRITING_FONTS, str(tmp_path / "Gone.otf")))
    monkeypatch.setattr(sys, "argv", ["pretrained", "--out", str(tmp_path / "reader")])
    builds = []  # a build that started would take minutes: record it instead, and fail below
    monkeypatch.setattr(pretrained, "build_reader", lambda out, plan: builds.append(out))
    with pytest.raises(SystemExit) as stopped:
        pretrained.main()
    assert stopped.value.code == 2 and not builds
    err = capsys.readouterr().err
    assert "Gone.otf" in err and "apt-get install fonts-comic-neue" in err


_WRITE_ON_A_FULL_DISK = """
import json, resource, sys
from pathlib import Path
from mnistlab.errors import ModelFileError
from mnistlab.lab.pretrained import write_reader

resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # a disk that fills: a larger write fails (EFBIG)
blobs = {"classifier.onnx": b"c" * 70_000, "detector.onnx": b"d" * 70_000, "space.safetensors": b"s" * 160_000}
try:
    write_reader(Path(sys.argv[1]), blobs, {"files": "new"})
except ModelFileError as exc:
    print(exc)
"""


def test_a_build_that_cannot_write_every_file_leaves_the_reader_there_whole(tmp_path):
    """`make pretrained` wrote the classifier, the detector, the digit space and the card one after another: a
    disk that filled after the first files left new nets beside the old card, whose checksums then refused them,
    and the reader that was there was lost."""
    old = {"classifier.onnx": b"C" * 1000, "detector.onnx": b"D" * 1000, "space.safetensors": b"S" * 1000}
    pretrained.write_reader(tmp_path, old, {"files": "old"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == sorted(READER_FILES + (CARD_FILE,))
    run = subprocess.run([sys.executable, "-c", _WRITE_ON_A_FULL_DISK, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == (
        f"Cannot write the reader into {tmp_path} (File too large), so the files there are as they were; free space "
        "there, or choose another --out.\n"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no file replaced, no temporary file left


def test_an_out_folder_that_cannot_be_written_stops_the_build_before_training(monkeypatch, tmp_path, capsys):
    """`python -m mnistlab.lab.pretrained --out` under a file (or on a read-only disk) was found once the reader
    was built, an hour later, as an OSError traceback."""
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setattr(sys, "argv", ["pretrained", "--out", str(tmp_path / "file" / "reader")])
    builds = []
    monkeypatch.setattr(pretrained, "build_reader", lambda out, plan: builds.append(out))
    with pytest.raises(SystemExit) as stopped:
        pretrained.main()
    assert stopped.value.code == 2 and not builds
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err
        == f"pretrained: error: cannot write in --out {tmp_path / 'file' / 'reader'} (Not a directory); choose a folder you can write to"
    ), err
