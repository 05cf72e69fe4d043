"""evaluate_model(model_dir, data=...): test arrays the model cannot be measured on are one sentence, not a number."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mnistlab.errors import DatasetError, InputError, MnistlabError
from mnistlab.lab.evaluate import evaluate_model
from mnistlab.lab.train import train_recipe


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as 0-255 pixels: 1,000 to train, 200 to test."""
    X, y = load_digits(return_X_y=True)
    X = (X * 16).clip(0, 255).astype(np.uint8)
    return X[:1000], X[1000:1200], y[:1000], y[1000:1200]


@pytest.fixture(scope="module")
def model(digits, tmp_path_factory):
    """logreg trained on the 8x8 digits (64 pixels, classes 0-9), saved."""
    out = tmp_path_factory.mktemp("evaluate") / "m"
    train_recipe("logreg", cv=0, out=out, data=digits)
    return out


def _refusal(model, data, kind=InputError) -> str:
    with pytest.raises(kind) as info:
        evaluate_model(model, data=data)
    assert isinstance(info.value, MnistlabError) and info.value.exit_code == 2
    return str(info.value)


def test_labels_the_model_never_saw_are_refused_not_counted_as_mistakes(model, digits):
    X_tr, X_te, y_tr, y_te = digits
    said = _refusal(model, (X_tr, X_te, y_tr + 10, y_te + 10))
    assert said == (
        f"y_test holds labels {model} was never trained on (10-19), and it knows only 0-9; "
        "pass test labels among its classes."
    )
    one_off = y_te.copy()
    one_off[7] = 11  # one label in 200: it would be one more "mistake"
    assert "was never trained on (11), and it knows only 0-9" in _refusal(model, (X_tr, X_te, y_tr, one_off))


def test_string_labels_for_a_model_of_integer_labels_say_so(model, digits):
    X_tr, X_te, y_tr, y_te = digits
    said = _refusal(model, (X_tr, X_te, y_tr.astype(str), y_te.astype(str)))
    assert said == (
        f"The test labels in y_test are strings, but the classes of {model} are integers (0-9); "
        "pass y_test as integers, as the model was trained on."
    )


def test_images_of_another_size_say_both_sizes(model, digits, mnist_small):
    X_tr, X_te, y_tr, y_te = mnist_small  # 28x28 digits for a model of 8x8 ones
    said = _refusal(model, (X_tr[:100], X_te[:50], y_tr[:100], y_te[:50]))
    assert said == (
        f"{model} reads images of 64 pixels (8 x 8), but X_test holds images of 784 pixels (28 x 28); "
        "pass test images of the size the model was trained on."
    )


def test_test_labels_in_a_column_are_not_said_to_be_as_many_as_the_images_and_too_few(model, digits):
    """y_test as a column (N, 1) was refused with 'y_test of data holds 200 labels for 200 test images in X_test;
    pass one label per test image': the sentence contradicted itself."""
    X_tr, X_te, y_tr, y_te = digits
    assert _refusal(model, (X_tr, X_te, y_tr, y_te[:, None])) == (
        f"y_test of data holds its labels in an array of shape ({len(y_te)}, 1) for {len(y_te)} test images in "
        "X_test; pass one label per test image, in a 1-d array."
    )


def test_an_empty_test_set_is_refused_in_words_that_fit_arrays(model, digits):
    X_tr, X_te, y_tr, y_te = digits
    empty = "X_test of data holds no images; pass at least one test image, and its label in y_test."
    assert _refusal(model, (X_tr, X_te[:0], y_tr, y_te[:0])) == empty
    assert _refusal(model, (X_tr[:0], X_te[:0], y_tr[:0], y_te[:0])) == empty  # no "labels file" here
    said = _refusal(model, (X_tr[:0], X_te, y_tr[:0], y_te), DatasetError)
    assert said.startswith("y_train of data holds no labels;") and "labels file" not in said


