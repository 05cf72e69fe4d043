"""Your own classifiers in compare: code that cannot run through the bench is one sentence, not a traceback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.errors import RecipeError
from mnistlab.lab.compare import compare
from mnistlab.testing import run_cli

runner = CliRunner()

USER_FILE = '''
import numpy as np


class Majority:
    """fit and predict, as the README's "anything with fit and predict" read, but no get_params."""

    def fit(self, X, y):
        values, counts = np.unique(y, return_counts=True)
        self.label_ = values[counts.argmax()]
        return self

    def predict(self, X):
        return np.full(len(X), self.label_)


def majority():
    return Majority()
'''


def _compare_lines(tmp_path, spec: str) -> list[str]:
    """What `mnistlab compare SPEC` says on stderr, checked to be a clean exit 2 that ends in one Error: line."""
    store = tmp_path / "s.db"
    args = ["compare", spec, "--dataset", "digits", "--limit", "200", "--n-jobs", "1", "--out", str(tmp_path / "r")]
    done = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{store}"])
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: "), done.stderr
    return lines


def test_a_classifier_without_get_params_is_one_sentence_before_the_data_loads(tmp_path, monkeypatch):
    """It passed the spec's check and failed once the data was loaded: AttributeError ('Majority' object has no
    attribute 'get_params') from the CLI, TypeError (Cannot clone object) from Python, tracebacks both."""
    (tmp_path / "mine.py").write_text(USER_FILE)
    (line,) = _compare_lines(tmp_path, f"{tmp_path / 'mine.py'}:majority")
    assert "returned a Majority, which has fit and predict but no get_params" in line, line
    assert "BaseEstimator" in line
    assert not (tmp_path / "s.db").exists()

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mine", raising=False)  # another test's mine.py, imported in this process
    from mine import Majority  # type: ignore[import-not-found]

    with pytest.raises(RecipeError, match="Majority has fit and predict but no get_params"):
        compare([Majority()], datasets="digits", out_dir=tmp_path / "r2", tracking_uri=str(tmp_path / "s2.db"))
    assert not (tmp_path / "r2").exists()


BUILDERS = '''
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier


def threads(seed, n_jobs):
    """Its own thread count, refused below 1 (as torch.set_num_threads(-1) is)."""
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be at least 1, got {n_jobs}")
    return KNeighborsClassifier(n_jobs=n_jobs)


def seed_zero_only(seed):
    return LogisticRegression() if seed == 0 else None


class Rounded(LogisticRegression):
    """An __init__ that changes its parameter: scikit-learn's clone refuses it."""

    def __init__(self, C=1.0):
        super().__init__(C=round(C) + 1)
