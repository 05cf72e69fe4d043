"""evaluate_model(model_dir, data=...): test arrays the model cannot be measured on are one sentence, not a number."""

from __future__ import annotations

import json

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


def test_an_empty_test_set_is_refused_in_words_that_fit_arrays(model, digits):
    X_tr, X_te, y_tr, y_te = digits
    empty = "X_test of data holds no images; pass at least one test image, and its label in y_test."
    assert _refusal(model, (X_tr, X_te[:0], y_tr, y_te[:0])) == empty
    assert _refusal(model, (X_tr[:0], X_te[:0], y_tr[:0], y_te[:0])) == empty  # no "labels file" here
    said = _refusal(model, (X_tr[:0], X_te, y_tr[:0], y_te), DatasetError)
    assert said.startswith("y_train of data holds no labels;") and "labels file" not in said


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