@pytest.mark.parametrize(
    ("classes", "relabel"),
    [
        pytest.param((3, 8), lambda y: y, id="3-vs-8"),  # proba's columns 0 and 1 are classes 3 and 8
        pytest.param(range(10), lambda y: y == 5, id="5-detector"),  # the lesson's booleans
        pytest.param(range(10), lambda y: y.astype(np.float64), id="whole-floats"),
    ],
)
def test_a_model_of_classes_other_than_0_to_k_is_measured(classes, relabel, digits, tmp_path):
    # The gallery read each prediction's probability from the column its label numbers, so a model of
    # classes 3 and 8 was refused ("y_pred holds label 3, expected classes 0..1"), and one of booleans or of
    # whole floats ("y_true has dtype bool, expected integer class labels"): trained and saved, never measured.
    X_tr, X_te, y_tr, y_te = digits
    tr, te = np.isin(y_tr, classes), np.isin(y_te, classes)
    data = (X_tr[tr], X_te[te], relabel(y_tr[tr]), relabel(y_te[te]))
    train_recipe("logreg", cv=0, out=tmp_path / "m", data=data)
    result = evaluate_model(tmp_path / "m", data=data)
    y_test = data[3]
    assert 0.5 < result["accuracy"] <= 1 and result["n_test"] == len(y_test)
    assert [row["support"] for row in result["per_class"]] == np.unique(y_test, return_counts=True)[1].tolist()
    assert (tmp_path / "m" / "mistakes.png").stat().st_size > 0


def test_the_most_confident_mistakes_of_a_saturated_model_are_those_it_is_surest_of(digits, tmp_path):
    # On raw 0-255 pixels the lesson's hinge SGD has margins in the thousands: the softmax of nearly all its
    # mistakes is exactly 1.0, so "the most confident" were the first mistakes in test order. Its margins
    # still say how sure it was: the predicted class's lead over the runner-up breaks the tie.
    from mnistlab.models.files import load_model
    from mnistlab.models.proba import class_probabilities

    train_recipe("sgd-hinge", cv=0, out=tmp_path / "m", data=digits)
    result = evaluate_model(tmp_path / "m", data=digits)
    estimator, _ = load_model(tmp_path / "m")
    X_te, y_te = digits[1], digits[3]
    y_pred = estimator.predict(X_te)
    wrong = np.flatnonzero(y_pred != y_te)
    sure = class_probabilities(estimator, X_te)[wrong, y_pred[wrong]]
    margins = estimator.decision_function(X_te)[wrong]
    own = margins[np.arange(len(wrong)), y_pred[wrong]]
    margins[np.arange(len(wrong)), y_pred[wrong]] = -np.inf
    lead = own - margins.max(axis=1)
    assert (sure == 1.0).sum() > len(wrong) // 2  # saturated: the probabilities alone cannot rank them
    expected = wrong[np.lexsort((-lead, -sure))][:25]
    assert result["most_confident_mistakes"] == expected.tolist()
    assert result["most_confident_mistakes"] != sorted(result["most_confident_mistakes"])


def test_the_data_checksum_tells_another_split_of_the_same_arrays_apart(model, digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    X, y = np.concatenate([X_tr, X_te]), np.concatenate([y_tr, y_te])
    same = evaluate_model(model, data=digits, out_dir=tmp_path)
    assert same["same_data_as_training"] is True and same["same_predictions_as_training"] is True
    # The same images and labels cut at another place: other training and test sets, so other data.
    moved = evaluate_model(model, data=(X[:900], X[900:], y[:900], y[900:]), out_dir=tmp_path)
    assert moved["data_sha256"] != same["data_sha256"] and moved["same_data_as_training"] is False
    # The caller's arrays were cut by no split or seed: none is recorded as if the card's had cut them.
    assert (same["seed"], same["split"], same["test_size"], same["dataset"]) == (None, None, None, "arrays")


@pytest.mark.parametrize(
    "split, test_size",
    [("official", 0.2), ("random", 5), ("random", 69_999)],  # a size for the random split only, too few, too many
)
def test_a_card_whose_split_no_run_cuts_is_blamed_not_a_flag(tmp_path, mnist_small, split, test_size):
    """A (re-signed) card's split was checked as the user's options: `evaluate` said "--test-size must ...",
    a flag it does not have."""
    from mnistlab.models.cards import card_sha256
    from mnistlab.models.files import save_model
    from mnistlab.models.recipes import get_recipe
    from mnistlab.testing import run_cli

    X_tr, _, y_tr, _ = mnist_small
    model = get_recipe("logreg").build(0, 1).fit(X_tr[:300], y_tr[:300])
    model_dir = save_model(model, tmp_path / "m", card={"recipe": "logreg", "dataset": "mnist", "seed": 0})
    card = json.loads((model_dir / "model.json").read_text())
    card.update(split=split, test_size=test_size)
    card["card_sha256"] = card_sha256(card)
    (model_dir / "model.json").write_text(json.dumps(card))
    run = run_cli(["evaluate", str(model_dir), "--out", str(tmp_path / "figures")])
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"Error: {model_dir / 'model.json'} records a split no training run cuts (split {split!r}, test_size "
        f"{test_size!r}), so its test set cannot be found again; restore the original file or retrain the model."
    )


