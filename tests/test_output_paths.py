"""Paths mnistlab writes, misused: the shipped reader's folder, a model's own files, a home folder that is not
there, and a model of a folder dataset found again. Each is one `Error:` line and exit 2, and nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.data.cache import cache_root
from mnistlab.data.download import download_dataset
from mnistlab.data.idx import read_idx, write_idx
from mnistlab.data.load import load_mnist
from mnistlab.errors import DatasetError, InputError, ModelFileError, ParameterError, RecipeError
from mnistlab.lab.evaluate import evaluate_model
from mnistlab.lab.export import export_model
from mnistlab.lab.options import check_writable_dir, check_writable_file
from mnistlab.lab.tracking import Tracker
from mnistlab.lab.train import train_recipe
from mnistlab.models.files import models_root
from mnistlab.reading.decode import encode_png
from mnistlab.testing import write_idx_folder
from mnistlab.trust.reader import PRETRAINED_DIR, load_reader

runner = CliRunner()


def one_error_line(result) -> str:
    """The single `Error:` line of a refused command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _shipped() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(PRETRAINED_DIR.iterdir())}


@pytest.fixture(scope="module")
def model(mnist_small, tmp_path_factory) -> Path:
    """logreg on 600 MNIST digits, saved."""
    X_tr, X_te, y_tr, y_te = mnist_small
    out = tmp_path_factory.mktemp("outputs") / "logreg"
    train_recipe("logreg", cv=0, out=out, data=(X_tr[:600], X_te[:200], y_tr[:600], y_te[:200]))
    return out


@pytest.fixture(scope="module")
def digit_png(mnist_small, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("png") / "digit.png"
    path.write_bytes(encode_png(mnist_small[1][0].reshape(28, 28)))
    return path


# Each wrote into src/mnistlab/pretrained/: `export --onnx .../classifier.onnx` replaced the shipped reader's
# classifier, and every later `predict` failed its checksum.
INTO_THE_PACKAGE = {
    "export over the reader": ["export", "{model}", "--onnx", "{shipped}/classifier.onnx"],
    "export beside it": ["export", "{model}", "--onnx", "{shipped}/mine.onnx"],
    "export through ..": ["export", "{model}", "--onnx", "{shipped}/../pretrained/classifier.onnx"],
    "export through a link": ["export", "{model}", "--onnx", "{link}/classifier.onnx"],
    "train --out": ["train", "logreg", "--limit", "200", "--out", "{shipped}"],
    "evaluate --out": ["evaluate", "{model}", "--out", "{shipped}"],
    "evaluate --out a link": ["evaluate", "{model}", "--out", "{link}"],
    "show --out": ["show", "--first", "4", "--out", "{shipped}/digits.png"],
    "compare --out": ["compare", "logreg", "--limit", "200", "--out", "{shipped}"],
    "sweep --out over the card": ["sweep", "logreg", "--param", "logreg__C=0.1,1", "--out", "{shipped}/card.json"],
    "predict --save-preprocessed": ["predict", "{png}", "--save-preprocessed", "{shipped}"],
}


@pytest.mark.parametrize("case", list(INTO_THE_PACKAGE))
def test_nothing_is_written_into_the_shipped_reader_folder(case, model, digit_png, tmp_path):
    before = _shipped()
    link = tmp_path / "pre"
    link.symlink_to(PRETRAINED_DIR)
    args = [a.format(model=model, shipped=PRETRAINED_DIR, link=link, png=digit_png) for a in INTO_THE_PACKAGE[case]]
    line = one_error_line(runner.invoke(app, args))
    assert "inside mnistlab's own package folder" in line and "choose a path outside it" in line, line
    assert _shipped() == before
    load_reader(PRETRAINED_DIR)  # still verifies


def test_export_model_in_python_refuses_the_shipped_reader_too(model):
    before = _shipped()
    with pytest.raises(ParameterError, match="inside mnistlab's own package folder") as info:
        export_model(model, PRETRAINED_DIR / "classifier.onnx")
    assert info.value.param == "onnx_file" and _shipped() == before


def test_a_model_folder_of_its_own_is_still_writable_outside_the_package(tmp_path):
    assert check_writable_dir(tmp_path / "pretrained", "out") == tmp_path / "pretrained"
    assert check_writable_file(tmp_path / "pretrained" / "classifier.onnx", "onnx")


# A spec or a figure written over a model's card or weights: the model was refused ever after.
@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "logreg", "--param", "logreg__C=0.1,1", "--out", "{model}/model.json"],
        ["show", "--first", "4", "--out", "{model}/model.skops"],
    ],
)
def test_an_output_over_a_models_own_file_is_refused(args, model):
    card = (model / "model.json").read_bytes()
    line = one_error_line(runner.invoke(app, [a.format(model=model) for a in args]))
    assert f"is a file of the model saved in {model}" in line, line
    assert (model / "model.json").read_bytes() == card


