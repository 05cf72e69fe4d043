"""train_recipe(data=...): arrays it cannot train and test on are one sentence, before anything is fitted."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mnistlab.errors import InputError, MnistlabError
from mnistlab.lab.train import train_recipe


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as 0-255 pixels: 300 to train, 100 to test."""
    X, y = load_digits(return_X_y=True)
    X = (X * 16).clip(0, 255).astype(np.uint8)
    return X[:300], X[300:400], y[:300], y[300:400]


def _refusal(data, tmp_path) -> str:
    with pytest.raises(InputError) as info:
        train_recipe("knn", cv=0, out=tmp_path / "m", data=data)
    assert isinstance(info.value, MnistlabError) and info.value.exit_code == 2
    assert not (tmp_path / "m").exists()  # refused before anything was fitted or saved
    return str(info.value)


def test_arrays_that_fit_are_trained(digits, tmp_path):
    assert train_recipe("knn", cv=0, out=tmp_path / "m", data=digits)["test_accuracy"] > 0.8


@pytest.mark.parametrize("recipe", ["knn", "sgd-hinge"])
def test_images_as_a_stack_train_as_their_rows_do(digits, tmp_path, recipe):
    """knn and the SGD lesson read no stack of images: load_mnist's images (N, 28, 28), or torch's (N, 1, 28, 28),
    were scikit-learn's 'Found array with dim 3, while dim <= 2 is required by KNeighborsClassifier', where logreg,
    knn-deskew and the CNNs took them; each recipe now reads a stack as its rows."""
    from mnistlab.lab.evaluate import evaluate_model

    X_tr, X_te, y_tr, y_te = digits
    rows = train_recipe(recipe, cv=2, out=tmp_path / "rows", data=digits)
    for shape in ((8, 8), (1, 8, 8), (8, 8, 1)):
        stacks = (X_tr.reshape(-1, *shape), X_te.reshape(-1, *shape), y_tr, y_te)
        result = train_recipe(recipe, cv=2, out=tmp_path / "stacks", data=stacks)
        assert result["test_accuracy"] == rows["test_accuracy"] and result["cv_scores"] == rows["cv_scores"]
        assert evaluate_model(tmp_path / "stacks", data=stacks)["accuracy"] == rows["test_accuracy"]


def test_not_four_arrays(tmp_path, digits):
    said = "data must be four arrays, (X_train, X_test, y_train, y_test)."
    assert _refusal(digits[:2], tmp_path).startswith(said)
    assert _refusal(5, tmp_path).startswith(said)