'''


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("threads", "Calling {spec} for seed 42 (n_jobs -1) failed (ValueError: n_jobs must be at least 1, got -1)"),
        ("seed_zero_only", "{spec} returned a NoneType, not a classifier"),
    ],
)
def test_a_callable_that_fails_for_the_runs_seed_or_n_jobs_is_one_sentence(tmp_path, name, says):
    """The spec's check calls it with seed 0 and n_jobs 1; built for the run (seed 42, --n-jobs -1 by default) it
    raised, or returned no classifier, in a traceback once the data was loaded."""
    (tmp_path / "builders.py").write_text(BUILDERS)
    spec = f"{tmp_path / 'builders.py'}:{name}"
    store = tmp_path / "s.db"
    args = ["compare", spec, "--dataset", "digits", "--limit", "200", "--out", str(tmp_path / "r")]
    done = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{store}"])
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: ") and says.format(spec=spec) in line, line


def test_an_estimator_that_cannot_be_cloned_is_one_sentence_before_the_data_loads(tmp_path):
    """compare([Rounded()]) cloned it first in the unit's lookup: RuntimeError (Cannot clone object ...) in a
    traceback, after the data was loaded."""
    (tmp_path / "builders.py").write_text(BUILDERS)
    namespace: dict = {}
    exec(compile(BUILDERS, str(tmp_path / "builders.py"), "exec"), namespace)
    with pytest.raises(RecipeError, match="Cannot clone your Rounded for each seed"):
        compare(
            [namespace["Rounded"]()], datasets="digits", out_dir=tmp_path / "r", tracking_uri=str(tmp_path / "s.db")
        )
    assert not (tmp_path / "r").exists() and not (tmp_path / "s.db").exists()


def test_two_models_whose_names_make_one_folder_name_keep_their_own_folders(tmp_path, monkeypatch):
    """A spec file named folds-make and the callable folds:make were both saved in models/digits/folds-make/seed-0,
    the second over the first; a name that is not a plain folder name gets a digest of itself, as datasets do."""
    (tmp_path / "folds.py").write_text(
        "from sklearn.neighbors import KNeighborsClassifier\n\n\ndef make():\n"
        "    return KNeighborsClassifier(n_neighbors=1)\n"
    )
    spec = tmp_path / "tuned.json"
    spec.write_text('{"recipe": "knn", "params": {"knn__n_neighbors": 3}, "name": "folds-make"}')
    monkeypatch.syspath_prepend(str(tmp_path))
    result = compare(
        [str(spec), "folds:make"],
        datasets="digits",
        limit=200,
        cv=0,
        out_dir=tmp_path / "r",
        tracking_uri=str(tmp_path / "s.db"),
    )
    folders = {run["model"]: Path(run["model_dir"]) for run in result["runs"]}
    assert set(folders) == {"folds-make", "folds:make"}, folders
    assert folders["folds-make"] != folders["folds:make"], folders
    assert folders["folds-make"].parent.name == "folds-make", folders  # a plain name is its own folder, as before
    assert all((folder / "model.json").is_file() for folder in folders.values()), folders


def test_a_torch_modules_save_that_fails_leaves_the_model_there_whole(tmp_path, monkeypatch):
    """A user's torch module is saved as its weights, its card and the model.onnx the card names. The ONNX was
    written first, on its own: a save that then failed (a full disk, Ctrl+C, here a folder in its way) left the
    old card and weights beside the new graph, which the card's onnx_sha256 then refused: the old model was lost.
    The three are written together, or none."""
    from mnistlab.data.load import load_mnist
    from mnistlab.errors import ModelFileError
    from mnistlab.lab.fitting import fit_one, split_for
    from mnistlab.lab.options import RunOptions
    from mnistlab.lab.specs import resolve_spec
    from mnistlab.models.cnn.onnx import OnnxPredictor

    (tmp_path / "tiny_net.py").write_text(
        "def net():\n    from torch import nn\n\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    contender, digits, folder = resolve_spec("tiny_net:net"), load_mnist("digits"), tmp_path / "model"
    options = RunOptions(cv=0, limit=200)
    fit_one(contender, options, split_for("digits", digits, options), folder, lambda _: None)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(before) == {"model.json", "model.safetensors", "model.onnx"}
    (folder / "confusion.png").mkdir()  # in the way of the save, which removes an older model's figures
    other = RunOptions(cv=0, limit=300)  # another model: other weights, another graph
    with pytest.raises(ModelFileError, match="confusion.png there is a folder"):
        fit_one(contender, other, split_for("digits", digits, other), folder, lambda _: None)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    OnnxPredictor(folder / "model.onnx")  # still the graph its card names


LABELLERS = """
from sklearn.linear_model import LogisticRegression


class Floats(LogisticRegression):
    def predict(self, X):
        return super().predict(X).astype(float)  # 3.0 for 3, as a regressor's rounding gives


class Booleans(LogisticRegression):
    def predict(self, X):
        return super().predict(X) == 1  # "is it a one?"


def floats():
    return Floats(max_iter=50)


def booleans():
    return Booleans(max_iter=50)


def plain():
    return LogisticRegression(max_iter=50)
"""


def test_labels_predicted_as_whole_floats_are_read_as_the_labels(tmp_path, monkeypatch):
    """Predictions 3.0 for 3 passed the label check and went on as floats: into confusion.json's labels, and into
    the report, where they indexed MNIST's class names: IndexError (arrays used as indices must be of integer
    type) in a traceback, after every fit was recorded."""
    from mnistlab.data.load import load_mnist
    from mnistlab.lab.fitting import fit_one, split_for
    from mnistlab.lab.options import RunOptions
    from mnistlab.lab.specs import resolve_spec

    (tmp_path / "labellers.py").write_text(LABELLERS)
    options, digits = RunOptions(cv=0, limit=200), load_mnist("digits")
    d = split_for("digits", digits, options)
    fitted = {
        name: fit_one(resolve_spec(f"{tmp_path / 'labellers.py'}:{name}"), options, d, tmp_path / name, lambda _: None)
        for name in ("floats", "plain")
    }
    assert fitted["floats"].y_pred.dtype == d.y_train.dtype
    assert np.array_equal(fitted["floats"].y_pred, fitted["plain"].y_pred)
    assert fitted["floats"].labels == fitted["plain"].labels == list(range(10))


def test_booleans_for_number_labels_are_one_sentence(tmp_path):
    """True and False passed the label check as 1 and 0, then indexed the report's class names as a mask:
    IndexError in a traceback."""
    (tmp_path / "labellers.py").write_text(LABELLERS)
    (line,) = _compare_lines(tmp_path, f"{tmp_path / 'labellers.py'}:booleans")[-1:]
    assert "predict returned labels the training labels do not hold (such as False)" in line, line


NOTEBOOK_NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return {scale} * self.fc(x.flatten(1))


def make(seed):
    return Net()
"""


def test_a_net_typed_into_a_notebook_is_never_keyed_as_its_edit(tmp_path, monkeypatch):
    """A class typed into a notebook (or `python -c`, `python -`) has no file to hash: its edited forward (here
    logits times 0, which answer 0 for every image) had the reuse key of the net before it, so compare reused the
    old net's run and reported its accuracy for the new code. A net whose class a file holds keeps one key."""
    import types

    from mnistlab.lab.codehash import built_code_sha256
    from mnistlab.lab.specs import resolve_spec

    def code_key(make) -> str | None:
        contender = resolve_spec(make)
        return built_code_sha256(contender.code_sha256, contender.recipe.build(42, 1))

    def typed(scale: int):
        notebook = types.ModuleType("notebook_cell")  # a notebook's __main__: no __file__
        monkeypatch.setitem(sys.modules, "notebook_cell", notebook)
        exec(compile(NOTEBOOK_NET.format(scale=scale), "<ipython-input-1>", "exec"), notebook.__dict__)
        return notebook.make

    assert code_key(typed(1)) != code_key(typed(0))
    (tmp_path / "filed_net.py").write_text(NOTEBOOK_NET.format(scale=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert code_key("filed_net:make") == code_key("filed_net:make") is not None


def test_a_module_the_users_net_calls_is_part_of_its_reuse_key(tmp_path, monkeypatch):
    """A net's forward that calls a function of the module beside its file (an activation in acts.py): an edit
    of that module kept the reuse key, so compare reused the old net's run and reported 84% for code that now
    answers 10% on digits. The key now holds every file of the user's that the net's file imports."""
    from mnistlab.lab.codehash import built_code_sha256
    from mnistlab.lab.specs import resolve_spec

    (tmp_path / "near_acts.py").write_text("import torch\n\n\ndef act(x):\n    return torch.relu(x)\n")
    (tmp_path / "acting_net.py").write_text(
        NOTEBOOK_NET.replace("import torch\n", "import torch\nfrom near_acts import act\n").replace(
            "{scale} * self.fc(x.flatten(1))", "act(self.fc(x.flatten(1)))"
        )
    )
    monkeypatch.delitem(sys.modules, "near_acts", raising=False)
    contender = resolve_spec(f"{tmp_path / 'acting_net.py'}:make")
    assert "near_acts" in sys.modules

    def code_key() -> str | None:
        return built_code_sha256(contender.code_sha256, contender.recipe.build(42, 1))

    before = code_key()
    assert code_key() == before
    (tmp_path / "near_acts.py").write_text("import torch\n\n\ndef act(x):\n    return torch.zeros_like(x)\n")
    assert code_key() != before
    monkeypatch.delitem(sys.modules, "near_acts")


def test_two_classifiers_of_one_class_given_in_python_say_how_to_name_them(tmp_path):
    """compare([LogisticRegression(C=1), LogisticRegression(C=0.1)]): both are named by their class, and the
    sentence said "name each one once", which nothing in Python does."""
    from sklearn.linear_model import LogisticRegression

    for specs in (
        [LogisticRegression(C=1.0), LogisticRegression(C=0.1)],
        [lambda seed: LogisticRegression(C=1.0), lambda seed: LogisticRegression(C=0.1)],
    ):
        with pytest.raises(RecipeError) as refused:
            compare(specs, out_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 's.db'}")
        said = str(refused.value)
        assert said.startswith("Two models are named ") and "name each one once" not in said, said
        assert said.endswith("; wrap each in a def of its own name."), said
    assert not (tmp_path / "s.db").exists()


def test_the_first_net_of_a_comparison_is_not_timed_with_torchs_first_optimizer(tmp_path, made_store):
    """Two identical nets: the first one's fit time held torch's one-time import of torch._dynamo (its first
    optimizer's), 1-2 s against 0.02 s for the second, so the table and the accuracy-against-time figure put it
    50 times slower."""
    (tmp_path / "twin.py").write_text(NOTEBOOK_NET.format(scale=1) + "\n\ndef other(seed):\n    return Net()\n")
    specs = [f"{tmp_path / 'twin.py'}:make", f"{tmp_path / 'twin.py'}:other", "--dataset", "digits", "--json"]
    args = ["compare", *specs, "--out", str(tmp_path / "r"), "--tracking-uri", made_store()]
    done = run_cli(args)
    assert done.returncode == 0, done.stderr
    first, second = (r["fit_seconds_mean"] for r in json.loads(done.stdout)["results"])
    assert first < 10 * second + 0.3, (first, second)


RENAMED = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Renamed(ClassifierMixin, BaseEstimator):
    """Keeps its argument alpha as self.a: scikit-learn's get_params looks for self.alpha."""

    def __init__(self, alpha=1.0):
        self.a = alpha

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def seeded(seed):
    return Renamed()


def unseeded():
    return Renamed()
'''