def test_an_empty_model_folder_is_refused_not_read_as_the_current_folder(model, tmp_path, monkeypatch):
    """`mnistlab evaluate "$MODEL"` with $MODEL unset measured the model of the current folder and wrote its
    PNGs there (or said ". has no model.json"); export read it too. evaluate_model("") blamed an empty out_dir."""
    from typer.testing import CliRunner

    from mnistlab.cli import app

    for name in ("model.json", "model.skops"):
        (tmp_path / name).write_bytes((model / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    for args in (["evaluate", ""], ["export", "", "--onnx", str(tmp_path.parent / "m.onnx")]):
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 2, done.output
        (line,) = done.stderr.strip().splitlines()
        said = "Error: Invalid value for 'model_dir': is empty, which would mean the current folder; give it a path;"
        assert line.startswith(said) and line.endswith(f" {args[0]} --help`."), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.skops"]  # no PNGs written
    with pytest.raises(MnistlabError, match="^model_dir is empty, which would mean the current folder"):
        evaluate_model("")


@pytest.fixture
def read_only_model(model, tmp_path):
    """A copy of ``model`` in a folder where no file can be made: by its permissions or, for root, whom they do
    not stop, as a read-only bind mount (skipped where root cannot mount)."""
    copy = tmp_path / "shared" / "m"
    shutil.copytree(model, copy)
    if os.geteuid() != 0:
        copy.chmod(0o555)
        yield copy
        copy.chmod(0o755)
        return
    mounts = (["mount", "--bind", str(copy), str(copy)], ["mount", "-o", "remount,bind,ro", str(copy)])
    if any(subprocess.run(cmd, capture_output=True).returncode for cmd in mounts):
        subprocess.run(["umount", str(copy)], capture_output=True)
        pytest.skip("root cannot bind-mount a folder read-only here")
    try:
        yield copy
    finally:
        subprocess.run(["umount", str(copy)], check=True)


def test_a_read_only_model_folder_is_said_as_the_figures_folder_not_an_out_no_one_gave(read_only_model, digits):
    """`mnistlab evaluate /shared/m` of a model folder that cannot be written was "Cannot write --out /shared/m
    (Read-only file system); choose a place you can write to." without an --out given; evaluate_model said it of
    model_dir, as if the model's own folder were the wrong one to give."""
    from typer.testing import CliRunner

    from mnistlab.cli import app

    done = CliRunner().invoke(app, ["evaluate", str(read_only_model)])
    assert done.exit_code == 2, done.output
    reason = "Permission denied" if os.geteuid() != 0 else "Read-only file system"
    said = (
        f"Cannot draw the figures into the model's folder {read_only_model} ({reason}), where they go unless "
        "{} names another; pass {} with a folder you can write to."
    )
    assert done.stderr.strip().splitlines() == ["Error: " + said.format("--out", "--out")]
    with pytest.raises(MnistlabError) as info:
        evaluate_model(read_only_model, data=digits)
    assert str(info.value) == said.format("out_dir", "out_dir")
    assert evaluate_model(read_only_model, data=digits, out_dir=read_only_model.parent.parent / "figures")["n_test"]


def test_the_drawing_folder_a_killed_run_left_is_removed_by_the_next_and_a_live_ones_kept(
    model, digits, tmp_path, made_store
):
    """evaluate (or compare) killed outright while it drew its figures (SIGKILL, the OOM killer) left its hidden
    drawing folder, figures and all, in the model's (or the report's) folder for good: nothing removed it."""
    import fcntl

    from mnistlab.lab.compare import compare

    copy, report = tmp_path / "m", tmp_path / "report"
    shutil.copytree(model, copy)
    report.mkdir()
    held = []
    for folder, prefix in ((copy, ".mnistlab-evaluate-"), (report, ".mnistlab-report-")):
        (folder / f"{prefix}k1ll3d").mkdir()
        (folder / f"{prefix}k1ll3d" / "confusion.png").write_bytes(b"half a figure")
        (folder / f"{prefix}running").mkdir()  # another process drawing now holds its folder locked
        held.append(os.open(folder / f"{prefix}running", os.O_RDONLY))
        fcntl.flock(held[-1], fcntl.LOCK_EX)
    try:
        evaluate_model(copy, data=digits)
        compare(["logreg"], datasets="digits", limit=200, cv=0, out_dir=report, tracking_uri=made_store())
    finally:
        for fd in held:
            os.close(fd)
    assert sorted(p.name for p in copy.iterdir() if p.name.startswith(".")) == [".mnistlab-evaluate-running"]
    assert sorted(p.name for p in report.iterdir() if p.name.startswith(".")) == [".mnistlab-report-running"]


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)",
)
def test_a_fashion_mnist_model_is_measured_per_garment_not_per_digit(tmp_path):
    """Its per-class table said "digit 5" for Sandal, and its confusion matrix numbered the clothes 0-9."""
    from sklearn.linear_model import LogisticRegression
    from typer.testing import CliRunner

    from mnistlab.cli import app
    from mnistlab.data.load import load_mnist
    from mnistlab.models.files import save_model

    fashion = load_mnist("fashion-mnist")
    X, y = fashion.data[:200], fashion.target[:200]
    card = {"recipe": "logreg", "dataset": "fashion-mnist", "data_sha256": fashion.details["data_sha256"], "seed": 42}
    model_dir = save_model(LogisticRegression(max_iter=50).fit(X, y), tmp_path / "fashion", card=card)
    result = evaluate_model(model_dir)
    assert [row["name"] for row in result["per_class"]] == list(fashion.target_names)
    assert result["per_class"][5]["digit"] == 5  # the class number, as before
    cli = CliRunner().invoke(app, ["evaluate", str(model_dir)])
    assert cli.exit_code == 0, cli.output
    header = next(line for line in cli.stdout.splitlines() if "precision" in line)
    assert "class" in header and "digit" not in header
    assert any(line.split("│")[1].strip() == "Sandal" for line in cli.stdout.splitlines() if "│" in line)


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)",
)
def test_a_fashion_mnist_models_mistakes_are_titled_by_the_clothes(tmp_path):
    """Each of its mistakes in mistakes.png was titled "true 4, pred 2", not "true Coat, pred Pullover"."""
    from sklearn.linear_model import LogisticRegression

    from mnistlab.data.load import load_mnist
    from mnistlab.lab.plots import save_misclassified_gallery
    from mnistlab.models.files import save_model

    fashion = load_mnist("fashion-mnist")
    X, y, n = fashion.data, fashion.target, fashion.details["n_train"]
    estimator = LogisticRegression(max_iter=50).fit(X[:200], y[:200])
    card = {"recipe": "logreg", "dataset": "fashion-mnist", "data_sha256": fashion.details["data_sha256"], "seed": 42}
    gallery = evaluate_model(save_model(estimator, tmp_path / "fashion", card=card))["gallery_png"]
    label = np.asarray(fashion.target_names)
    expected = save_misclassified_gallery(
        X[n:],
        label[y[n:]],
        label[estimator.predict(X[n:])],
        estimator.predict_proba(X[n:]),
        tmp_path / "named.png",
        classes=label,
        margins=np.where((estimator.predict(X[n:]) != y[n:])[:, None], estimator.decision_function(X[n:]), 0),
    )
    assert Path(gallery).read_bytes() == expected.read_bytes()


