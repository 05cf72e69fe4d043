"""Deskew and PixelScaler on real MNIST digits."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from scipy import sparse
from scipy.ndimage import affine_transform
from sklearn.base import clone
from sklearn.pipeline import make_pipeline

from mnistlab.errors import InputError
from mnistlab.models.transforms import Deskew, PixelScaler, image_moments


def _shear(images: np.ndarray, skew: float) -> np.ndarray:
    """Shear 28x28 images about the centre row with scipy (independent of our sampler):
    ink at row r moves ``skew * (r - 14)`` columns right."""
    matrix = np.array([[1.0, 0.0], [-skew, 1.0]])  # output (r, c) reads input (r, c - skew * r)
    offset = np.array([0.0, skew * 14.0])
    return np.stack([affine_transform(im.astype(np.float32), matrix, offset=offset, order=1) for im in images])


def _corr(a, b) -> np.ndarray:
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


@pytest.fixture(scope="module")
def digits(mnist_small):
    return mnist_small[0][:300]


def test_pixel_scaler_maps_0_255_to_unit_float32(digits):
    out = PixelScaler().fit(digits).transform(digits)
    assert out.dtype == np.float32 and out.shape == digits.shape
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out * 255, digits, atol=1e-4)
    assert PixelScaler().fit_transform(digits.reshape(-1, 28, 28)).shape == (300, 784)


def test_pixel_scaler_reads_floats_on_either_scale_and_checks_the_width(digits):
    scaler = PixelScaler().fit(digits)
    expected = scaler.transform(digits)
    # load_mnist(dtype=np.float32) gives 0-1 floats; raw float pixels are 0-255: both mean the same digits.
    np.testing.assert_allclose(scaler.transform(digits.astype(np.float32) / 255), expected, atol=1e-6)
    np.testing.assert_allclose(scaler.transform(digits.astype(np.float64)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="X has 100 features, but PixelScaler is expecting 784"):
        scaler.transform(digits[:, :100])


def test_pixel_scaler_passes_scikit_learns_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    failed = [r["check_name"] for r in check_estimator(PixelScaler(), on_fail=None) if r["status"] == "failed"]
    assert failed == []


def test_pixel_scaler_reads_a_boolean_mask_as_ink_as_the_cnn_does(digits):
    # True was 1/255: logreg (and every recipe that scales) read a mask `digits > 128` as a blank page, where
    # CNNClassifier (unit_pixels) reads True as full ink.
    mask = digits > 128
    ink = (mask * 255).astype(np.uint8)
    for scaler in (PixelScaler(), PixelScaler(max_value=16)):
        np.testing.assert_array_equal(scaler.fit(digits).transform(mask), mask.astype(np.float32))
    np.testing.assert_array_equal(PixelScaler().fit(digits).transform(mask), PixelScaler().fit(digits).transform(ink))


def test_normalised_pixels_are_refused_not_read_as_a_blank_page(mnist_small):
    """Digits normalised as PyTorch's MNIST example does (Normalize((0.1307,), (0.3081,)): paper -0.4242, ink 2.8215)
    were read as 0-255 pixels, a blank page: logreg, CNNClassifier and OnnxPredictor.predict (all through
    unit_pixels) answered them without a word, 10-13% of them right."""
    from mnistlab.data.pixels import unit_pixels
    from mnistlab.models.recipes import get_recipe

    X_train, X_test, y_train, _ = mnist_small
    normalised = (X_test[:50] / 255 - 0.1307) / 0.3081
    said = "Pixels look normalised: most of them are -0.4242, below 0 (paper); pass the pixels as they were before"
    model = get_recipe("logreg").build(0, 1).fit(X_train[:300], y_train[:300])
    for refused in (lambda: model.predict(normalised), lambda: unit_pixels(normalised.astype(np.float32))):
        with pytest.raises(InputError, match=f"^{re.escape(said)}"):
            refused()
    # A resampled 0-1 image's undershoot, its paper at -0.1 included (as predict_image reads it), is clipped as before.
    for undershoot in (
        X_test[:50] / 255 - 0.1 * (X_test[:50] == 0),
        np.where(np.arange(784) == 100, -0.05, X_test[:50] / 255),
    ):
        np.testing.assert_array_equal(unit_pixels(undershoot), np.clip(undershoot, 0, 1).astype(np.float32))


def test_one_digit_given_to_a_scaling_recipe_is_told_to_be_a_batch_of_one(mnist_small):
    """logreg's predict(digit) with one (28, 28) digit said scikit-learn's "X has 28 features, but PixelScaler is
    expecting 784 features as input", a step the caller never named, of 28 "images" of 28 pixels."""
    from mnistlab.models.recipes import get_recipe

    X_train, X_test, y_train, _ = mnist_small
    model = get_recipe("logreg").build(0, 1).fit(X_train[:300], y_train[:300])
    with pytest.raises(InputError, match=r"^X is one 28 x 28 image, not a batch of images; .* X\[None\]\.$"):
        model.predict(X_test[0].reshape(28, 28))
    assert model.predict(X_test[0].reshape(1, 28, 28)).tolist() == model.predict(X_test[:1]).tolist()