def test_labels_that_do_not_match_their_images(digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    assert _refusal((X_tr, X_te, y_tr[:100], y_te), tmp_path) == (
        "y_train of data holds 100 labels for 300 images in X_train; pass one label per image."
    )
    assert _refusal((X_tr, X_te, y_tr, y_te[:40]), tmp_path) == (
        "y_test of data holds 40 labels for 100 images in X_test; pass one label per image."
    )


def test_labels_in_a_column_are_not_said_to_be_as_many_as_the_images_and_too_few(digits, tmp_path):
    """Labels as a column (N, 1), as df[["class"]].to_numpy() gives them, were refused with 'y_train of data holds
    300 labels for 300 images in X_train; pass one label per image': the sentence contradicted itself."""
    X_tr, X_te, y_tr, y_te = digits
    assert _refusal((X_tr, X_te, y_tr[:, None], y_te), tmp_path) == (
        "y_train of data holds its labels in an array of shape (300, 1) for 300 images in X_train; "
        "pass one label per image, in a 1-d array."
    )
    assert _refusal((X_tr, X_te, y_tr, y_te[:, None]), tmp_path) == (
        "y_test of data holds its labels in an array of shape (100, 1) for 100 images in X_test; "
        "pass one label per image, in a 1-d array."
    )


def test_a_random_split_of_arrays_that_come_split_is_refused_not_recorded(digits, tmp_path):
    """train_recipe(data=..., split="random", test_size=0.2) trained on the arrays as they came, and its result and
    card said split "random": a split that was never cut."""
    from mnistlab.errors import ParameterError

    for extra in ({}, {"test_size": 0.2}):
        with pytest.raises(ParameterError) as info:
            train_recipe("knn", cv=0, out=tmp_path / "m", data=digits, split="random", **extra)
        assert str(info.value) == (
            "split='random' cuts MNIST as train_recipe loads it, but data holds arrays split already (X_train, "
            "X_test, y_train, y_test); drop split (and test_size) to train and test on them as they are."
        )
        assert not (tmp_path / "m").exists()
    assert train_recipe("knn", cv=0, out=tmp_path / "m", data=digits, split="official")["split"] == "official"


def test_an_empty_test_set(digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    assert _refusal((X_tr, X_te[:0], y_tr, y_te[:0]), tmp_path) == (
        "X_test of data holds no images; pass at least one test image, and its label in y_test."
    )


def test_test_images_of_another_size(digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    assert _refusal((X_tr, X_te[:, :32], y_tr, y_te), tmp_path) == (
        "X_train of data holds images of 64 pixels (8 x 8) and X_test images of 32 pixels; "
        "pass test images of the training images' size."
    )


def test_labels_that_are_not_class_numbers(digits, tmp_path):
    X_tr, X_te, y_tr, y_te = digits
    said = _refusal((X_tr, X_te, y_tr.astype(str), y_te.astype(str)), tmp_path)
    assert said == (
        "y_train of data holds strings; train_recipe takes class numbers (whole numbers such as 0-9), "
        "so number the classes first."
    )
    assert _refusal((X_tr, X_te, y_tr, y_te + 0.5), tmp_path).startswith("y_test of data holds numbers that are not")


def test_the_lessons_boolean_5_detector_is_no_model_of_the_digits_0_and_1(mnist_small, tmp_path):
    # y_train == 5 passed np.isin(labels, 0..9) as the digits 0 and 1: the run was calibrated as a digit
    # classifier, and `mnistlab predict --model` then read a 5 as a confident "0".
    from mnistlab.errors import ModelFileError
    from mnistlab.models.files import load_model, read_card
    from mnistlab.models.proba import digit_classes

    X_tr, X_te, y_tr, y_te = mnist_small
    result = train_recipe("logreg", cv=0, out=tmp_path / "m", data=(X_tr, X_te, y_tr == 5, y_te == 5))
    assert result["test_accuracy"] > 0.9
    assert "calibration" not in read_card(tmp_path / "m")
    estimator, _ = load_model(tmp_path / "m")
    with pytest.raises(ModelFileError, match=r"was trained on the classes False, True, not on digits 0-9"):
        digit_classes(estimator)


@pytest.mark.parametrize(
    "limit, lonely, says",
    [
        (
            299,
            False,
            "limit 299 leaves 1 of the 300 training images out, but a stratified subset leaves out one of "
            "each of the 10 classes or more; give a limit of at most 290, or 300 for them all.",
        ),
        (
            100,
            True,
            "limit takes a stratified subset of the training images, which needs two or more of each "
            "class, but class 9 has one; give a limit of 300 (them all), or add images of class 9.",
        ),
    ],
)
def test_a_limit_no_stratified_subset_can_give_is_one_sentence(digits, tmp_path, limit, lonely, says):
    # scikit-learn's ValueError ("The test_size = 1 should be greater or equal to the number of classes = 10",
    # "The least populated classes in y have only 1 member") came out as a traceback, exit 1, from
    # `mnistlab train knn --limit 59995` as from a folder given to compare.
    X_tr, X_te, y_tr, y_te = digits
    if lonely:
        y_tr = np.where(y_tr == 9, 8, y_tr)
        y_tr[0] = 9
    with pytest.raises(InputError) as info:
        train_recipe("knn", cv=0, limit=limit, out=tmp_path / "m", data=(X_tr, X_te, y_tr, y_te))
    assert str(info.value) == says and info.value.exit_code == 2
    assert not (tmp_path / "m").exists()


def test_a_limit_of_a_training_set_smaller_than_any_limit_says_so(digits, tmp_path):
    # `mnistlab train logreg --split random --test-size 69990 --limit 20` said "--limit must be between 20 and 10
    # training images, got 20": a range no limit is in.
    X_tr, X_te, y_tr, y_te = digits
    with pytest.raises(InputError) as info:
        train_recipe("knn", cv=0, limit=20, out=tmp_path / "m", data=(X_tr[:10], X_te, y_tr[:10], y_te))
    assert str(info.value) == (
        "limit 20 is more than the 10 training images there are, and a limit takes at least 20; "
        "leave out limit to train on all 10."
    )
    assert info.value.exit_code == 2 and not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "cv, says",
    [
        (2, "cv 2 asks for cross-validation"),
        (None, "logreg cross-validates in 3 folds unless cv says otherwise"),  # the recipe's own folds
    ],
)
def test_folds_of_a_training_set_of_one_image_a_class_say_to_skip_them(digits, tmp_path, cv, says):
    # `mnistlab train logreg --split random --test-size 69990 --cv 2` said "--cv must be at most 1, the training
    # images of the rarest class, got 2", and 1 is no number of folds either.
    X_tr, X_te, y_tr, y_te = digits
    assert sorted(y_tr[:10].tolist()) == list(range(10))  # one image of each class
    with pytest.raises(InputError) as info:
        train_recipe("logreg", cv=cv, out=tmp_path / "m", data=(X_tr[:10], X_te, y_tr[:10], y_te))
    assert str(info.value).startswith(says)
    assert str(info.value).endswith(
        ", which needs two or more training images of each class, but the rarest class has 1; give cv 0 to skip it."
    )
    assert not (tmp_path / "m").exists()


def test_cross_validation_in_processes_reads_a_warm_loads_arrays_as_this_process_sees_them(tmp_path, monkeypatch):
    # A warm load maps the array cache (copy-on-write, opened by its file descriptor): as an np.memmap, joblib
    # handed it to its workers by file name, which it lacks, and every parallel CV (the CLI's default --n-jobs -1:
    # `mnistlab train sgd-hinge` itself) died in a BrokenProcessPool traceback once the cache was warm.
    from mnistlab import load_split
    from mnistlab.data.cache import is_mapped
    from mnistlab.testing import write_idx_folder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    X, y = load_digits(return_X_y=True)
    X = (X * 16).clip(0, 255).astype(np.uint8).reshape(-1, 8, 8)
    roles = {"train_images": X[:240], "train_labels": y[:240], "test_images": X[240:300], "test_labels": y[240:300]}
    folder = write_idx_folder(tmp_path / "digits", roles)
    load_split(data_dir=folder)  # builds the cache: the next load maps it
    data = load_split(data_dir=folder)
    assert is_mapped(data[0])
    data[0][data[0] < 128] = 0  # changed in this process only: the workers must see it all the same
    serial = train_recipe("knn", cv=3, n_jobs=1, out=tmp_path / "one", data=[np.array(a) for a in data])
    parallel = train_recipe("knn", cv=3, n_jobs=2, out=tmp_path / "two", data=data)
    assert parallel["cv_scores"] == serial["cv_scores"] and len(serial["cv_scores"]) == 3


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_fold_that_fails_says_why_as_the_fit_does(digits, tmp_path, n_jobs):
    # scikit-learn's cross_val_score keeps a fold's error as a NaN score, then raises "All the 3 fits failed. It
    # is very likely that your model is misconfigured." with every fold's traceback: for images Deskew cannot
    # take, a ValueError traceback (exit 1) where the same images without CV were one sentence.
    X_tr, X_te, y_tr, y_te = digits
    rows = (np.tile(X_tr, 2)[:, :60], np.tile(X_te, 2)[:, :60])  # 60 pixels: no square image
    said = "images have 60 pixels per row, expected a square number such as 784 (28 x 28) flattened row by row."
    for cv in (0, 3):
        with pytest.raises(InputError) as info:
            train_recipe("knn-deskew", cv=cv, n_jobs=n_jobs, out=tmp_path / f"m{cv}", data=(*rows, y_tr, y_te))
        assert str(info.value) == said