@pytest.mark.parametrize("name", ["seeded", "unseeded"])
def test_a_classifier_whose_get_params_fails_is_one_sentence_before_the_data_loads(tmp_path, name):
    """A callable taking seed: AttributeError ('Renamed' object has no attribute 'alpha') in a traceback, after the
    data was loaded; one without: a sentence that told it to take a seed keyword, which led to that traceback."""
    (tmp_path / "renamed.py").write_text(RENAMED)
    spec = f"{tmp_path / 'renamed.py'}:{name}"
    (line,) = _compare_lines(tmp_path, spec)
    assert f"{spec} returned a Renamed, which fails in get_params (AttributeError: " in line, line
    assert "keep each argument of its __init__ unchanged in an attribute of the same name" in line, line
    assert not (tmp_path / "s.db").exists()


EXITS = """
import json
import os
import sys

from sklearn.linear_model import LogisticRegression

class ExitsInFit(LogisticRegression):
    def fit(self, X, y):
        sys.exit(0)


def on_call():
    sys.exit("no GPU here")


def in_fit():
    return ExitsInFit()
"""


@pytest.mark.parametrize(
    ("source", "name", "says"),
    [
        ("import sys\nsys.exit(0)\n", "make", "Running {file} for '{spec}' failed (SystemExit: 0); fix the file."),
        (EXITS, "on_call", "Calling {spec} for seed 0 (n_jobs 1) failed (SystemExit: no GPU here); fix the callable."),
        (EXITS, "in_fit", "digits seed 42: exits.py:in_fit failed (SystemExit: 0); fix the classifier's code."),
    ],
    ids=["import", "call", "fit"],
)
def test_a_file_that_exits_is_one_sentence_not_a_silent_success(tmp_path, source, name, says):
    """sys.exit(0) in the file, the callable or fit (a script's own code, argparse's exit) ended compare at once:
    exit code 0 and nothing said or compared; sys.exit("message") printed the message alone, exit code 1."""
    file = tmp_path / "exits.py"
    file.write_text(source)
    spec = f"{file}:{name}"
    line = _compare_lines(tmp_path, spec)[-1]
    assert line == "Error: " + says.format(file=file, spec=spec), line