def test_a_model_onnx_is_refused_only_where_the_card_records_it(model, tmp_path):
    with pytest.raises(ParameterError, match="is a file of the model"):
        check_writable_file(model / "model.json", "out")
    assert check_writable_file(model / "model.onnx", "onnx")  # a recipe's card: made from the model, not read by it
    module = tmp_path / "module"
    module.mkdir()
    (module / "model.json").write_text(json.dumps({"onnx_sha256": "0" * 64}))
    with pytest.raises(ParameterError, match="is a file of the model"):
        check_writable_file(module / "model.onnx", "onnx")


# Path.expanduser raised RuntimeError ("Could not determine home directory."): a traceback.
NO_SUCH_HOME = {
    "MNISTLAB_DATA": (["data", "info"], {"MNISTLAB_DATA": "~nosuchuser/mnist"}, "MNISTLAB_DATA=~nosuchuser/mnist"),
    "--data-dir": (["data", "info", "--data-dir", "~nosuchuser/mnist"], {}, "'--data-dir': ~nosuchuser/mnist"),
    "train --out": (["train", "knn", "--out=~nosuchuser/m"], {}, "--out ~nosuchuser/m"),
    "evaluate": (["evaluate", "~nosuchuser/m"], {}, "'model_dir': ~nosuchuser/m"),
    "show --data-dir": (["show", "--data-dir", "~nosuchuser/mnist", "--out", "{tmp}/d.png"], {}, "--data-dir"),
    "XDG_CACHE_HOME": (["data", "info"], {"XDG_CACHE_HOME": "~nosuchuser/cache"}, "XDG_CACHE_HOME=~nosuchuser"),
    "XDG_DATA_HOME": (["train", "logreg"], {"XDG_DATA_HOME": "~nosuchuser/data"}, "XDG_DATA_HOME=~nosuchuser"),
    "--tracking-uri": (["runs", "--tracking-uri", "~nosuchuser/runs.db"], {}, "--tracking-uri ~nosuchuser/runs.db"),
    "MLFLOW_TRACKING_URI": (["runs"], {"MLFLOW_TRACKING_URI": "~nosuchuser/runs.db"}, "MLFLOW_TRACKING_URI="),
}


@pytest.mark.parametrize("case", list(NO_SUCH_HOME))
def test_a_home_folder_of_no_user_is_one_sentence(case, tmp_path, monkeypatch):
    args, env, named = NO_SUCH_HOME[case]
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    line = one_error_line(runner.invoke(app, [a.format(tmp=tmp_path) for a in args]))
    assert named in line and "this machine has no user 'nosuchuser'" in line, line
    assert list(tmp_path.iterdir()) == []  # no folder named ~nosuchuser made here


