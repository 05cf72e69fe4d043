"""CNNClassifier: learning, reproducibility, files, ONNX, scikit-learn compatibility.

Nets and epochs are tiny: the file takes ~15 s on a quiet 2-core machine (2 minutes
when the dev machine was shared at load average ~10).
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks
from typer.testing import CliRunner

import mnistlab
from mnistlab.cli import app
from mnistlab.errors import InputError, ModelFileError, ParameterError, RecipeError
from mnistlab.lab.export import MAX_INT8_DROP, export_model
from mnistlab.lab.train import _configure_cnn, train_recipe
from mnistlab.models.cnn.augment import Augmentation, augment_batch
from mnistlab.models.cnn.estimator import CNNClassifier
from mnistlab.models.cnn.net import Averaged, build_net, deskew
from mnistlab.models.cnn.onnx import OnnxPredictor, _model_proto, export_onnx, onnx_graph
from mnistlab.models.files import load_model, save_model
from mnistlab.models.transforms import Deskew

TINY = dict(arch="tiny", batch_size=64, lr=0.05, n_threads=1, random_state=0)


def _weights(est: CNNClassifier) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in est.model_.state_dict().items()}


@pytest.fixture(scope="module")
def fitted(mnist_small):
    """~280 SGD steps of the tiny net on 3000 digits."""
    X_tr, X_te, y_tr, y_te = mnist_small
    return CNNClassifier(**TINY, epochs=6).fit(X_tr, y_tr)


@pytest.fixture(scope="module")
def fitted_graph(fitted) -> bytes:
    """``onnx_graph(fitted)``, exported once (about a second each) for the tests that only read it."""
    return onnx_graph(fitted)


def test_one_digit_given_as_a_28_by_28_array_is_told_to_be_a_batch_of_one(fitted, mnist_small):
    """clf.predict(digit) with one (28, 28) digit said scikit-learn's "X has 28 features, but CNNClassifier is
    expecting 784 features as input": its rows were taken for 28 images of 28 pixels."""
    digit = mnist_small[1][0].reshape(28, 28)
    for method in (fitted.predict, fitted.predict_proba):
        with pytest.raises(InputError, match=r"^X is one 28 x 28 image, not a batch of images; .* X\[None\]\.$"):
            method(digit)
    assert fitted.predict(digit[None]).tolist() == fitted.predict(digit.reshape(1, 784)).tolist()