def test_a_callable_returning_a_class_is_told_to_return_an_instance(tmp_path):
    """`return LogisticRegression` (the class, not LogisticRegression()) was "returned a type, not a classifier;
    return an unfitted scikit-learn classifier", which the user believed they had done."""
    (tmp_path / "classy.py").write_text(
        "from sklearn.linear_model import LogisticRegression\n\n\ndef make():\n    return LogisticRegression\n"
    )
    (line,) = _compare_lines(tmp_path, f"{tmp_path / 'classy.py'}:make")
    assert "classy.py:make returned the class LogisticRegression, not a classifier" in line, line
    assert "an instance" in line, line


def test_a_file_imports_the_modules_beside_it_as_python_runs_it(tmp_path, monkeypatch):
    """`python models.py` finds layers.py beside it; `mnistlab compare models.py:make` did not (the installed command
    puts no folder of the user's on sys.path): ModuleNotFoundError, "fix the file", for a file that runs."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "beside_layers.py").write_text(
        "from sklearn.linear_model import LogisticRegression\n\n\nclass Mine(LogisticRegression):\n    pass\n"
    )
    (project / "models.py").write_text(
        "from beside_layers import Mine\n\n\ndef make():\n    return Mine(max_iter=30)\n"
    )
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(project))])
    monkeypatch.delitem(sys.modules, "beside_layers", raising=False)
    monkeypatch.chdir(tmp_path)
    from mnistlab.lab.specs import resolve_spec

    made = resolve_spec("project/models.py:make").recipe.build(0, 1)  # what compare checks before the data loads
    assert type(made).__name__ == "Mine" and sys.modules["beside_layers"].__file__ == str(project / "beside_layers.py")


def test_a_net_torch_cannot_export_is_tested_and_recorded_not_saved(tmp_path, monkeypatch):
    """A forward that branches on its data cannot be written as the model.onnx a user's net is saved with:
    torch.export's error ended compare in a traceback (exit 1) once the net was trained, its result lost."""
    from mnistlab.data.load import load_mnist
    from mnistlab.lab.fitting import fit_one, split_for
    from mnistlab.lab.options import RunOptions
    from mnistlab.lab.specs import resolve_spec

    (tmp_path / "branchy.py").write_text(
        "from torch import nn\n\n\nclass Branchy(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(64, 10)\n\n    def forward(self, x):\n        h = self.fc(x.flatten(1))\n"
        "        return h if h.sum() > 0 else -h\n\n\ndef net():\n    return Branchy()\n"
    )
    options, said = RunOptions(cv=0, limit=200), []
    d = split_for("digits", load_mnist("digits"), options)
    fitted = fit_one(resolve_spec(f"{tmp_path / 'branchy.py'}:net"), options, d, tmp_path / "model", said.append)
    assert fitted.result["model_dir"] is None and fitted.result["test_accuracy"] > 0
    assert any("not saved: its net cannot be written as ONNX (" in line for line in said), said
    assert not any((tmp_path / "model").iterdir())


MINE = """
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier


class Mine(ClassifierMixin, BaseEstimator):
    def __init__(self, k=3):
        self.k = k

    def fit(self, X, y):
        self.knn_ = KNeighborsClassifier(self.k).fit(X, y)
        self.classes_ = self.knn_.classes_
        return self

    def predict(self, X):
        return self.knn_.predict(X)


def build():
    return Mine()
"""


def test_a_classifier_defined_in_a_folder_whose_name_is_not_utf8_is_compared(tmp_path):
    """`compare caf\\xe9/mine.py:build`, a file in a folder named in Latin-1, of a class of its own: the key of its
    code hashed the file's path as UTF-8, a UnicodeEncodeError traceback before any fit."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    (folder / "mine.py").write_text(MINE)
    args = ["compare", f"{folder}/mine.py:build", "--dataset", "digits", "--limit", "200", "--n-jobs", "1"]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--tracking-uri", str(tmp_path / "s.db"), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["results"][0]["test_accuracy_mean"] > 0.5