@pytest.fixture
def home_and_work(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """An empty home folder (HOME) and an empty folder to work in, the current one: a folder named ~ made by
    mistake shows in it."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home, work


def test_a_leading_tilde_in_a_model_or_output_path_is_the_home_folder(home_and_work):
    """`train knn --out=~/models/knn` (bash passes a ~ after = on as it is; a quoted path, a Makefile's) saved into a
    folder named ~ in the current one, as show, evaluate and predict wrote their files given '~/...', and evaluate
    and predict --model looked for the model there; --data-dir, --tracking-uri and an image's path took ~ for home."""
    home, work = home_and_work
    (home / "digit.png").write_bytes(encode_png(np.pad(np.full((12, 4), 255, np.uint8), 8)))
    for args in (
        ["train", "knn", "--limit", "200", "--cv", "0", "--out=~/models/knn"],
        ["show", "--first", "4", "--out=~/digits.png"],
        ["evaluate", "~/models/knn", "--out", "~/figures"],
        ["predict", "~/digit.png", "--model", "~/models/knn", "--save-preprocessed", "~/seen"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert (home / "models" / "knn" / "model.json").is_file() and (home / "digits.png").is_file()
    assert (home / "figures" / "confusion.png").is_file() and (home / "seen" / "digit.png").is_file()
    assert list(work.iterdir()) == []  # no folder named ~
    (work / "~draft.png").write_bytes((home / "digit.png").read_bytes())  # a file's name, as a shell leaves it
    assert runner.invoke(app, ["predict", "~draft.png", "--model", "~/models/knn"]).exit_code == 0


def test_a_leading_tilde_in_a_model_path_is_the_home_folder_in_python_too(home_and_work, mnist_small):
    """save_model(m, "~/models/knn") made a folder named ~ in the current one, and load_model, read_card and
    predict_image/predict_array/read_number(model="~/...") looked for the model there, where the CLI, load_mnist
    and an image's path took ~ for home."""
    from mnistlab.models.files import load_model, read_card, save_model
    from mnistlab.models.recipes import get_recipe
    from mnistlab.trust.predict import predict_array, predict_image, read_number

    home, work = home_and_work
    X_tr, _, y_tr, _ = mnist_small
    fitted = get_recipe("knn").build(0, 1).fit(X_tr[:300], y_tr[:300])
    card = {"recipe": "knn", "metrics": {"test_accuracy": 0.5}}
    assert save_model(fitted, "~/models/knn", card=card) == home / "models" / "knn"
    assert load_model("~/models/knn")[1] == read_card(home / "models" / "knn") == read_card("~/models/knn")
    digit = X_tr[0].reshape(28, 28)
    for answer in (predict_image, predict_array, read_number):
        assert answer(digit, model="~/models/knn")["confident"] in (True, False)
    assert list(work.iterdir()) == []  # no folder named ~
    with pytest.raises(ParameterError, match="^model_dir ~nosuchuser/m starts with ~nosuchuser, but this machine"):
        load_model("~nosuchuser/m")


def test_a_leading_tilde_in_the_labs_paths_is_the_home_folder(home_and_work, mnist_small):
    """train_recipe(out="~/models/knn"), evaluate_model(out_dir="~/figures") and compare(out_dir="~/report") made
    a folder named ~ in the current one, and evaluate_model/export_model("~/models/knn") looked for the model
    there, where `mnistlab train --out=~/...` and the others took ~ for home."""
    from mnistlab.lab.compare import compare

    home, work = home_and_work
    X_tr, X_te, y_tr, y_te = mnist_small
    data = (X_tr[:300], X_te[:100], y_tr[:300], y_te[:100])
    assert train_recipe("knn", cv=0, out="~/models/knn", data=data)["model_dir"] == str(home / "models" / "knn")
    figures = evaluate_model("~/models/knn", out_dir="~/figures", data=data)
    assert Path(figures["confusion_png"]) == home / "figures" / "confusion.png"
    with pytest.raises(ParameterError, match="^onnx_file ~nosuchuser/k.onnx starts with ~nosuchuser, but"):
        export_model("~/models/knn", "~nosuchuser/k.onnx")
    with pytest.raises(InputError, match="needs a fitted CNN") as refused:  # the model found: it is no CNN
        export_model("~/models/knn", "~/knn.onnx")
    assert "does not exist" not in str(refused.value)
    compare(["logreg"], datasets="digits", limit=200, cv=0, out_dir="~/report")
    assert (home / "report" / "index.html").is_file()
    assert list(work.iterdir()) == []  # no folder named ~


def test_files_written_to_a_tilde_path_are_read_back_from_it(home_and_work):
    """write_idx("~/a.idx") wrote into the home folder, but read_idx, read_idx_header and read_idx_sha256("~/a.idx")
    said "~/a.idx: no such file", as OnnxPredictor("~/m.onnx") said "No ONNX file at ~/m.onnx": ~ taken literally."""
    from mnistlab.data.idx import read_idx_header, read_idx_sha256
    from mnistlab.models.cnn.onnx import OnnxPredictor

    home, work = home_and_work
    digits = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert write_idx("~/a.idx", digits) == home / "a.idx"
    assert np.array_equal(read_idx("~/a.idx"), digits) and read_idx_header("~/a.idx")[1] == (2, 3, 4)
    assert read_idx_sha256("~/a.idx")[1] == read_idx_sha256(home / "a.idx")[1]
    shutil.copy(PRETRAINED_DIR / "classifier.onnx", home / "m.onnx")
    assert OnnxPredictor("~/m.onnx").predict_proba(np.zeros((1, 1, 28, 28), np.float32)).shape[0] == 1
    assert list(work.iterdir()) == []


def test_a_dataset_folder_given_as_a_tilde_path_is_the_home_folders(home_and_work, mnist_small):
    """compare(datasets=["~/idx"]) and `compare --dataset=~/idx` (sweep's too) said "Unknown dataset '~/idx'" for a
    folder of IDX files in the home folder, which --data-dir and load_mnist(data_dir="~/idx") read."""
    from mnistlab.lab.compare import compare

    home, work = home_and_work
    X_tr, X_te, y_tr, y_te = mnist_small
    images = {"train_images": X_tr[:300].reshape(-1, 28, 28), "test_images": X_te[:100].reshape(-1, 28, 28)}
    write_idx_folder(home / "idx", images | {"train_labels": y_tr[:300], "test_labels": y_te[:100]})
    compare(["logreg"], datasets=["~/idx"], cv=0, out_dir="report")
    result = runner.invoke(app, ["compare", "logreg", "--dataset=~/idx", "--cv", "0", "--out", "report2"])
    assert result.exit_code == 0, result.output
    assert (work / "report" / "index.html").is_file() and (work / "report2" / "index.html").is_file()
    with pytest.raises(DatasetError, match="^~nosuchuser/idx starts with ~nosuchuser, but this machine has no user"):
        compare(["logreg"], datasets=["~nosuchuser/idx"], cv=0, out_dir="report")


def test_a_spec_file_or_code_file_given_as_a_tilde_path_is_the_home_folders(home_and_work, mnist_small):
    """train_recipe("~/best.json") (and `mnistlab train '~/best.json'`) said "Cannot read the spec file ~/best.json
    (FileNotFoundError)", and compare(["~/nets.py:build"]) "No file ~/nets.py": ~ was a folder in the current one."""
    from mnistlab.lab.compare import compare

    home, work = home_and_work
    (home / "best.json").write_text(json.dumps({"recipe": "knn", "params": {}, "name": "knn-mine"}))
    (home / "nets.py").write_text(
        "from sklearn.dummy import DummyClassifier\n\ndef build():\n    return DummyClassifier()\n"
    )
    X_tr, X_te, y_tr, y_te = mnist_small
    data = (X_tr[:300], X_te[:100], y_tr[:300], y_te[:100])
    assert train_recipe("~/best.json", cv=0, out="mine", data=data)["recipe"] == "knn-mine"
    result = runner.invoke(app, ["train", "~/best.json", "--limit", "200", "--cv", "0", "--out", "mine2"])
    assert result.exit_code == 0, result.output
    compare(["~/nets.py:build"], datasets="digits", limit=200, cv=0, out_dir="report")
    assert (work / "report" / "index.html").is_file()
    with pytest.raises(RecipeError, match="^~nosuchuser/nets.py starts with ~nosuchuser, but this machine"):
        compare(["~nosuchuser/nets.py:build"], datasets="digits", cv=0, out_dir="report")


_WRITE_TOGETHER = """
import sys
from mnistlab._atomic import atomic_write_bytes, atomic_write_together

atomic_write_together(sys.argv[1], {"model.skops": b"weights", "model.json": b"card"})
atomic_write_bytes(sys.argv[1] + "/cache.npy", b"arrays")
"""


@pytest.mark.parametrize(("umask", "mode"), [(0o077, 0o600), (0o002, 0o664), (0o022, 0o644)])
def test_files_mnistlab_writes_get_the_permissions_the_umask_gives_a_new_file(tmp_path, umask, mode):
    """Every file was made 0644 whatever the umask: a model, a figure or a cache written under umask 077 (private)
    was readable by every user, and one under 002 was not writable by the group sharing the folder."""
    runs = (
        [sys.executable, "-m", "mnistlab.cli", "show", "--first", "4", "--out", str(tmp_path / "d.png")],
        [sys.executable, "-c", _WRITE_TOGETHER, str(tmp_path / "m")],
    )
    for args in runs:
        run = subprocess.run(args, capture_output=True, text=True, preexec_fn=lambda: os.umask(umask))
        assert run.returncode == 0, run.stderr[-2000:]
    written = [tmp_path / "d.png", *(tmp_path / "m" / name for name in ("model.skops", "model.json", "cache.npy"))]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}


def test_a_model_folder_or_store_that_is_a_link_loop_is_one_sentence(tmp_path, monkeypatch):
    """predict --model LOOP (and serve, predict_image(model=LOOP)) was a RuntimeError traceback ("Symlink loop"),
    as was compare --tracking-uri LOOP/runs.db once the data had loaded: the path was resolved before it was read."""
    from mnistlab.errors import MnistlabError
    from mnistlab.lab.compare import compare
    from mnistlab.trust.predict import predict_image

    monkeypatch.chdir(tmp_path)
    os.symlink("b", "a")
    os.symlink("a", "b")
    said = "a is a link to nothing (a loop, or its target is gone); point it at a model."
    assert one_error_line(runner.invoke(app, ["predict", "a", "--model", "a"])) == f"Error: {said}"
    with pytest.raises(ModelFileError) as refused:
        predict_image(np.zeros((28, 28), np.uint8), model="a")
    assert str(refused.value) == said
    with pytest.raises(MnistlabError, match="^Cannot open the tracking store sqlite:///.*/a/runs.db "):
        compare(["logreg"], datasets="digits", limit=200, cv=0, out_dir="r", tracking_uri="a/runs.db")


def test_a_home_folder_of_no_user_is_refused_in_python_too(monkeypatch):
    with pytest.raises(ParameterError, match="no user 'nosuchuser'") as info:
        load_mnist(data_dir="~nosuchuser/mnist")
    assert info.value.param == "data_dir"
    with pytest.raises(ParameterError, match="no user 'nosuchuser'"):
        download_dataset("mnist", "~nosuchuser/mnist")  # before any network
    monkeypatch.setenv("XDG_DATA_HOME", "~nosuchuser/data")
    with pytest.raises(ModelFileError, match="XDG_DATA_HOME=~nosuchuser/data starts with ~nosuchuser"):
        models_root()


def test_xdg_folders_starting_with_tilde_are_the_home_folder_not_a_folder_named_tilde(tmp_path, monkeypatch):
    # Taken as it was, XDG_CACHE_HOME=~/cache made a folder named "~" in the current one.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "~/cache")
    monkeypatch.setenv("XDG_DATA_HOME", "~/data")
    assert cache_root() == tmp_path / "home" / "cache" / "mnistlab"
    assert models_root() == tmp_path / "home" / "data" / "mnistlab" / "models"


@pytest.mark.parametrize("value", ["cache", "./xdg", "", " "])
def test_xdg_folders_that_are_not_full_paths_are_ignored(value, tmp_path, monkeypatch):
    # The XDG Base Directory spec: a relative path there is invalid, to be ignored. Taken as it was, the cache and
    # the saved models were wherever the command was run from.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    monkeypatch.setenv("XDG_DATA_HOME", value)
    assert cache_root() == tmp_path / "home" / ".cache" / "mnistlab"
    assert models_root() == tmp_path / "home" / ".local" / "share" / "mnistlab" / "models"


@pytest.mark.parametrize("home", ["", "home"])
def test_an_empty_or_relative_home_is_ignored_as_an_xdg_folders_is(home, tmp_path, monkeypatch):
    # HOME= (a service's or a container's) put the cache in /.cache and the models in /.local/share, at the root of
    # the file system; HOME=home in folders that moved with the current one. The password file's home is taken.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", home)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    own = Path(pwd.getpwuid(os.getuid()).pw_dir)
    assert cache_root() == own / ".cache" / "mnistlab"
    assert models_root() == own / ".local" / "share" / "mnistlab" / "models"


@pytest.fixture(scope="module")
def folder_model(mnist_small, tmp_path_factory, _empty_store) -> tuple[Path, Path]:
    """logreg compared on a folder of IDX files (not a registered dataset): (its model folder, the data folder)."""
    X_tr, X_te, y_tr, y_te = mnist_small
    root = tmp_path_factory.mktemp("folder-data")
    data = root / "digits-of-mine"
    data.mkdir()
    for name, array in (
        ("train-images-idx3-ubyte", X_tr[:800].reshape(-1, 28, 28)),
        ("train-labels-idx1-ubyte", y_tr[:800].astype(np.uint8)),
        ("t10k-images-idx3-ubyte", X_te[:300].reshape(-1, 28, 28)),
        ("t10k-labels-idx1-ubyte", y_te[:300].astype(np.uint8)),
    ):
        write_idx(data / name, array)
    args = ["compare", "logreg", "--dataset", str(data), "--cv", "0", "--n-jobs", "1"]
    shutil.copyfile(_empty_store, root / "runs.db")  # a new store, without its migrations again
    store = f"sqlite:///{root / 'runs.db'}"
    done = runner.invoke(app, [*args, "--out", str(root / "report"), "--tracking-uri", store, "--json"])
    assert done.exit_code == 0, done.output
    (model_dir,) = (root / "report" / "models").glob("*/logreg/seed-42")
    return model_dir, data


def test_evaluate_finds_a_folder_datasets_model_where_its_card_says(folder_model):
    # It said "was trained on the dataset 'digits-of-mine', not MNIST, and evaluate measures MNIST models only".
    model_dir, data = folder_model
    card = json.loads((model_dir / "model.json").read_text())
    assert card["data_dir"] == str(data.resolve())
    done = runner.invoke(app, ["evaluate", str(model_dir), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["n_test"] == 300 and result["accuracy"] == card["metrics"]["test_accuracy"]
    assert result["same_data_as_training"] and result["same_predictions_as_training"]


def test_a_folder_named_as_a_registered_dataset_is_recorded_and_found_again_as_a_folder(
    mnist_small, tmp_path, made_store
):
    # A folder named mnist, not MNIST's files: its runs and card said dataset "mnist" with no data_dir, and evaluate
    # measured the model on MNIST's 10,000 test digits, not the folder's 300.
    X_tr, X_te, y_tr, y_te = mnist_small
    arrays = {
        "train_images": X_tr[:800].reshape(-1, 28, 28),
        "train_labels": y_tr[:800],
        "test_images": X_te[:300].reshape(-1, 28, 28),
        "test_labels": y_te[:300],
    }
    data = write_idx_folder(tmp_path / "mnist", arrays)  # MNIST's file names too
    store = made_store(tmp_path / "runs.db")
    args = ["compare", "logreg", "--dataset", str(data), "--cv", "0", "--n-jobs", "1", "--out", str(tmp_path / "r")]
    done = runner.invoke(app, [*args, "--tracking-uri", store, "--json"])
    assert done.exit_code == 0, done.output
    (recorded,) = json.loads(done.stdout)["data"]
    assert (recorded["dataset"], recorded["data_dir"]) == ("mnist", str(data))
    (model_dir,) = (tmp_path / "r" / "models").glob("*/logreg/seed-42")
    card = json.loads((model_dir / "model.json").read_text())
    assert (card["dataset"], card["data_dir"]) == ("mnist", str(data))
    (run,) = Tracker(store).runs()
    assert Tracker(store).client.get_run(run["run_id"]).data.params["data_dir"] == str(data)
    done = runner.invoke(app, ["evaluate", str(model_dir), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["n_test"] == 300 and result["same_data_as_training"] and result["same_predictions_as_training"]


def test_a_folder_dataset_moved_or_changed_is_said_as_such(folder_model, tmp_path):
    model_dir, data = folder_model
    labels = data / "t10k-labels-idx1-ubyte"
    original = labels.read_bytes()
    moved = tmp_path / "moved"
    data.rename(moved)
    try:
        line = one_error_line(runner.invoke(app, ["evaluate", str(model_dir)]))
        assert f"trained on the IDX files in {data.resolve()}, which no longer holds them; put them back" in line
    finally:
        moved.rename(data)
    changed = read_idx(labels).copy()
    changed[0] = (changed[0] + 1) % 10
    write_idx(labels, changed)
    try:
        line = one_error_line(runner.invoke(app, ["evaluate", str(model_dir)]))
        assert f"{data.resolve()} no longer holds the data {model_dir} was trained on" in line, line
        with pytest.raises(DatasetError, match="no longer holds the data"):
            evaluate_model(model_dir)
    finally:
        labels.write_bytes(original)


def test_an_output_whose_name_is_long_but_allowed_is_written(mnist_small, tmp_path):
    """A photo named with 240 characters, saved with --save-preprocessed, and `show --out` a name of 250 bytes:
    both names may be written, but the atomic write's temporary file (".NAME.XXXXXXXX.tmp") was 14 bytes longer
    and refused as "File name too long", said as a full disk or a file in the way."""
    photo = tmp_path / ("7" * 240 + ".png")
    photo.write_bytes(encode_png(mnist_small[1][0].reshape(28, 28)))
    saved = runner.invoke(app, ["predict", str(photo), "--save-preprocessed", str(tmp_path / "seen"), "--json"])
    assert saved.exit_code == 0 and "error" not in json.loads(saved.stdout), saved.output
    assert [p.name for p in (tmp_path / "seen").iterdir()] == [photo.name]
    figure = tmp_path / "figures" / ("é" * 100 + "g" * 46 + ".png")  # 250 bytes
    figure.parent.mkdir()
    left = figure.parent / (".é" + "é" * 2 + "dead.tmp")  # a file of another name is left alone
    left.write_bytes(b"")
    for _ in range(2):  # the second over the first
        shown = runner.invoke(app, ["show", "--first", "4", "--out", str(figure)])
        assert shown.exit_code == 0, shown.output
    assert sorted(p.name for p in figure.parent.iterdir()) == sorted([left.name, figure.name])


@pytest.mark.parametrize(
    "args",
    [
        ["show", "--first", "4", "--out", "{long}.png"],
        ["train", "logreg", "--limit", "200", "--out", "{long}/logreg"],
        ["evaluate", "{model}", "--out", "{long}"],
        ["evaluate", "{long}"],
        ["predict", "--model", "{long}", "{png}"],
        ["predict", "{png}", "--save-preprocessed", "{long}"],
        ["serve", "--model", "{long}", "--port", "18101"],
        ["compare", "logreg", "--out", "{long}"],
        ["runs", "--tracking-uri", "{long}.db"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_path_with_a_name_longer_than_the_system_takes_is_one_sentence(args, model, digit_png, tmp_path):
    """A folder or file name of 256 bytes, over the 255 a name may have: Python's OSError "File name too long"
    and its traceback (exit 1) from every command that took it."""
    long = str(tmp_path / ("n" * 256))
    given = [a.format(long=long, model=model, png=digit_png) for a in args]
    line = one_error_line(runner.invoke(app, given))
    assert line.startswith("Error: The path ") and "n" * 256 in line, line
    assert "a name in it is longer than the file system allows" in line and "choose a shorter name" in line, line