def test_train_and_evaluate_give_the_accuracys_95_percent_interval(digits, tmp_path):
    # One accuracy on 200 test images moves by several points with the test sample: a bare 0.9450 hid that.
    trained = train_recipe("logreg", cv=0, out=tmp_path / "m", data=digits)
    right = int(round(trained["test_accuracy"] * 200))
    z = 1.959963984540054
    p = right / 200
    centre = (p + z * z / 400) / (1 + z * z / 200)
    half = z / (1 + z * z / 200) * np.sqrt(p * (1 - p) / 200 + z * z / (4 * 200 * 200))
    assert trained["test_accuracy_ci95"] == pytest.approx([centre - half, centre + half])
    measured = evaluate_model(tmp_path / "m", data=digits)
    assert measured["accuracy_ci95"] == trained["test_accuracy_ci95"]
    assert json.loads((tmp_path / "m" / "model.json").read_text())["metrics"]["test_accuracy_ci95"] == pytest.approx(
        [centre - half, centre + half]
    )


def test_a_model_replaced_while_it_is_evaluated_gets_no_figures_of_the_old_one(digits, tmp_path):
    """evaluate drew the model it had loaded into its folder, without the folder's lock: a save landing meanwhile
    (a `train` into the same folder, in another terminal) removed the old model's figures, then got them back
    beside the new model. The figures go in under the lock, and only beside the model they were drawn from."""
    from mnistlab.errors import ModelFileError

    folder = tmp_path / "m"
    train_recipe("logreg", cv=0, out=folder, data=digits)

    def progress(step: str) -> None:
        if step.startswith("drawing"):  # the measurement is done: another process's save lands now
            train_recipe("knn", cv=0, out=folder, data=digits)

    with pytest.raises(ModelFileError, match="replaced while it was evaluated"):
        evaluate_model(folder, data=digits, progress=progress)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.skops"]
    assert json.loads((folder / "model.json").read_text())["recipe"] == "knn"
    evaluate_model(folder, data=digits)  # the new model's own figures
    assert sorted(p.name for p in folder.iterdir()) == ["confusion.png", "mistakes.png", "model.json", "model.skops"]