def test_a_few_hundred_steps_learn_well_above_chance(fitted, mnist_small):
    _, X_te, _, y_te = mnist_small
    assert fitted.n_epochs_ == 6 and len(fitted.history_) == 6
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]
    assert fitted.score(X_te, y_te) > 0.9  # chance is 0.1
    proba = fitted.predict_proba(X_te[:50])
    assert proba.shape == (50, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_images_flat_rows_and_pixel_scales_give_the_same_predictions(fitted, mnist_small):
    _, X_te, _, _ = mnist_small
    X = X_te[:100]
    expected = fitted.predict_proba(X)
    # (N, 28, 28, 1), as Keras lays MNIST out, was refused as images that "must have one channel"
    channels_last = X.reshape(-1, 28, 28, 1)
    for variant in (X.reshape(-1, 28, 28), X.reshape(-1, 1, 28, 28), channels_last, X / 255.0, X.astype(np.float64)):
        np.testing.assert_allclose(fitted.predict_proba(variant), expected, atol=1e-6)
    with pytest.raises(
        InputError, match=r"one channel \(N x 1 x H x W or N x H x W x 1\), got shape \(100, 28, 28, 3\)"
    ):
        fitted.predict(np.repeat(channels_last, 3, axis=3))


def test_a_tensor_that_requires_grad_is_read_as_its_values(fitted, mnist_small):
    """A notebook's tensor still attached to autograd raised torch's "Can't call numpy() on Tensor that requires
    grad" from inside scikit-learn's checks."""
    X = mnist_small[1][:20] / np.float32(255)
    tensor = torch.from_numpy(X.reshape(-1, 1, 28, 28)).requires_grad_()
    np.testing.assert_array_equal(fitted.predict_proba(tensor), fitted.predict_proba(X))
    np.testing.assert_array_equal(fitted.predict(tensor.reshape(20, 784)), fitted.predict(X))


def test_a_list_of_images_is_read_as_the_stack_of_them(fitted, mnist_small):
    # A list of 28 x 28 arrays (one digit each) was "Found array with dim 3, while dim <= 2 is required by
    # CNNClassifier", though the same images as one array are taken.
    X, y = mnist_small[1][:40], mnist_small[3][:40]
    images = list(X.reshape(-1, 28, 28))
    np.testing.assert_array_equal(fitted.predict_proba(images), fitted.predict_proba(X))
    np.testing.assert_array_equal(fitted.predict([image.tolist() for image in images[:3]]), fitted.predict(X[:3]))
    on_list = CNNClassifier(**TINY, epochs=1).fit(images, list(y))
    on_array = CNNClassifier(**TINY, epochs=1).fit(X.reshape(-1, 28, 28), y)
    assert on_list.n_features_in_ == 784 and on_list.image_shape_ == (28, 28)
    np.testing.assert_array_equal(on_list.predict_proba(X), on_array.predict_proba(X))


def test_same_seed_gives_identical_weights_other_seed_differs(mnist_small):
    X, y = mnist_small[0][:600], mnist_small[2][:600]
    weights = [
        _weights(CNNClassifier(**{**TINY, "random_state": seed}, epochs=1, augment="full").fit(X, y))
        for seed in (3, 3, 4)
    ]
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(np.array_equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_the_memory_layout_of_the_pixels_does_not_change_the_fit(mnist_small):
    # Fortran-ordered pixels (a DataFrame's, or np.asfortranarray's) reached the deskewing as a strided
    # view, whose sums add in another order: a deskewing net trained on them got other weights.
    X, y = mnist_small[0][:300], mnist_small[2][:300]
    fit = lambda pixels: _weights(CNNClassifier(**TINY, epochs=1, inputs="deskewed").fit(pixels, y))  # noqa: E731
    expected = fit(X)
    for pixels in (np.asfortranarray(X), np.asfortranarray(X / 255.0)):
        got = fit(pixels)
        assert all(np.array_equal(got[k], expected[k]) for k in expected)


def test_labels_of_any_kind_map_to_classes(mnist_small):
    X, y = mnist_small[0][:400], mnist_small[2][:400]
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    est = CNNClassifier(**TINY, epochs=1).fit(X, names[y])
    assert list(est.classes_) == sorted(names)
    assert set(est.predict(X[:20])) <= set(names)


def test_a_refit_that_fails_or_is_interrupted_leaves_the_previous_fit_whole(mnist_small):
    # classes_, n_features_in_, image_shape_, seeds_ and history_ were replaced before the training, model_
    # only after it: a refit stopped there left the old 10-class net under the new classes, and predict
    # answered with the new labels (or an IndexError).
    X, y, X_te = mnist_small[0][:300], mnist_small[2][:300], mnist_small[1][:50]
    est = CNNClassifier(**TINY, epochs=1).fit(X, y)
    before = {k: v for k, v in vars(est).items() if k.endswith("_")}
    proba = est.predict_proba(X_te)

    def interrupt(row):
        raise KeyboardInterrupt

    two = np.isin(y, [3, 7])
    with pytest.raises(KeyboardInterrupt):
        est.set_params(callback=interrupt).fit(X[two].reshape(-1, 28, 28)[:, 2:-2, 2:-2], y[two])
    with pytest.raises(InputError, match=r"^Training data must hold at least 2 classes, got 1 class \(3\)\.$"):
        est.set_params(callback=None).fit(X[y == 3], y[y == 3])
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())
    np.testing.assert_array_equal(est.predict_proba(X_te), proba)
    # An estimator that was never fitted stays unfitted.
    fresh = CNNClassifier(**TINY, epochs=1, callback=interrupt)
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X, y)
    assert not [k for k in vars(fresh) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        fresh.predict(X_te)


def test_target_stops_when_held_out_accuracy_is_reached(mnist_small):
    X, y = mnist_small[0][:1000], mnist_small[2][:1000]
    seen = []
    est = CNNClassifier(**TINY, epochs=20, target=0.5, callback=seen.append).fit(X, y)
    assert est.n_epochs_ < 20 and est.history_[-1]["val_accuracy"] >= 0.5
    assert [row["epoch"] for row in seen] == list(range(1, est.n_epochs_ + 1))


def test_ensemble_averages_member_probabilities(mnist_small):
    X, y = mnist_small[0][:400], mnist_small[2][:400]
    est = CNNClassifier(**TINY, epochs=1, n_members=2).fit(X, y)
    assert len(est.model_.members) == 2 and len(set(est.seeds_)) == 2
    images = torch.from_numpy(X[:10].reshape(-1, 1, 28, 28) / np.float32(255))
    with torch.no_grad():
        members = [m(images).softmax(1).numpy() for m in est.model_.members]
    np.testing.assert_allclose(est.predict_proba(X[:10]), np.mean(members, axis=0), atol=1e-6)


def test_torch_deskew_matches_the_numpy_deskew(mnist_small):
    X = mnist_small[1][:500]
    expected = Deskew().fit(X).transform(X) / 255
    images = torch.from_numpy(X.reshape(-1, 1, 28, 28) / np.float32(255))
    got = deskew(images).reshape(len(X), -1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert not torch.any(deskew(torch.zeros(2, 1, 28, 28)))  # blank stays blank, no NaN


def test_mixed_members_read_deskewed_digits_inside_the_net(mnist_small, tmp_path):
    X, y, X_te = mnist_small[0][:400], mnist_small[2][:400], mnist_small[1][:200]
    est = CNNClassifier(**TINY, epochs=1, n_members=2, inputs="mixed").fit(X, y)
    raw_net, deskew_net = est.model_.members
    assert (raw_net.deskew_input, deskew_net.deskew_input) == (False, True)
    images = torch.from_numpy(X_te.reshape(-1, 1, 28, 28) / np.float32(255))
    with torch.no_grad():
        # The saved net deskews by itself, so callers and ONNX files pass digits as they are.
        torch.testing.assert_close(deskew_net(images), deskew_net.logits(deskew(images)))
        assert not torch.allclose(deskew_net(images), deskew_net.logits(images))
    save_model(est, tmp_path / "model", card={"recipe": "test"})
    loaded, _ = load_model(tmp_path / "model")
    assert [m.deskew_input for m in loaded.model_.members] == [False, True]
    np.testing.assert_array_equal(loaded.predict_proba(X_te), est.predict_proba(X_te))
    export_onnx(est, tmp_path / "mixed.onnx")
    onnx_proba = OnnxPredictor(tmp_path / "mixed.onnx").predict_proba(images.numpy())
    np.testing.assert_allclose(onnx_proba, est.predict_proba(X_te), atol=1e-5)


def test_members_trained_in_parallel_processes_equal_a_sequential_fit(mnist_small):
    X, y = mnist_small[0][:600], mnist_small[2][:600]
    settings = dict(**TINY, epochs=2, n_members=3, inputs="mixed", augment="light")
    one = CNNClassifier(**settings, n_jobs=1).fit(X, y)
    two = CNNClassifier(**settings, n_jobs=2)
    messages = []
    _configure_cnn(two, "ensemble", None, messages.append)  # what `mnistlab train` shows
    two.fit(X, y)
    a, b = one.model_.state_dict(), two.model_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Every epoch of every member reached the callback in this process, and the history is in order.
    assert [(r["member"], r["epoch"]) for r in two.history_] == [(m, e) for m in range(3) for e in (1, 2)]
    assert [m.split(" member epochs")[0] for m in messages] == [f"ensemble: {k}/6" for k in range(1, 7)]


def test_scikit_learns_process_pool_still_works_after_members_trained_in_processes(mnist_small):
    # joblib takes loky's reusable executor for its own: a pool mnistlab left there broke the next n_jobs=2 call.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = mnist_small[0][:300], mnist_small[2][:300]
    CNNClassifier(**TINY, epochs=1, n_members=2, n_jobs=2).fit(X, y)
    scores = cross_val_score(LogisticRegression(max_iter=50), X / 255.0, y, cv=2, n_jobs=2)
    assert len(scores) == 2 and scores.min() > 0.5


def test_bad_parameters_and_inputs_say_what_was_wrong(fitted, mnist_small):
    X, y = mnist_small[0][:50], mnist_small[2][:50]
    with pytest.raises(RecipeError, match="arch got 'huge', expected one of"):
        CNNClassifier(arch="huge").fit(X, y)
    with pytest.raises(RecipeError, match="epochs got 0"):
        CNNClassifier(epochs=0).fit(X, y)
    with pytest.raises(RecipeError, match="inputs got 'slanted', expected one of: 'raw', 'deskewed', 'mixed'"):
        CNNClassifier(inputs="slanted").fit(X, y)
    with pytest.raises(RecipeError, match="n_jobs got 0"):
        CNNClassifier(n_jobs=0).fit(X, y)
    # Each of these trained an epoch or more before failing, or trained on to NaN weights.
    with pytest.raises(RecipeError, match="epochs got 100000, expected an integer >= 1 and <= 1000"):
        CNNClassifier(epochs=100000).fit(X, y)
    with pytest.raises(RecipeError, match="lr got inf, expected a finite number"):
        CNNClassifier(lr=float("inf")).fit(X, y)
    for name in ("epochs", "n_members", "n_threads"):  # np.isfinite's TypeError, for one past 64 bits
        with pytest.raises(RecipeError, match=f"{name} got 10{{30}}, expected an integer >= 1"):
            CNNClassifier(**{name: 10**30}).fit(X, y)
    for name in ("lr", "weight_decay"):  # torch's "value cannot be converted to type float without overflow"
        with pytest.raises(RecipeError, match=rf"{name} got 1e\+300, expected a finite number >= 0 and <= 3.4"):
            CNNClassifier(**{name: 1e300}).fit(X, y)
    # Trained for seconds, then refused by save_model as "a CNN config mnistlab did not write".
    with pytest.raises(InputError, match="Got 2 x 1100 images, but a CNN reads at most 1024 pixels a side"):
        CNNClassifier(**TINY, epochs=1).fit(np.zeros((len(y), 2, 1100), np.uint8), y)
    with pytest.raises(InputError, match="Training data holds 1,001 classes, more than the 1,000 a CNN's model file"):
        CNNClassifier(**TINY, epochs=1).fit(np.zeros((1001, 28, 28), np.uint8), np.arange(1001))
    with pytest.raises(InputError, match="A class label of 65 characters is longer than the 64 a CNN's model file"):
        CNNClassifier(**TINY, epochs=1).fit(X, np.array(["a" * 65, "b"])[y % 2])
    with pytest.raises(RecipeError, match="callback got 3, expected a function"):
        CNNClassifier(callback=3).fit(X, y)
    with pytest.raises(RecipeError, match="validation_fraction got 1.0; with a target it must be above 0 and below 1"):
        CNNClassifier(target=0.5, validation_fraction=1.0).fit(X, y)
    with pytest.raises(RecipeError, match="validation_fraction 0.999 of 50 images leaves no image"):
        CNNClassifier(target=0.5, validation_fraction=0.999).fit(X, y)
    if not torch.cuda.is_available():
        with pytest.raises(RecipeError, match="no CUDA GPU"):
            CNNClassifier(device="cuda").fit(X, y)
    for device in ("cuda:abc", "cuda:-1", "gpu", "cuda:"):  # each reached torch's own error, or no error at all
        with pytest.raises(RecipeError, match=f"device got '{device}', expected one of"):
            CNNClassifier(device=device).fit(X, y)
    with pytest.raises(InputError, match="0-255"):
        fitted.predict(X.astype(np.int32) * 2)
    with pytest.raises(ValueError, match="784 features"):
        fitted.predict(X[:, :100])
    with pytest.raises(InputError, match="Pixels contain NaN or infinite values"):  # mnistlab's sentence
        fitted.predict(np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X))
    with pytest.raises(InputError, match=r"Cannot write /proc/x/c.onnx \(No such file or directory\)"):
        export_onnx(fitted, "/proc/x/c.onnx")
    with pytest.raises(InputError, match="Got 14 x 56 images, but this model was fitted on 28 x 28"):
        fitted.predict(X.reshape(-1, 14, 56))  # as many pixels, another shape


def test_save_and_load_give_identical_predictions(fitted, mnist_small, tmp_path):
    X = mnist_small[1][:300]
    save_model(fitted, tmp_path / "model", card={"recipe": "test"})
    assert (tmp_path / "model" / "model.safetensors").is_file()
    loaded, card = load_model(tmp_path / "model")
    assert card["format"] == "safetensors" and card["config"]["n_epochs"] == 6
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)