def test_pixel_scaler_rejects_non_positive_max(digits):
    with pytest.raises(InputError, match="positive"):
        PixelScaler(max_value=0).fit(digits)


@pytest.mark.parametrize("value", ["255", None, [255], np.inf, np.nan, True])
def test_pixel_scaler_refuses_a_max_value_that_is_no_positive_number_in_one_sentence(digits, value):
    # "255" or None was numpy's "'>' not supported between instances of 'str' and 'int'"; inf scaled every
    # pixel to 0 without a word, and True was taken as 1.
    with pytest.raises(
        InputError, match=re.escape(f"PixelScaler max_value must be a positive finite number, got {value!r}.")
    ):
        PixelScaler(max_value=value).fit(digits)
    assert PixelScaler(max_value=np.float32(16)).fit(digits).transform(digits[:1]).max() > 1  # numpy numbers pass


def test_moments_of_mnist_match_its_centring(digits):
    cy, cx, skew = image_moments(digits)
    # MNIST centres each digit's mass at (14, 14); typical slants are a few tenths.
    assert abs(cy.mean() - 14) < 0.3 and abs(cx.mean() - 14) < 0.3
    assert 0.1 < np.abs(skew).mean() < 0.5


def test_deskew_makes_digits_upright_and_centred(digits):
    out = Deskew().fit(digits).transform(digits)
    assert out.dtype == np.float32 and out.shape == digits.shape
    cy, cx, skew = image_moments(out)
    assert np.abs(skew).max() < 0.05
    assert np.abs(cy - 14).max() < 0.5 and np.abs(cx - 14).max() < 0.5
    # Resampling keeps the ink: total intensity within a few percent.
    ratio = out.sum(1) / digits.sum(1)
    assert np.all(np.abs(ratio - 1) < 0.05)


def test_deskew_leaves_an_upright_digit_nearly_unchanged(digits):
    upright = Deskew().fit_transform(digits)
    again = Deskew().fit_transform(upright)
    assert np.abs(again - upright).mean() < 1.0  # on a 0-255 scale
    assert _corr(again, upright).min() > 0.99
    # Raw MNIST digits that are already upright and centred barely move.
    cy, cx, skew = image_moments(digits)
    calm = (np.abs(skew) < 0.03) & (np.abs(cy - 14) < 0.25) & (np.abs(cx - 14) < 0.25)
    assert calm.sum() >= 3
    assert _corr(Deskew().fit_transform(digits[calm]), digits[calm].astype(np.float32)).min() > 0.97


