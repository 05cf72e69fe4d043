"""The classic recipes: registry, the lesson's exact models, and learning on a small subset."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

from mnistlab.errors import RecipeError
from mnistlab.models.cnn.hyper import HYPER_FIELDS
from mnistlab.models.proba import class_probabilities, decision_margins, digit_probabilities
from mnistlab.models.recipes import CNN, CNN_BEST, CNN_FAST, DEFAULT_LINEUP, RECIPES, get_recipe, list_recipes

# Unscaled SGD stopping at max_iter is the lesson's behaviour, not a test failure.
pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.usefixtures("one_blas_thread"),  # fit as train_recipe does: one BLAS thread
]

CLASSIC = [r.name for r in list_recipes() if r.family == "classic"]
# Well above the 10% of chance on 1,500 training digits; the full-size targets
# (0.92 .. 0.985) are measured in benchmarks/bench_classic.py.
FLOOR = {"sgd-hinge": 0.75, "sgd-log": 0.75, "extra-trees": 0.85}


@pytest.fixture(scope="module")
def subset(mnist_small):
    X_tr, X_te, y_tr, y_te = mnist_small
    return X_tr[:1500], X_te[:500], y_tr[:1500], y_te[:500]


def test_registry_lists_the_classic_recipes():
    for name in ("sgd-hinge", "sgd-log", "logreg", "knn", "knn-deskew", "svm-rbf"):
        assert name in RECIPES
    assert "extra-trees" in RECIPES
    for name in CLASSIC:
        recipe = get_recipe(name)
        assert recipe.description and recipe.description.endswith(".")
        assert recipe.cv == 0 or recipe.cv >= 2
    assert set(DEFAULT_LINEUP) <= set(RECIPES)


def test_listing_recipes_imports_neither_torch_nor_scikit_learn():
    # scikit-learn's Pipeline, imported with the registry, made `mnistlab recipes` take 1.6 s instead of 0.3
    code = "import sys, mnistlab.models.recipes as r; r.list_recipes(); print('torch' in sys.modules, 'sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "name, hyp", [("cnn-fast", CNN_FAST), ("cnn", CNN), ("cnn-best", CNN_BEST), ("ensemble", CNN_BEST)]
)
def test_cnn_recipes_are_named_hyperparameter_sets(name, hyp):
    params = get_recipe(name).build(0, 1).get_params()
    assert {field: params[field] for field in HYPER_FIELDS} == asdict(hyp)


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(RecipeError, match="Unknown recipe 'sgd-hing'.*sgd-hinge.*knn-deskew"):
        get_recipe("sgd-hing")


@pytest.mark.parametrize("name", CLASSIC)
def test_recipe_learns_on_a_small_subset(name, subset):
    X_tr, X_te, y_tr, y_te = subset
    model = get_recipe(name).build(0, 1)
    assert isinstance(model, Pipeline)
    if name.startswith("sgd"):
        # Unscaled SGD runs up to 1,000 epochs before giving up (the lesson's
        # minutes); 30 are plenty to show it learns.
        model.set_params(sgd__max_iter=30)
    model.fit(X_tr, y_tr)
    accuracy = float(np.mean(model.predict(X_te) == y_te))
    assert accuracy > FLOOR.get(name, 0.85), f"{name}: {accuracy:.3f}"


def test_a_recipe_reads_float_pixels_as_load_mnist_gives_them(subset):
    """``load_mnist(dtype=np.float32)`` gives pixels in [0, 1]: a classic recipe fits and predicts them as well
    as the uint8 ones (it used to divide them by 255 again and answer at chance)."""
    X_tr, X_te, y_tr, y_te = subset
    on_uint8 = get_recipe("logreg").build(0, 1).fit(X_tr, y_tr)
    on_floats = get_recipe("logreg").build(0, 1).fit(X_tr.astype(np.float32) / 255, y_tr)
    assert np.mean(on_floats.predict(X_te.astype(np.float32) / 255) == y_te) > 0.85
    assert (on_uint8.predict(X_te.astype(np.float32) / 255) == on_uint8.predict(X_te)).mean() > 0.99


@pytest.mark.parametrize("name, loss", [("sgd-hinge", "hinge"), ("sgd-log", "log_loss")])
def test_sgd_recipes_are_exactly_the_lesson(name, loss, subset):
    X_tr, X_te, y_tr, _ = subset
    ours = get_recipe(name).build(42, 2)
    lesson = SGDClassifier(loss=loss, random_state=42)
    sgd = ours.named_steps["sgd"]
    assert len(ours.steps) == 1
    # Same settings as the lesson apart from n_jobs, which only parallelises one-vs-rest.
    assert {k: v for k, v in sgd.get_params().items() if k != "n_jobs"} == {
        k: v for k, v in lesson.get_params().items() if k != "n_jobs"
    }
    ours.set_params(sgd__max_iter=20)
    lesson.set_params(max_iter=20)
    np.testing.assert_array_equal(ours.fit(X_tr, y_tr).predict(X_te), lesson.fit(X_tr, y_tr).predict(X_te))


def test_seed_makes_fits_reproducible(subset):
    X_tr, X_te, y_tr, _ = subset
    # knn-deskew's PCA uses a randomised solver at this size, so the seed matters.
    a = get_recipe("knn-deskew").build(7, 1).fit(X_tr, y_tr)
    b = get_recipe("knn-deskew").build(7, 1).fit(X_tr, y_tr)
    np.testing.assert_array_equal(a[:-1].transform(X_te), b[:-1].transform(X_te))
    np.testing.assert_array_equal(a.predict(X_te), b.predict(X_te))


def test_knn_deskew_searches_neighbours_in_40_dimensions_not_784(mnist_small):
    # What makes it cheaper than knn (the times are in benchmarks/RESULTS.md): each distance is over 40 numbers.
    X_tr, _, y_tr, _ = mnist_small
    plain = get_recipe("knn").build(0, 1).fit(X_tr[:500], y_tr[:500])
    reduced = get_recipe("knn-deskew").build(0, 1).fit(X_tr[:500], y_tr[:500])
    assert plain.named_steps["knn"].n_features_in_ == 784
    assert reduced.named_steps["knn"].n_features_in_ == 40


def test_a_recipe_name_that_is_no_string_is_one_sentence():
    with pytest.raises(RecipeError, match="A recipe is named by a string, got list; expected one of: sgd-hinge"):
        get_recipe(["knn"])


def test_a_margin_only_recipe_of_two_digits_gives_probabilities_of_both(subset):
    # A binary classifier's decision_function is one margin per image, (N,), positive for classes_[1]:
    # the softmax over an axis 1 it has not was a numpy AxisError (train_recipe('sgd-hinge') on 3s and 7s
    # failed so, after the fit, while calibrating).
    X_tr, X_te, y_tr, _ = subset
    two = np.isin(y_tr, [3, 7])
    model = get_recipe("sgd-hinge").build(0, 1).set_params(sgd__max_iter=30).fit(X_tr[two], y_tr[two])
    proba = class_probabilities(model, X_te)
    assert proba.shape == (len(X_te), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X_te))
    margins = model.decision_function(X_te)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-margins)))  # the logistic of the margin
    digits = digit_probabilities(model, X_te)
    np.testing.assert_array_equal(digits[:, [3, 7]], proba)
    assert np.all(np.delete(digits, [3, 7], axis=1) == 0)


def test_probabilities_of_an_unfitted_model_say_it_is_not_fitted(subset):
    # NotFittedError is an AttributeError, which class_probabilities took for SVC(probability=False)'s: a model
    # without decision_function (knn, a CNN) was then "has neither predict_proba nor decision_function", and
    # predict_array(img, model=unfitted) said so instead of its "This CNNClassifier is not fitted yet; call fit first."
    from sklearn.exceptions import NotFittedError

    for name in ("knn", "cnn-fast"):
        with pytest.raises(NotFittedError, match="is not fitted yet"):
            class_probabilities(get_recipe(name).build(0, 1), subset[1][:2])


def test_one_vs_one_margins_are_not_read_as_one_per_class(subset):
    # SVC(decision_function_shape="ovo") gives a margin per pair of classes: 45 columns for 10 digits were
    # "probabilities", and predict_array(img, model=svc) a numpy "shape mismatch: value array of shape
    # (10000,45) could not be broadcast"; for 3 digits the 3 pair columns were taken for the 3 classes.
    from sklearn.svm import SVC

    from mnistlab.errors import ModelFileError

    X_tr, X_te, y_tr, _ = subset
    for digits in ([1, 2, 3, 4], [1, 2, 3]):
        some = np.isin(y_tr, digits)
        ovo = Pipeline([("svc", SVC(decision_function_shape="ovo"))]).fit(X_tr[some][:200], y_tr[some][:200])
        assert decision_margins(ovo, X_te[:5]) is None
        with pytest.raises(ModelFileError, match="^Pipeline has no predict_proba, and its decision_function gives no"):
            digit_probabilities(ovo, X_te[:5])
        ovr = ovo.set_params(svc__decision_function_shape="ovr")  # the same fit, its margins one per class
        assert decision_margins(ovr, X_te[:5]).shape == class_probabilities(ovr, X_te[:5]).shape == (5, len(digits))


# The peak memory (VmHWM, reset through /proc/self/clear_refs) of k-NN's predictions over 2,236 test digits (one
# chunk of scikit-learn's default 1 GiB working memory) against all 60,000 training digits, as mnistlab makes them
# and as scikit-learn makes them by default.
_KNN_PEAKS = """
import json, numpy as np, sklearn
from mnistlab import load_split
from mnistlab.lab.train import thread_limits
from mnistlab.models.proba import class_probabilities
from mnistlab.models.recipes import get_recipe
def grown(f):
    open("/proc/self/clear_refs", "w").write("5")
    rss = lambda key: int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) * 1024
    before = rss("VmRSS:")
    out = f()
    return out, rss("VmHWM:") - before