def test_a_cnn_whose_parameters_are_numpy_numbers_saves_and_loads(fitted, mnist_small, tmp_path):
    # fit takes numpy numbers (GridSearchCV's best_estimator_ of a grid np.arange(2, 8) has epochs np.int64), but
    # save_model raised "TypeError: Object of type int64 is not JSON serializable".
    numpy_params = copy.deepcopy(fitted).set_params(epochs=np.int64(6), lr=np.float64(0.05), n_threads=np.int32(1))
    save_model(numpy_params, tmp_path / "model", card={"recipe": "test"})
    loaded, card = load_model(tmp_path / "model")
    assert card["config"]["params"]["epochs"] == 6 and card["config"]["params"]["lr"] == 0.05
    X = mnist_small[1][:50]
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))


def test_a_cnn_whose_nets_set_params_changed_since_its_fit_is_not_saved(fitted, mnist_small, tmp_path):
    # Saved with the parameters of the moment: after set_params(inputs="deskewed") the file loaded as nets that
    # deskew what this raw-input fit never saw deskewed (test accuracy 0.926 in memory, 0.938 loaded), and after
    # set_params(arch="standard") the file was written and then refused by load_model as damaged.
    for change in ({"inputs": "deskewed"}, {"arch": "standard"}, {"n_members": 2}):
        changed = copy.deepcopy(fitted).set_params(**change)
        with pytest.raises(ModelFileError, match="parameters were changed since it was fitted .* set them back, or"):
            save_model(changed, tmp_path / "model", card={})
        assert not (tmp_path / "model").exists()
    # What changes how it runs, not what it is, is saved as ever.
    save_model(copy.deepcopy(fitted).set_params(backend="onnxruntime", verbose=1), tmp_path / "model", card={})
    assert load_model(tmp_path / "model")[0].backend == "onnxruntime"
    # A user's module is checked too (as a copy, re-initialised), leaving torch's generator where it was.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few steps to learn well
        mine = CNNClassifier(**TINY, epochs=1, module=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)))
        mine.fit(mnist_small[0][:200], mnist_small[2][:200])
    rng = torch.get_rng_state()
    save_model(mine, tmp_path / "mine", card={})
    assert torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ModelFileError, match="parameters were changed since it was fitted"):
        save_model(mine.set_params(inputs="deskewed"), tmp_path / "mine", card={})


def test_a_cnn_of_text_labels_from_pandas_saves_and_loads(mnist_small, tmp_path):
    # pandas holds text labels as objects, so classes_ was an object array, and save_model refused the fit as
    # "a CNN config mnistlab did not write (classes_dtype '|O' is not a label dtype ...); restore the original
    # files or retrain the model" (a Pipeline of logreg saved it).
    pd = pytest.importorskip("pandas")
    X, y, X_te = mnist_small[0][:300], mnist_small[2][:300], mnist_small[1][:50]
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few steps to learn well: this is about the labels
        est = CNNClassifier(**TINY, epochs=1).fit(X, pd.Series(names[y], dtype=object))
    save_model(est, tmp_path / "model", card={})
    loaded = load_model(tmp_path / "model")[0]
    assert loaded.classes_.tolist() == est.classes_.tolist() == sorted(names)
    assert loaded.predict(X_te).tolist() == est.predict(X_te).tolist()