@pytest.mark.parametrize("shear", [-0.4, 0.25, 0.5])
def test_deskew_straightens_a_sheared_digit(digits, shear):
    upright = Deskew().fit_transform(digits[:50]).reshape(-1, 28, 28)
    sheared = _shear(upright, shear)
    _, _, measured = image_moments(sheared)
    # The estimate recovers the shear we applied (ink clipped at the border aside).
    assert np.median(np.abs(measured - shear)) < 0.03
    straightened = Deskew().fit_transform(sheared)
    _, _, after = image_moments(straightened)
    assert np.abs(after).max() < 0.05
    assert np.median(_corr(straightened, upright)) > 0.95
    assert np.median(_corr(sheared, upright)) < np.median(_corr(straightened, upright))


def test_deskew_handles_blank_images_and_images_input():
    blank = np.zeros((3, 28, 28), np.uint8)
    out = Deskew().fit_transform(blank)
    assert out.shape == (3, 784) and np.all(out == 0)


def test_deskew_validates_shapes(digits):
    with pytest.raises(InputError, match="784|square"):
        Deskew().fit(digits[:, :700])
    fitted = Deskew().fit(digits)
    with pytest.raises(InputError, match="784"):
        fitted.transform(np.zeros((2, 20, 20)))


def test_deskew_fit_refuses_what_is_no_batch_of_images_in_one_sentence():
    # fit reshaped X by its length before checking its shape: a ValueError or TypeError from numpy.
    for wrong in ("abc", 7, np.zeros((3, 5))):
        with pytest.raises(InputError, match="^images have "):
            Deskew().fit(wrong)


def test_deskew_refuses_pixels_it_cannot_straighten_instead_of_returning_nan(digits):
    # One NaN (or infinite) pixel made its whole deskewed image NaN, silently; a complex array lost its
    # imaginary part with a warning; an empty batch gave an empty one; a sparse matrix was "images have shape ()".
    nan, inf = digits[:3].astype(np.float64), digits[:3].astype(np.float64)
    nan[0, 400], inf[1, 400] = np.nan, np.inf
    fitted = Deskew().fit(digits)
    for bad in (nan, inf):
        with pytest.raises(ValueError, match="NaN|infinity"):
            Deskew().fit(bad)
        with pytest.raises(ValueError, match="NaN|infinity"):
            fitted.transform(bad)
        with pytest.raises(ValueError, match="NaN|infinity"):
            fitted.transform(bad.reshape(-1, 28, 28))
    with pytest.raises(ValueError, match="[Cc]omplex"):
        Deskew().fit(digits[:3] + 1j)
    with pytest.raises(ValueError, match="0 sample"):
        fitted.transform(digits[:0])
    with pytest.raises(InputError, match="sparse"):
        Deskew().fit(sparse.csr_matrix(digits))
    # What it takes it still takes: rows, image stacks, lists, and the same pixels give the same rows.
    expected = fitted.transform(digits[:5])
    np.testing.assert_array_equal(fitted.transform(digits[:5].reshape(-1, 1, 28, 28)), expected)
    np.testing.assert_array_equal(fitted.transform(digits[:5].tolist()), expected)


def test_deskew_gives_the_same_floats_whatever_the_memory_layout_of_the_pixels(digits):
    # Sums over a strided view (a Fortran-ordered array, as a DataFrame's values are) add in another order:
    # the same digits came out up to 5e-6 apart, the moments too, so a model's answers could depend on layout.
    scaled = PixelScaler().fit_transform(digits[:50])
    fortran = np.asfortranarray(scaled)
    np.testing.assert_array_equal(Deskew().fit_transform(fortran), Deskew().fit_transform(scaled))
    for a, b in zip(image_moments(fortran), image_moments(scaled)):
        np.testing.assert_array_equal(a, b)
    pd = pytest.importorskip("pandas")
    np.testing.assert_array_equal(Deskew().fit_transform(pd.DataFrame(scaled)), Deskew().fit_transform(scaled))