def test_figures_are_not_drawn_into_another_models_folder(model, digits, tmp_path):
    """`evaluate A --out B`, B another model's folder, put A's confusion.png and mistakes.png beside B's model,
    where they read as B's (and B's own figures were overwritten): one sentence now, and B is left as it was."""
    from mnistlab.errors import ParameterError

    other = tmp_path / "other"
    train_recipe("knn", cv=0, out=other, data=digits)
    with pytest.raises(ParameterError, match=r"^out_dir .*other holds another model \(its model.json\)") as info:
        evaluate_model(model, data=digits, out_dir=other)
    assert "--out" in info.value.named("--out")
    assert sorted(p.name for p in other.iterdir()) == ["model.json", "model.skops"]
    evaluate_model(model, data=digits, out_dir=model)  # its own folder, named: drawn as by default
    assert (model / "confusion.png").is_file()


@pytest.mark.parametrize("name", ["confusion.png", "mistakes.png"])
def test_a_folder_where_a_figure_goes_is_refused_before_the_model_is_measured(model, digits, tmp_path, name):
    """It was found once the test set was measured (minutes for a CNN), as "(Is a directory)", naming no file."""
    (tmp_path / name).mkdir()
    said: list[str] = []
    with pytest.raises(InputError, match=f"{name} is a folder, where evaluate draws {name}; remove it"):
        evaluate_model(model, data=digits, out_dir=tmp_path, progress=said.append)
    assert said == [] and sorted(p.name for p in tmp_path.iterdir()) == [name]


