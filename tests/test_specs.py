"""Spec files that train and compare take: the ones that cannot build a classifier are refused before any data loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.errors import RecipeError
from mnistlab.lab.specs import resolve_spec
from mnistlab.lab.train import train_recipe

runner = CliRunner()


def _refused(tmp_path, spec, command: str = "train") -> str:
    """The one line `mnistlab COMMAND spec` says, checked to be a clean exit 2 before the data loads."""
    out = tmp_path / "out"
    done = runner.invoke(app, [command, str(spec), "--limit", "500", "--cv", "0", "--n-jobs", "1", "--out", str(out)])
    assert done.exit_code == 2, done.output
    assert "loading" not in done.output and "Traceback" not in done.output
    (line,) = done.stderr.strip().splitlines()
    assert not out.exists()
    return line


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"logreg": "x"}, "sets a step of logreg ('logreg') to \"x\", which is not an estimator"),
        ({"logreg": "x", "logreg__C": 1.0}, "sets a step of logreg ('logreg') to \"x\", which is not an estimator"),
        ({"scale": 3}, "sets a step of logreg ('scale') to 3, which is not an estimator"),
        ({"steps": []}, "sets the steps of logreg ('steps') to [], which is not a list of estimators"),
        ({"logreg": "passthrough"}, "skips the last step of logreg ('logreg'), so that nothing would predict"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_spec_file_that_replaces_a_step_is_one_sentence_before_the_data_loads(tmp_path, params, says, command):
    spec = tmp_path / "tuned.json"
    spec.write_text(json.dumps({"recipe": "logreg", "params": params}))
    line = _refused(tmp_path, spec, command)
    assert line.startswith(f"Error: The spec file {spec} ") and says in line and "parameters instead" in line, line


def test_a_model_card_given_as_a_spec_is_named_a_model_card(tmp_path):
    X, y = load_digits(return_X_y=True)
    X = (X * 16).clip(0, 255).astype(np.uint8)
    model = tmp_path / "m"
    train_recipe("logreg", cv=0, out=model, data=(X[:300], X[300:400], y[:300], y[300:400]))
    card = model / "model.json"
    line = _refused(tmp_path, card)
    assert line == (
        f"Error: {card} is a model card (the model.json `mnistlab train` saves beside a model), not a spec; "
        "give a spec file `mnistlab sweep` wrote, or a recipe name."
    )
    with pytest.raises(RecipeError, match="is a model card"):
        resolve_spec(str(card))


def test_a_spec_file_given_as_a_path_is_trained_and_compared_as_its_name_is(tmp_path):
    """compare(Path("best.json")) took the Path for one spec, then refused it ("Cannot compare a PosixPath");
    train_recipe(Path("best.json")) failed in a traceback (AttributeError: no attribute 'endswith')."""
    from pathlib import Path

    from mnistlab.errors import MnistlabError
    from mnistlab.lab.compare import compare

    spec = tmp_path / "best.json"
    spec.write_text(json.dumps({"recipe": "logreg", "params": {"logreg__C": 0.5}}))
    X, y = load_digits(return_X_y=True)
    X = (X * 16).clip(0, 255).astype(np.uint8)
    result = train_recipe(Path(spec), cv=0, out=tmp_path / "m", data=(X[:300], X[300:400], y[:300], y[300:400]))
    assert (result["recipe"], result["spec"]) == ("logreg-tuned", str(spec))
    store = tmp_path / "s.db"
    summary = compare(
        Path(spec), datasets="digits", baseline=Path(spec), out_dir=tmp_path / "r", tracking_uri=str(store)
    )
    assert [r["model"] for r in summary["results"]] == ["logreg-tuned"]
    with pytest.raises(MnistlabError, match=r"^Cannot train 3 \(of type int\); give a recipe name"):
        train_recipe(3)


def test_a_spec_tuned_on_another_dataset_says_so_when_train_fits_it_on_mnist(tmp_path):
    """A sweep on fashion-mnist, then `train best.json`: an MNIST model came out, and nothing said the data changed."""
    spec = tmp_path / "best.json"
    chosen_on = {"dataset": "fashion-mnist", "data_sha256": "ab" * 32, "split": "official", "limit": 300}
    spec.write_text(json.dumps({"recipe": "logreg", "name": "logreg-tuned", "params": {"logreg__C": 0.5}, **chosen_on}))
    args = ["train", str(spec), "--limit", "300", "--cv", "0", "--n-jobs", "1", "--out", str(tmp_path / "m")]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    note = (
        f"note: {spec} was tuned on fashion-mnist, but train fits and tests it on mnist; to fit it on "
        f"fashion-mnist, run `mnistlab compare {spec} --dataset fashion-mnist`."
    )
    assert note in done.stdout.splitlines(), done.stdout
    on_mnist = tmp_path / "mnist.json"  # tuned on the data it is trained on: nothing to say
    from mnistlab.data.load import load_mnist

    chosen_on["dataset"], chosen_on["data_sha256"] = "mnist", load_mnist("mnist").details["data_sha256"]
    on_mnist.write_text(json.dumps({"recipe": "logreg", "params": {"logreg__C": 0.5}, **chosen_on}))
    args[1] = str(on_mnist)
    done = runner.invoke(app, args)
    assert done.exit_code == 0 and "note:" not in done.stdout, done.output