def test_transformers_are_sklearn_citizens(digits):
    pipe = make_pipeline(PixelScaler(), Deskew())
    twin = clone(pipe)
    np.testing.assert_array_equal(pipe.fit_transform(digits), twin.fit_transform(digits))
    assert PixelScaler(max_value=16).get_params() == {"max_value": 16}


def test_transformers_name_their_output_pixels_so_pipelines_can_give_data_frames(digits):
    # Neither had get_feature_names_out, so neither had set_output: pipe.set_output(transform="pandas") on any
    # recipe that scales or deskews was "Unable to configure output for PixelScaler()".
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(digits[:20], columns=[f"pixel{i}" for i in range(1, 785)])
    pipe = make_pipeline(PixelScaler(), Deskew()).set_output(transform="pandas")
    out = pipe.fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(frame.columns)
    np.testing.assert_array_equal(out.to_numpy(), make_pipeline(PixelScaler(), Deskew()).fit_transform(digits[:20]))
    names = Deskew().fit(digits[:5].reshape(-1, 28, 28)).get_feature_names_out()
    assert len(names) == 784 and names[0] == "x0"  # images carry no names: scikit-learn's x0, x1, ...


def test_deskew_is_fast(mnist_full):
    X = mnist_full.data[:20000]
    Deskew().fit_transform(X[:100])  # warm-up
    # CPU time, not wall time, so that other work on the machine does not count:
    # ~0.5 s for 20,000 digits here; a per-image Python loop takes ~10x longer.
    start = time.process_time()
    Deskew().fit_transform(X)
    assert time.process_time() - start < 3


@pytest.mark.parametrize("shape", [(0, 784), (0, 28, 28), (0, 1, 28, 28)])
def test_an_empty_batch_of_float_pixels_scales_as_an_empty_batch_of_integers_does(shape):
    # Floats raised numpy's "cannot reshape array of size 0 into shape (0,newaxis)" where uint8 gave an empty
    # batch: an ONNX model's predict of no float images too.
    from mnistlab.data.pixels import as_images, unit_pixels

    for dtype in (np.uint8, np.float32, np.float64):
        got = unit_pixels(np.zeros(shape, dtype))
        assert got.shape == shape and got.dtype == np.float32
    assert unit_pixels(as_images(np.zeros(shape, np.float32))).shape == (0, 28, 28)


def test_images_laid_out_channels_last_are_the_same_images(mnist_small):
    """(N, 28, 28, 1), as Keras and TensorFlow lay MNIST out, was refused by Deskew, the figures and
    ``OnnxPredictor.predict``, where the scalers took it: one grey channel, last or second, is the same images."""
    from mnistlab.data.pixels import as_images

    X = mnist_small[1][:50]
    np.testing.assert_array_equal(as_images(X.reshape(-1, 28, 28, 1)), X.reshape(-1, 28, 28))
    np.testing.assert_array_equal(Deskew().fit_transform(X.reshape(-1, 28, 28, 1)), Deskew().fit_transform(X))
    with pytest.raises(InputError, match=r"shape \(50, 28, 28, 3\), expected N x 784 rows or N x 28 x 28 images"):
        Deskew().fit_transform(np.repeat(X.reshape(-1, 28, 28, 1), 3, axis=3))


def test_one_image_given_where_a_batch_belongs_is_told_how_to_pass_it(mnist_small):
    """One 28 x 28 digit read as 28 rows of 28 pixels: the sentence said only that 28 is no square number."""
    digit = mnist_small[1][0].reshape(28, 28)
    with pytest.raises(InputError, match=r"a 28 x 28 array is one image\? pass it as a batch of one, image\[None\]"):
        Deskew().fit_transform(digit)
    np.testing.assert_array_equal(Deskew().fit_transform(digit[None]), Deskew().fit_transform(digit.reshape(1, 784)))
    with pytest.raises(InputError, match=r"783 pixels per row, expected a square number .* flattened row by row\.$"):
        Deskew().fit_transform(np.zeros((2, 783)))