X_train, X_test, y_train, _ = load_split()
knn = get_recipe("knn").build(42, -1).fit(X_train, y_train)
X = X_test[:2236]  # one of scikit-learn's 1 GiB chunks: 2,236 rows of distances to 60,000 digits
with sklearn.config_context(working_memory=1024):
    predicted, predict_default = grown(lambda: knn.predict(X))
    proba, proba_default = grown(lambda: knn.predict_proba(X))
n = 1000  # three of the small chunks and part of a fourth: the peak shows, at under half the work
with thread_limits("classic"):
    ours, predict_ours = grown(lambda: knn.predict(X[:n]))
ours_proba, proba_ours = grown(lambda: class_probabilities(knn, X[:n]))
print(json.dumps({"same": bool(np.array_equal(ours, predicted[:n]) and np.array_equal(ours_proba, proba[:n])),
    "default": [predict_default, proba_default], "ours": [predict_ours, proba_ours]}))
"""


def test_knn_predictions_over_all_of_mnist_take_a_fraction_of_a_gib_with_the_same_answers():
    """k-NN's predict and predict_proba over the 60,000 MNIST digits held 2-3 of scikit-learn's 1 GiB distance
    chunks at once (2.2 GB more at the peak of `mnistlab train knn`, `evaluate` and `compare`); under the lab's
    limits they take small chunks: a quarter of that, the same neighbours, predictions and probabilities."""
    run = subprocess.run([sys.executable, "-c", _KNN_PEAKS], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    peaks = json.loads(run.stdout)
    assert peaks["same"]
    assert min(peaks["default"]) > 1.5e9  # what scikit-learn's default chunks cost here
    assert max(peaks["ours"]) < 0.7e9, peaks  # a float64 copy of the training digits (376 MB) and a small chunk