def test_onnxruntime_backend_matches_pytorch(fitted, mnist_small):
    X = mnist_small[1][:300]
    ort_est = clone(fitted).set_params(backend="onnxruntime")
    ort_est.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    np.testing.assert_allclose(ort_est.predict_proba(X), fitted.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(ort_est.predict(X), fitted.predict(X))


def test_an_exported_graph_names_no_file_of_the_machine_that_exported_it(fitted_graph):
    """The exporter noted on every node the Python stack that made it, with this machine's file paths: a shared
    file told where it was made, and the same net exported from another folder was other bytes."""
    here = str(Path(mnistlab.__file__).resolve().parent.parent).encode()
    assert here not in fitted_graph and b'File "' not in fitted_graph
    graph = onnx.load_from_string(fitted_graph)
    assert graph.graph.node and not any(node.metadata_props for node in graph.graph.node)
    assert json.loads({p.key: p.value for p in graph.metadata_props}["classes"]) == list(range(10))  # ours stay


def test_parts_of_a_batch_run_side_by_side_give_the_answers_of_one_thread(fitted_graph, mnist_small):
    """``n_threads`` parts at once (each session run on one thread): the same probabilities, in input order."""
    graph = fitted_graph
    one, three = OnnxPredictor(graph, n_threads=1), OnnxPredictor(graph, n_threads=3)
    for n in (1, 2, 5, 300):
        x = mnist_small[1][:n].reshape(-1, 1, 28, 28) / np.float32(255)
        np.testing.assert_allclose(three.predict_proba(x), one.predict_proba(x), atol=1e-6)
    assert three.session.get_session_options().intra_op_num_threads == 1


def test_an_exported_deskewing_net_gives_one_image_the_floats_it_gets_in_a_batch():
    # onnxruntime sums a batch of one in another order than many; in float32 the deskewing
    # member's moments, then its probabilities, differed in the last bits (379 of 2000 here).
    torch.manual_seed(0)
    module = Averaged([build_net("standard", 10, (28, 28)), build_net("standard", 10, (28, 28), deskew_input=True)])
    onnx_net = OnnxPredictor.from_module(module.eval(), (28, 28), range(10), n_threads=1)
    images = (np.random.default_rng(0).random((200, 1, 28, 28)) ** 3).astype(np.float32)
    one_by_one = np.concatenate([onnx_net.predict_proba(im[None]) for im in images])
    np.testing.assert_array_equal(one_by_one, onnx_net.predict_proba(images))
    with torch.inference_mode():  # and still PyTorch's map (the training images are deskewed in float32)
        np.testing.assert_allclose(one_by_one, module(torch.from_numpy(images)).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        deskew(torch.from_numpy(images), exact=True), deskew(torch.from_numpy(images)), atol=1e-5
    )


def test_onnx_predict_proba_refuses_what_is_not_float_images_in_one_sentence():
    """``predict_proba`` takes (N, 1, H, W) floats in [0, 1]: anything else was onnxruntime's own error."""
    torch.manual_seed(0)
    onnx_net = OnnxPredictor.from_module(build_net("tiny", 10, (28, 28)).eval(), (28, 28), range(10), n_threads=1)
    assert onnx_net.predict_proba(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)
    for wrong in (np.zeros((2, 784), np.uint8), np.zeros((2, 28, 28)), np.zeros((2, 1, 20, 20)), np.zeros(0)):
        with pytest.raises(InputError, match=r"^predict_proba takes float images \(N, 1, 28, 28\) in \[0, 1\], got"):
            onnx_net.predict_proba(wrong)
    for dtype in ("<U1", "uint8"):  # uint8 pixels run 0-255: read as floats they would be 255 times too bright
        with pytest.raises(InputError, match=f"got an array of dtype {dtype}; use predict for any digit pixels"):
            onnx_net.predict_proba(np.zeros((1, 1, 28, 28), dtype))
    # predict still takes any digit pixels
    assert onnx_net.predict(np.zeros((2, 784), np.uint8)).shape == (2,)


def test_onnx_predictor_refuses_a_foreign_or_edited_graph_in_one_sentence(fitted, fitted_graph, mnist_small):
    """Metadata classes that are no list of labels, a graph that reads no (N, 1, H, W) images or answers no
    (N, classes) rows: JSONDecodeError, IndexError or onnxruntime's errors at the first call."""
    from onnx import TensorProto, helper

    X = mnist_small[1][:5]
    exported = onnx.load_from_string(fitted_graph)

    def with_classes(text: str) -> bytes:
        proto = onnx.ModelProto()
        proto.CopyFrom(exported)
        onnx.helper.set_model_props(proto, {"classes": text})
        return proto.SerializeToString()

    for text in ("not json", '{"a": 1}', "null", "[[1, 2]]", "[1, 2]"):
        with pytest.raises(ModelFileError, match=r"^This ONNX model's metadata names its classes .* export the model"):
            OnnxPredictor(with_classes(text))
    # No labels (from_module without classes, or a graph that names none): the column numbers.
    np.testing.assert_array_equal(OnnxPredictor(with_classes("[]")).predict(X), fitted.predict(X))
    net = OnnxPredictor.from_module(fitted.model_, (28, 28))
    np.testing.assert_array_equal(net.predict(X), fitted.predict(X))

    def graph(shape_in, shape_out, name="image") -> bytes:
        x = helper.make_tensor_value_info(name, TensorProto.FLOAT, shape_in)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape_out)
        nodes = [helper.make_node("Flatten", [name], ["y"])] if len(shape_out) == 2 else []
        nodes = nodes or [helper.make_node("Identity", [name], ["y"])]
        body = helper.make_graph(nodes, "g", [x], [y])
        return helper.make_model(body, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()

    with pytest.raises(ModelFileError, match=r"does not read a batch of float images \(N, 1, H, W\).*\['N', 784\]"):
        OnnxPredictor(graph(["N", 784], ["N", 784]))
    with pytest.raises(ModelFileError, match=r"answers \['N', 1, 28, 28\], not one row of class probabilities"):
        OnnxPredictor(graph(["N", 1, 28, 28], ["N", 1, 28, 28]))
    # Another name for the input is no reason to refuse: it is read from the graph.
    assert OnnxPredictor(graph(["N", 1, 2, 2], ["N", 4], name="x")).predict_proba(np.ones((3, 1, 2, 2))).shape == (3, 4)
    # A graph of any size (symbolic sides) reads the images given: every image was refused, "this model reads H x W".
    assert OnnxPredictor(graph(["N", 1, "H", "W"], ["N", "C"])).predict(np.zeros((3, 784), np.uint8)).shape == (3,)
    # Its columns are known only once it answers: 784 columns for 3 classes was numpy's IndexError, a traceback.
    proto = onnx.load_from_string(graph(["N", 1, "H", "W"], ["N", "C"]))
    onnx.helper.set_model_props(proto, {"classes": "[0, 1, 2]"})
    with pytest.raises(ModelFileError, match="^This ONNX model's metadata names 3 classes, but it answers 784 columns"):
        OnnxPredictor(proto.SerializeToString()).predict(np.full((3, 784), 255, np.uint8))


def test_an_onnx_file_keeping_its_weights_in_another_file_is_refused(fitted_graph, tmp_path, monkeypatch):
    """Read from bytes, onnxruntime looked for an external tensor's file in the current folder: a model from
    elsewhere read a file of that folder (here the weights, there any file) into its weights, and answered."""
    proto = onnx.load_from_string(fitted_graph)
    (tmp_path / "model").mkdir()
    # Tensors of 1 KiB or more (the weights) go to w.bin; the shapes the graph reshapes to stay in it.
    onnx.save_model(proto, tmp_path / "model" / "net.onnx", save_as_external_data=True, location="w.bin")
    (tmp_path / "here").mkdir()
    (tmp_path / "model" / "w.bin").rename(tmp_path / "here" / "w.bin")  # not beside the model: in the current folder
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(ModelFileError, match=r"^This ONNX model keeps tensor '.*' in another file, which onnxruntime"):
        OnnxPredictor(tmp_path / "model" / "net.onnx")


def test_an_onnx_file_larger_than_protobuf_allows_is_refused_unread(tmp_path, monkeypatch):
    import mnistlab.models.cnn.onnx as onnx_module

    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(2**31 + 1)  # sparse: no disk, and 2 GiB of memory were it read
    reads: list[int | None] = []
    monkeypatch.setattr(onnx_module, "read_regular", lambda path, most=None, **kw: reads.append(most) or None)
    with pytest.raises(ModelFileError, match="big.onnx is larger than any ONNX file can be"):
        OnnxPredictor(big)
    assert reads == []  # refused by its size: it was read up to 2 GiB and one byte before it was refused


def test_an_onnx_file_that_is_no_protobuf_message_is_refused_unread(fitted_graph, tmp_path, monkeypatch):
    """A file of zeros (sparse: 2 GB of them took 2.2 GB of memory and 9 s) or an export cut short was read whole
    before protobuf refused it; its fields' tags and lengths say so first."""
    import mnistlab.models.cnn.onnx as onnx_module

    zeros, cut, whole = tmp_path / "zeros.onnx", tmp_path / "cut.onnx", tmp_path / "whole.onnx"
    with open(zeros, "wb") as f:
        f.truncate(2**28)
    cut.write_bytes(fitted_graph[: len(fitted_graph) // 2])  # inside the graph: its length runs past the end
    whole.write_bytes(fitted_graph)
    reads: list = []
    real = onnx_module.read_regular
    monkeypatch.setattr(onnx_module, "read_regular", lambda path, *a, **kw: reads.append(path) or real(path, *a, **kw))
    for path in (zeros, cut):
        with pytest.raises(ModelFileError) as refused:
            OnnxPredictor(path)
        assert str(refused.value) == (
            f"{path} is not a readable ONNX model (its bytes are no protobuf message, as an ONNX file's are); "
            "export it again with `mnistlab export MODEL_DIR --onnx FILE`."
        )
    assert reads == []
    assert OnnxPredictor(whole).predict(np.zeros((1, 784), np.uint8)).shape == (1,)
    assert reads == [whole]


def test_a_seed_fit_cannot_use_is_a_recipe_error_like_the_other_parameters(mnist_small):
    # random_state was the one parameter left unchecked: "a" was numpy's ValueError from check_random_state.
    X, y = mnist_small[0][:50], mnist_small[2][:50]
    for seed in ("a", -1, 2**32, 1.5):
        with pytest.raises(RecipeError, match=f"^random_state got {seed!r}, expected an integer seed from 0 to"):
            CNNClassifier(**{**TINY, "random_state": seed}, epochs=1).fit(X, y)
    for seed in (None, np.random.RandomState(0), np.int64(3)):  # scikit-learn's forms stay accepted
        CNNClassifier(**{**TINY, "random_state": seed}, epochs=1).fit(X, y)


def test_onnx_predictor_refuses_a_thread_count_it_cannot_use_as_such():
    # n_threads="2" was "Not a readable ONNX model ('>' not supported ...)": the file blamed for the parameter.
    torch.manual_seed(0)
    net = build_net("tiny", 10, (28, 28)).eval()
    graph = _model_proto(net, (28, 28), list(range(10))).SerializeToString()  # from_module's graph, exported once
    for n_threads in ("2", 0, -1, 1.5, True, 257, 10**9):  # 10**9 was "Not a readable ONNX model (std::bad_alloc)"
        with pytest.raises(ParameterError, match="^n_threads must be a whole number of threads from 1 to 256, or None"):
            OnnxPredictor(graph, n_threads=n_threads)  # what from_module calls with its graph and n_threads
    assert OnnxPredictor.from_module(net, (28, 28), range(10), n_threads=2).n_threads == 2
    # A numpy whole number is one, as CNNClassifier's fit takes it: its onnxruntime backend passes its n_threads on.
    assert OnnxPredictor(graph, n_threads=np.int64(2)).n_threads == 2


def test_the_onnxruntime_backend_takes_the_thread_count_fit_took(fitted, mnist_small):
    # fit took n_threads=np.int64(1), then predict with backend="onnxruntime" refused it: "n_threads must be a
    # whole number of threads, 1 or more, or None (every CPU), got np.int64(1)."
    X = mnist_small[1][:50]
    ort_est = copy.deepcopy(fitted).set_params(backend="onnxruntime", n_threads=np.int64(1))
    np.testing.assert_array_equal(ort_est.predict(X), fitted.predict(X))


def test_cli_train_with_target_then_export_onnx(mnist_small, tmp_path):
    model_dir, onnx_file = tmp_path / "cnn-fast", tmp_path / "out" / "digits.onnx"
    args = [
        "train",
        "cnn-fast",
        "--limit",
        "6000",
        "--target",
        "0.5",
        "--n-jobs",
        "1",
        "--out",
        str(model_dir),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["recipe"] == "cnn-fast" and row["epochs"] >= 1 and row["train_seconds"] > 0
    assert row["test_accuracy"] > 0.5
    result = CliRunner().invoke(app, ["export", str(model_dir), "--onnx", str(onnx_file)])
    assert result.exit_code == 0, result.output
    assert "opset" in result.stdout and onnx_file.is_file()
    assert not list(onnx_file.parent.glob("*.tmp"))  # written atomically, nothing left behind
    model, _ = load_model(model_dir)
    X = mnist_small[1]
    ort = OnnxPredictor(onnx_file)
    np.testing.assert_array_equal(ort.predict(X), model.predict(X))
    with pytest.raises(InputError, match="Got 10 x 10 images, but this model reads 28 x 28"):
        ort.predict(X[:, :100])
    np.testing.assert_allclose(
        ort.predict_proba(X.reshape(-1, 1, 28, 28) / np.float32(255)), model.predict_proba(X), atol=1e-5
    )

    int8_file = tmp_path / "out" / "int8.onnx"
    result = CliRunner().invoke(app, ["export", str(model_dir), "--onnx", str(int8_file), "--int8", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["n_calibration"] == 1000 and row["n_test"] == 10_000  # the official split's whole test set
    assert row["accuracy_int8"] >= row["accuracy_float32"] - MAX_INT8_DROP and row["same_answers"] > 9_800
    graph = onnx.load(int8_file)
    assert {n.op_type for n in graph.graph.node} >= {"QLinearConv"} and "Conv" not in {
        n.op_type for n in graph.graph.node
    }
    assert json.loads({p.key: p.value for p in graph.metadata_props}["int8"])["accuracy_int8"] == row["accuracy_int8"]
    int8 = OnnxPredictor(int8_file)
    assert np.mean(int8.predict(X) == ort.predict(X)) > 0.97 and list(int8.classes_) == list(model.classes_)


@pytest.fixture(scope="module")
def tiny_model_dir(mnist_small, tmp_path_factory) -> Path:
    """The tiny net, 2 epochs on 3000 digits, saved once for the int8 tests that only read it."""
    X_tr, X_te, y_tr, y_te = mnist_small
    model_dir = tmp_path_factory.mktemp("tiny") / "model"
    save_model(CNNClassifier(**TINY, epochs=2).fit(X_tr, y_tr), model_dir, card={"recipe": "tiny", "dataset": "mnist"})
    return model_dir


def test_int8_export_calibrated_on_images_unlike_the_test_set_is_refused(mnist_small, tiny_model_dir, tmp_path):
    """Calibration on dim images sets every activation's range too small: int8 then answers near chance."""
    X_tr, X_te, y_tr, y_te = mnist_small
    model_dir = tiny_model_dir
    written = export_model(model_dir, tmp_path / "ok.onnx", int8=True, data=(X_tr, X_te, y_tr, y_te))
    assert written["accuracy_float32"] > 0.8 and written["n_test"] == len(y_te)
    with pytest.raises(InputError, match=r"With int8 convolutions .* answers .* against .* so nothing was written"):
        export_model(model_dir, tmp_path / "dim.onnx", int8=True, data=(X_tr // 16, X_te, y_tr, y_te))
    assert not (tmp_path / "dim.onnx").exists() and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(InputError, match="reads images of 784 pixels .* but X_test holds images of 64 pixels"):
        export_model(model_dir, tmp_path / "small.onnx", int8=True, data=(X_tr, X_te[:, :64], y_tr, y_te))


def test_int8_export_that_loses_exactly_the_allowed_share_is_written(mnist_small, tiny_model_dir, tmp_path):
    """ "At most 0.5 points" held for 0.49 and refused 0.5: 1.0 - 0.995 is 0.0050000000000000044 in floats, above
    MAX_INT8_DROP. The answers are counted: one image of 200 lost is the half point allowed."""
    from mnistlab.models.cnn.quantize import CALIBRATION_IMAGES, quantize_convolutions

    X_tr, X_te, y_tr, y_te = mnist_small
    model_dir = tiny_model_dir
    graph = onnx_graph(load_model(model_dir)[0])
    picked = np.random.default_rng(42).permutation(len(X_tr))[:CALIBRATION_IMAGES]  # as export_model draws them
    unit = lambda X: (X.astype(np.float32) / 255).reshape(-1, 1, 28, 28)  # noqa: E731
    # Two digits blended: answers near a tie, where int8 can differ; each labelled as float32 answers it.
    blends = ((X_te[:-1].astype(np.uint16) + X_te[1:]) // 2).astype(np.uint8)
    pool = np.concatenate([X_te, blends])
    float_pred = OnnxPredictor(graph).predict_proba(unit(pool)).argmax(1)
    int8_pred = OnnxPredictor(quantize_convolutions(graph, unit(X_tr[picked]))).predict_proba(unit(pool)).argmax(1)
    truth = np.concatenate([y_te, float_pred[len(X_te) :]])
    lost = np.flatnonzero((float_pred == truth) & (int8_pred != truth))
    kept = np.flatnonzero((float_pred == truth) & (int8_pred == truth))
    test = np.concatenate([lost[:1], kept[:199]])
    assert len(test) == 200
    written = export_model(model_dir, tmp_path / "int8.onnx", int8=True, data=(X_tr, pool[test], y_tr, truth[test]))
    assert (written["accuracy_float32"], written["accuracy_int8"]) == (1.0, 0.995)
    assert (tmp_path / "int8.onnx").is_file()


def test_export_refuses_a_model_that_is_not_a_cnn(tmp_path):
    with pytest.raises(InputError, match="needs a fitted CNN model, got Pipeline"):
        export_onnx(Pipeline([("cnn", CNNClassifier())]), tmp_path / "x.onnx")
    result = CliRunner().invoke(app, ["train", "logreg", "--target", "0.9", "--limit", "100", "--json"])
    assert result.exit_code == 2 and "--target applies to CNN recipes only" in result.output


def test_export_model_takes_int8_as_a_bool_only(tmp_path):
    # export_model(..., int8="no") ran the int8 export: the string is truthy.
    with pytest.raises(ParameterError, match="int8 must be True or False, got 'no'"):
        export_model(tmp_path / "nowhere", tmp_path / "x.onnx", int8="no")


def test_works_in_cross_val_score_pipeline_and_grid_search(mnist_small):
    X, y = mnist_small[0][:600], mnist_small[2][:600]
    scores = cross_val_score(CNNClassifier(**TINY, epochs=5), X, y, cv=2)
    assert scores.shape == (2,) and scores.min() > 0.5
    pipe = Pipeline([("float", FunctionTransformer(lambda a: a / 255.0)), ("cnn", CNNClassifier(**TINY, epochs=5))])
    assert pipe.fit(X, y).score(X, y) > 0.5
    grid = GridSearchCV(CNNClassifier(**TINY, epochs=1), {"lr": [0.02, 0.05]}, cv=2).fit(X, y)
    assert grid.best_params_["lr"] in (0.02, 0.05)


def test_augmentation_is_batched_seeded_and_identity_at_zero_strength():
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    x = torch.rand(16, 1, 28, 28)
    np.testing.assert_allclose(augment_batch(x, Augmentation(0, 0, 0, 0), gen()), x, atol=1e-5)
    strong = Augmentation(shift=3, rotation=15, scale=0.15, elastic=2)
    a, b = augment_batch(x, strong, gen()), augment_batch(x, strong, gen())
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x)
    # A pure shift moves an image's centre of mass by at most the maximum shift.
    digit = torch.zeros(64, 1, 28, 28)
    digit[:, :, 10:18, 12:16] = 1
    moved = augment_batch(digit, Augmentation(shift=3, rotation=0, scale=0, elastic=0), gen())
    cols = torch.arange(28.0)
    com = lambda im: (im.sum(2).squeeze(1) * cols).sum(1) / im.sum((1, 2, 3))  # noqa: E731
    assert (com(moved) - com(digit)).abs().max() <= 3.01
    assert (com(moved) - com(digit)).abs().max() > 1


# The training-accuracy check fits standardised 2-feature blobs: not pixels.
# By design, rows whose maximum exceeds 1.5 are read as 0-255 pixels and divided
# by 255, which squashes about half of those rows towards zero (0.78 < 0.83).
_PIXEL_SCALING = "rows with values above 1.5 are read as 0-255 pixels; standardised blobs are not pixels"
_EXPECTED_FAILURES = {
    "check_classifiers_train": _PIXEL_SCALING,
    "check_classifiers_train(readonly_memmap=True)": _PIXEL_SCALING,
    "check_classifiers_train(readonly_memmap=True,X_dtype=float32)": _PIXEL_SCALING,
}


@parametrize_with_checks(
    [CNNClassifier(arch="tiny", epochs=2, batch_size=16, lr=0.05, n_threads=1)],
    expected_failed_checks=lambda est: _EXPECTED_FAILURES,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_n_jobs_none_means_one_as_in_scikit_learn(mnist_small):
    """CNNClassifier(n_jobs=None), scikit-learn's own default meaning one, was refused as 'not a number'."""
    X, y = mnist_small[0][:300], mnist_small[2][:300]
    none = CNNClassifier(**TINY, epochs=1, n_jobs=None).fit(X, y)
    one = CNNClassifier(**TINY, epochs=1, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(none.predict_proba(X[:20]), one.predict_proba(X[:20]))


def test_a_fit_of_too_few_steps_to_learn_warns_as_scikit_learn_does(mnist_small):
    """cnn-fast on 2,000 images (`train --limit 2000`) took 14 steps and read 17% of the test set, without a
    word; now a ConvergenceWarning, which `mnistlab train` prints as a note."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = mnist_small[0][:800], mnist_small[2][:800]
    with pytest.warns(ConvergenceWarning, match=r"took 12 optimizer steps \(1 epochs of 12 batches of about 64"):
        CNNClassifier(**TINY, epochs=1).fit(X, y)
    # A batch larger than the data was said to hold it: "1 batches of about 1000000 images" of 800.
    with pytest.warns(ConvergenceWarning, match=r"took 1 optimizer steps \(1 epochs of 1 batches of about 800 images"):
        CNNClassifier(**{**TINY, "batch_size": 10**6}, epochs=1).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        CNNClassifier(**{**TINY, "batch_size": 8}, epochs=1).fit(X, y)  # 100 steps: no warning


def test_the_few_steps_warning_counts_the_epochs_the_members_ran_before_their_target(mnist_small):
    """Members that reached --target after one epoch of three were said to have 'took 33 optimizer steps (3 epochs
    of 11 batches ...)': the epochs asked for, not those run (the card's history: one per member)."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = mnist_small[0][:800], mnist_small[2][:800]
    est = CNNClassifier(**TINY, epochs=3, n_members=2, target=0.01)
    with pytest.warns(ConvergenceWarning, match=r"took 11 optimizer steps \(1 epochs of 11 batches of about 64"):
        est.fit(X, y)
    assert [(row["member"], row["epoch"]) for row in est.history_] == [(0, 1), (1, 1)]


def test_int8_export_records_the_training_images_it_was_calibrated_on_and_what_made_them(tmp_path, mnist_full):
    """A model trained on --limit 500 digits was calibrated on 1,000 "training images" drawn from all 60,000 it
    never saw, and the file recorded neither the data, nor the split that cut them, nor onnxruntime's version."""
    model_dir = tmp_path / "cnn-fast"
    train_recipe("cnn-fast", cv=0, limit=500, seed=3, split="random", test_size=0.2, out=model_dir)
    written = export_model(model_dir, tmp_path / "int8.onnx", int8=True)
    assert written["n_calibration"] == 500 and written["n_test"] == 14_000
    props = {p.key: p.value for p in onnx.load(tmp_path / "int8.onnx").metadata_props}
    record = json.loads(props["int8"])
    card = json.loads((model_dir / "model.json").read_text())
    assert record["calibration"] == "500 of the model's 500 training images, seed 3"
    assert {k: record[k] for k in ("data_sha256", "split", "test_size", "limit", "seed", "card_sha256")} == {
        "data_sha256": mnist_full.details["data_sha256"],
        **{k: card[k] for k in ("split", "test_size", "limit", "seed", "card_sha256")},
    }
    assert record["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert record["versions"]["torch"] == card["versions"]["torch"]


def test_an_exported_file_records_the_model_seed_data_and_versions_it_came_from(tmp_path, mnist_full):
    """A float32 export's metadata held its classes alone: nothing in the file said which model (card), seed,
    split or data it was trained from, how accurate it was, or which packages exported it."""
    model_dir = tmp_path / "cnn-fast"
    train_recipe("cnn-fast", cv=0, limit=200, seed=3, split="random", test_size=0.2, out=model_dir)
    card = json.loads((model_dir / "model.json").read_text())
    for int8 in (False, True):
        onnx_file = tmp_path / f"{int8}.onnx"
        export_model(model_dir, onnx_file, int8=int8)
        source = json.loads({p.key: p.value for p in onnx.load(onnx_file).metadata_props}["source"])
        same = ("card_sha256", "recipe", "seed", "split", "test_size", "limit", "dataset", "data_sha256")
        assert {k: source[k] for k in same} == {k: card[k] for k in same}
        assert source["data_sha256"] == mnist_full.details["data_sha256"] and source["seed"] == 3
        assert source["test_accuracy"] == card["metrics"]["test_accuracy"]
        assert source["versions"]["onnx"] == importlib.metadata.version("onnx")
        assert source["versions"]["torch"] == card["versions"]["torch"]


def test_an_export_names_a_data_folder_not_in_utf8_in_valid_utf8(tiny_model_dir, tmp_path):
    """A CNN compare trained on a folder named b"r\\xfe" records it (data_dir, dataset); the export's ``source``
    metadata wrote it as a lone surrogate's escape ("r\\udcfe"), which strict JSON readers refuse and others read
    as U+FFFD. It is now "r\\xfe"."""
    import os

    model, card = load_model(tiny_model_dir)
    odd = os.fsdecode(bytes(tmp_path) + b"/r\xfe")
    kept = {
        k: v for k, v in card.items() if k not in ("card_sha256", "weights_sha256", "weights_file", "format_version")
    }
    model_dir = save_model(model, tmp_path / "odd", card={**kept, "dataset": "r" + odd[-1], "data_dir": odd})
    export_model(model_dir, tmp_path / "odd.onnx")
    text = {p.key: p.value for p in onnx.load(tmp_path / "odd.onnx").metadata_props}["source"]
    assert "\\ud" not in text
    source = json.loads(text)
    assert source["data_dir"] == f"{tmp_path}/r\\xfe" and source["dataset"] == "r\\xfe"


def test_the_card_and_the_run_record_the_device_a_cnn_trained_on_not_auto(tmp_path, made_store):
    """A CNN's card recorded only its parameter device "auto", which names no device: a fit on a GPU and one on
    the CPU (whose floats differ) had the same card. The card, the result and compare's run now say which."""
    from mnistlab.lab.compare import compare
    from mnistlab.lab.tracking import Tracker
    from mnistlab.models.cnn.estimator import device_name

    expected = device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert expected == "cpu" or expected.startswith("cuda:0 (")
    result = train_recipe("cnn-fast", cv=0, limit=200, n_jobs=1, out=tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["params"]["device"] == "auto" and card["device"] == result["device"] == expected
    assert load_model(tmp_path / "m")[1]["device"] == expected  # the card with its device loads
    uri = made_store(tmp_path / "s.db")
    summary = compare("cnn-fast", limit=200, cv=0, n_jobs=1, out_dir=tmp_path / "r", tracking_uri=uri)
    (run_id,) = summary["results"][0]["run_ids"]
    params = Tracker(uri).client.get_run(run_id).data.params
    assert params["device"] == expected and params["estimator.device"] == "auto"


def test_export_says_the_file_it_wrote_whatever_brackets_its_name_holds(mnist_small, tmp_path):
    # rich read the name as markup: "cnn[v2].onnx" was said as "wrote cnn.onnx", and "run[/tag]" ended in a
    # MarkupError traceback once the file was written.
    X, y = mnist_small[0][:200], mnist_small[2][:200]
    model_dir = tmp_path / "model"
    save_model(CNNClassifier(**TINY, epochs=1).fit(X, y), model_dir, card={"recipe": "tiny[v2]"})
    for onnx_file in (tmp_path / "cnn[v2].onnx", tmp_path / "run[" / "tag].onnx"):
        result = CliRunner().invoke(app, ["export", str(model_dir), "--onnx", str(onnx_file)])
        assert result.exit_code == 0 and result.exception is None, result.output
        assert f"wrote {onnx_file} (" in result.stdout and ": tiny[v2], opset" in result.stdout, result.stdout
        assert onnx_file.is_file()


def test_onnx_predict_proba_refuses_float_pixels_outside_0_1():
    """0-255 floats were read as pixels 255 times too bright (probabilities of 0 and 1), NaN as NaN probabilities."""
    torch.manual_seed(0)
    onnx_net = OnnxPredictor.from_module(build_net("tiny", 10, (28, 28)).eval(), (28, 28), range(10), n_threads=1)
    assert onnx_net.predict_proba(np.ones((2, 1, 28, 28))).shape == (2, 10)
    assert onnx_net.predict_proba(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)
    for value in (255.0, np.nan, -1.0):
        with pytest.raises(InputError, match=rf"in \[0, 1\], got values from {value:g} to {value:g}; divide 0-255"):
            onnx_net.predict_proba(np.full((1, 1, 28, 28), value))
    assert onnx_net.predict(np.full((1, 784), 255.0)).shape == (1,)  # predict reads any scale


_QUANTIZE_ON_A_FULL_DISK = """
import resource, sys
import numpy as np
from mnistlab.errors import InputError
from mnistlab.models.files import load_model
from mnistlab.models.cnn.onnx import onnx_graph
from mnistlab.models.cnn.quantize import quantize_convolutions

graph = onnx_graph(load_model(sys.argv[1])[0])
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))  # a full temporary folder: a larger write fails (EFBIG)
try:
    quantize_convolutions(graph, np.zeros((10, 1, 28, 28), np.float32))
except InputError as exc:
    print(exc)
"""


def test_int8_export_with_a_full_temporary_folder_is_one_sentence(tiny_model_dir, tmp_path):
    """`export --int8` with a full temporary folder (where the quantizer writes its graphs) was an OSError
    traceback ("No space left on device" from onnx's save_external_data), exit 1."""
    run = subprocess.run(
        [sys.executable, "-c", _QUANTIZE_ON_A_FULL_DISK, str(tiny_model_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout == (
        f"Cannot write the quantizer's graphs in the temporary folder {tmp_path} (File too large); free space "
        "there, or set TMPDIR to a folder with room.\n"
    )
    assert list(tmp_path.glob("mnistlab-int8-*")) == []  # its folder removed


def test_export_int8_help_says_it_measures_on_the_models_own_test_set(tmp_path):
    """`export --help` said --int8 is "measured against float32 on MNIST"; a CNN that compare fitted on digits is
    measured on the 360 test images of digits."""
    from mnistlab import compare

    compare("cnn-fast", datasets="digits", out_dir=tmp_path / "r", cv=0, n_jobs=1)
    model_dir = str(tmp_path / "r" / "models" / "digits" / "cnn-fast" / "seed-42")
    exported = CliRunner().invoke(app, ["export", model_dir, "--onnx", str(tmp_path / "d.onnx"), "--int8", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["n_test"] == 360
    usage = CliRunner().invoke(app, ["export", "--help"], terminal_width=200).stdout
    assert "float32 on the model's test set" in usage and "MNIST" not in usage, usage