_EVALUATE_ON_A_FULL_DISK = """
import resource, sys
import numpy as np
from sklearn.datasets import load_digits
from mnistlab.errors import InputError
from mnistlab.lab.evaluate import evaluate_model

X, y = load_digits(return_X_y=True)
X = (X * 16).clip(0, 255).astype(np.uint8)
import matplotlib.pyplot  # its font cache written before the disk fills
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a disk that fills: a larger write fails (EFBIG)
try:
    evaluate_model(sys.argv[1], data=(X[:1000], X[1000:1200], y[:1000], y[1000:1200]), out_dir=sys.argv[2])
except InputError as exc:
    print(exc)
"""


def test_figures_that_cannot_be_drawn_on_a_full_disk_are_said_of_the_out_folder(model, tmp_path):
    """A full disk while the figures were drawn was "Cannot write PNG to OUT/.mnistlab-evaluate-x1y2/confusion.png",
    a hidden folder that was gone when the message was read; the --out folder made for them was left, empty."""
    out = tmp_path / "figures"
    run = subprocess.run(
        [sys.executable, "-c", _EVALUATE_ON_A_FULL_DISK, str(model), str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == f"Cannot write the figures into {out} (File too large); choose a writable --out path.\n"
    assert not out.exists()  # made for the figures, removed with its hidden drawing folder


def test_a_model_of_the_lessons_standardised_pixels_is_measured_as_scikit_learn_does(digits, tmp_path):
    """The lesson scales its pixels (StandardScaler) before its SGD classifier; train_recipe took them, but
    evaluate_model(data=...) of the same arrays measured the model, then failed drawing its mistakes ('images have
    pixel values from -1.3 to 37, expected finite intensities >= 0'): the accuracy was lost. They are now drawn from
    their lowest value up, and the figures match scikit-learn's."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import confusion_matrix
    from sklearn.preprocessing import StandardScaler

    X_tr, X_te, y_tr, y_te = digits
    scaler = StandardScaler().fit(X_tr.astype(np.float64))
    scaled = (scaler.transform(X_tr.astype(np.float64)), scaler.transform(X_te.astype(np.float64)), y_tr, y_te)
    train_recipe("sgd-hinge", cv=0, out=tmp_path / "m", data=scaled)
    report = evaluate_model(tmp_path / "m", data=scaled)
    y_pred = SGDClassifier(loss="hinge", random_state=42).fit(scaled[0], y_tr).predict(scaled[1])
    assert report["accuracy"] == np.mean(y_pred == y_te) and report["same_predictions_as_training"] is True
    assert report["confusion_matrix"] == confusion_matrix(y_te, y_pred).tolist()
    assert Path(report["gallery_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_mistakes_of_a_hinge_loss_sgd_show_no_chance_it_never_gave(digits, tmp_path):
    """The lesson's sgd-hinge has no predict_proba; its mistakes were titled 'pred 9 (99%)', a softmax of its
    margins on raw pixels (thousands), shown as a chance of being right that the model never gave. They are now
    titled 'true 4, pred 9', ranked as before; a model's own probabilities keep their percentage."""
    from sklearn.linear_model import SGDClassifier

    from mnistlab.lab.plots import save_misclassified_gallery

    X_tr, X_te, y_tr, y_te = digits
    gallery = evaluate_model(train_recipe("sgd-hinge", cv=0, out=tmp_path / "m", data=digits)["model_dir"], data=digits)
    estimator = SGDClassifier(loss="hinge", random_state=42).fit(X_tr, y_tr)
    assert not hasattr(estimator, "predict_proba")
    margins = estimator.decision_function(X_te)
    softmax = np.exp(margins - margins.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    wrong = estimator.predict(X_te) != y_te
    drawn = {
        shown: save_misclassified_gallery(
            X_te, y_te, estimator.predict(X_te), softmax, tmp_path / f"{shown}.png",
            margins=np.where(wrong[:, None], margins, 0), probabilities=shown,
        ).read_bytes()
        for shown in (True, False)
    }  # fmt: skip
    assert Path(gallery["gallery_png"]).read_bytes() == drawn[False] != drawn[True]
