"""Figures: real PNGs drawn from real MNIST digits and real (nearest-centroid) predictions."""

import os

import numpy as np
import pytest
from PIL import Image

from mnistlab import InputError
from mnistlab.lab.benchplots import save_accuracy_vs_time_bars, time_bars
from mnistlab.lab.plots import (
    ascii_digit,
    confusion_counts,
    most_confident_mistakes,
    save_accuracy_vs_time,
    save_class_balance,
    save_confusion_matrix,
    save_digit_grid,
    save_mean_digits,
    save_misclassified_gallery,
)


@pytest.fixture(scope="module")
def predicted(mnist_small):
    """Test digits with predictions and probabilities of a nearest-centroid classifier.

    It is about 80% right on MNIST, so there are plenty of real mistakes to show.
    """
    X_train, X_test, y_train, y_test = mnist_small
    train = X_train.astype(np.float32) / 255
    test = X_test.astype(np.float32) / 255
    centroids = np.stack([train[y_train == c].mean(axis=0) for c in range(10)])  # (10, 784)
    sq_dist = ((test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)  # (N, 10)
    logits = -sq_dist
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return X_test, y_test, proba.argmax(axis=1), proba


def read_png(path):
    """Pixels of a written PNG as an (H, W, 3) uint8 array; fails if the file is not a PNG."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def assert_drawn(path, min_w=300, min_h=100):
    pixels = read_png(path)
    h, w, _ = pixels.shape
    assert min_w <= w <= 3000 and min_h <= h <= 6000, (w, h)
    assert pixels.std() > 10, "figure is blank"
    return pixels


def red_pixels(pixels):
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return int(((r > 150) & (g < 90) & (b < 90)).sum())


def test_every_writer_draws_a_png(tmp_path, mnist_small, predicted):
    X_train, _, y_train, y_test = mnist_small
    X_test, y_true, y_pred, proba = predicted
    rows = [
        {"recipe": "knn", "test_accuracy": 0.9688, "fit_seconds": 0.05},
        {"recipe": "logreg", "test_accuracy": 0.9255, "fit_seconds": 31.0},
        {"recipe": "svm-rbf", "test_accuracy": 0.9865, "fit_seconds": 180.0},
    ]
    counts = {"train": np.bincount(y_train, minlength=10), "test": np.bincount(y_test, minlength=10)}
    paths = [
        save_digit_grid(X_train[:30], y_train[:30], tmp_path / "grid.png"),
        save_mean_digits(X_train, y_train, tmp_path / "mean.png"),
        save_class_balance(counts, tmp_path / "balance.png"),
        save_confusion_matrix(y_true, y_pred, tmp_path / "cm.png"),
        save_misclassified_gallery(X_test, y_true, y_pred, proba, tmp_path / "gallery.png"),
        save_accuracy_vs_time(rows, tmp_path / "acc_time.png"),
    ]
    for path in paths:
        assert path.parent == tmp_path
        assert_drawn(path)
    # Atomic writes leave nothing else behind.
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in paths)


def test_grid_takes_flat_or_square_images_and_sizes_by_columns(tmp_path, mnist_small):
    X, _, y, _ = mnist_small
    flat = assert_drawn(save_digit_grid(X[:20], y[:20], tmp_path / "flat.png"))
    square = assert_drawn(save_digit_grid(X[:20].reshape(-1, 28, 28), y[:20], tmp_path / "square.png"))
    np.testing.assert_array_equal(flat, square)
    narrow = read_png(save_digit_grid(X[:20], y[:20], tmp_path / "narrow.png", ncols=5))
    assert narrow.shape[1] < flat.shape[1] and narrow.shape[0] > flat.shape[0]


def test_grid_draws_sklearn_8x8_digits_with_class_names(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()  # 0..16 intensities, float64
    names = [str(t) for t in digits.target[:12]]
    assert_drawn(save_digit_grid(digits.images[:12], names, tmp_path / "digits.png", title="8x8 digits"))


def test_wrong_predictions_are_titled_in_red(tmp_path, predicted):
    X, y_true, y_pred, _ = predicted
    right = np.flatnonzero(y_true == y_pred)[:10]
    wrong = np.flatnonzero(y_true != y_pred)[:3]
    all_right = read_png(save_digit_grid(X[right], y_true[right], tmp_path / "ok.png", predictions=y_pred[right]))
    some_wrong = np.concatenate([right[:7], wrong])
    mixed = read_png(
        save_digit_grid(X[some_wrong], y_true[some_wrong], tmp_path / "bad.png", predictions=y_pred[some_wrong])
    )
    assert red_pixels(all_right) == 0
    assert red_pixels(mixed) > 20


def test_most_confident_mistakes_known_answer():
    y_true = np.array([0, 1, 2, 3, 4, 5])
    y_pred = np.array([0, 7, 2, 8, 9, 6])  # wrong at 1, 3, 4, 5
    proba = np.full((6, 10), 0.01)
    proba[[0, 1, 2, 3, 4, 5], y_pred] = [0.99, 0.60, 0.95, 0.90, 0.75, 0.90]
    assert most_confident_mistakes(y_true, y_pred, proba, 3).tolist() == [3, 5, 4]  # tie keeps order
    assert most_confident_mistakes(y_true, y_pred, proba, 10).tolist() == [3, 5, 4, 1]
    assert most_confident_mistakes(y_true, y_true, proba, 5).tolist() == []


def test_most_confident_mistakes_on_real_predictions(predicted):
    _, y_true, y_pred, proba = predicted
    picked = most_confident_mistakes(y_true, y_pred, proba, 25)
    confidence = proba[np.arange(len(y_pred)), y_pred]
    assert len(picked) == 25 and len(set(picked.tolist())) == 25
    assert (y_true[picked] != y_pred[picked]).all()
    assert np.all(np.diff(confidence[picked]) <= 0)
    others = np.setdiff1d(np.flatnonzero(y_true != y_pred), picked)
    assert confidence[picked].min() >= confidence[others].max()


def test_gallery_without_mistakes_says_so(tmp_path, predicted):
    X, y_true, _, proba = predicted
    pixels = assert_drawn(
        save_misclassified_gallery(X[:50], y_true[:50], y_true[:50], proba[:50], tmp_path / "none.png")
    )
    assert pixels.shape[0] < 300  # a one-line message, not a grid of digits


def test_a_probabilities_flag_given_a_string_is_refused_not_taken_as_true(tmp_path, predicted):
    """save_misclassified_gallery(..., probabilities="no") titled a hinge-loss model's mistakes with percentages it
    never gave: "no" is truthy."""
    X, y_true, y_pred, proba = predicted
    with pytest.raises(InputError, match=r"^probabilities must be True or False, got 'no'\.$"):
        save_misclassified_gallery(X, y_true, y_pred, proba, tmp_path / "g.png", probabilities="no")
    assert not (tmp_path / "g.png").exists()


def test_confusion_counts_known_answer_and_matches_sklearn(predicted):
    from sklearn.metrics import confusion_matrix

    counts = confusion_counts([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2])
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert confusion_counts([3, 3], [3, 3], classes=[1, 3]).tolist() == [[0, 0], [0, 2]]
    _, y_true, y_pred, _ = predicted
    counts = confusion_counts(y_true, y_pred)
    np.testing.assert_array_equal(counts, confusion_matrix(y_true, y_pred))
    assert counts.sum() == len(y_true) and np.trace(counts) == (y_true == y_pred).sum()
    with pytest.raises(InputError, match="holds label 7"):
        confusion_counts([1, 7], [1, 1], classes=[1, 2])


def test_unwritable_path_is_an_input_error(tmp_path, mnist_small):
    X, _, y, _ = mnist_small
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(
        InputError, match=r"^Cannot write PNG to .*not-a-dir/x\.png: .*; choose a writable --out path\.$"
    ):
        save_digit_grid(X[:4], y[:4], blocker / "x.png")
    with pytest.raises(InputError, match=r"\.png"):
        save_digit_grid(X[:4], y[:4], tmp_path / "x.jpg")
    assert os.listdir(tmp_path) == ["not-a-dir"]


def test_writer_creates_parents_and_replaces_existing_file(tmp_path, mnist_small):
    X, _, y, _ = mnist_small
    target = tmp_path / "a" / "b" / "grid.png"
    first = read_png(save_digit_grid(X[:4], y[:4], target))
    second = read_png(save_digit_grid(X[4:14], y[4:14], target))
    assert first.shape != second.shape
    assert os.listdir(target.parent) == ["grid.png"]


def test_bad_inputs_say_what_was_expected(tmp_path, mnist_small, predicted):
    X, _, y, _ = mnist_small
    out = tmp_path / "x.png"
    with pytest.raises(InputError, match="shape \\(9,\\), expected 10 labels"):
        save_digit_grid(X[:10], y[:9], out)
    with pytest.raises(InputError, match="783 pixels per row"):
        save_digit_grid(X[:10, :783], y[:10], out)
    with pytest.raises(InputError, match="at most 400"):
        save_digit_grid(X[:401], y[:401], out)
    wide = "12 x 20 pixels \\(height x width\\) is not square; .* so crop or pad them to a square\\.$"
    with pytest.raises(InputError, match="^images: " + wide):
        save_digit_grid(np.ones((3, 12, 20)), None, out)
    with pytest.raises(InputError, match="^image: " + wide):
        ascii_digit(np.ones((12, 20)))
    _, y_true, y_pred, proba = predicted
    with pytest.raises(InputError, match="proba has shape \\(999, 10\\), expected \\(1000, n_classes\\)"):
        most_confident_mistakes(y_true, y_pred, proba[:-1], 5)
    with pytest.raises(InputError, match="expected \\(10,\\)"):
        save_class_balance({"train": np.ones(10, int), "test": np.ones(9, int)}, out)
    with pytest.raises(InputError, match="lacks fit_seconds"):
        save_accuracy_vs_time([{"recipe": "knn", "test_accuracy": 0.97}], out)
    with pytest.raises(InputError, match="positive times"):
        save_accuracy_vs_time([{"recipe": "knn", "test_accuracy": 0.97, "fit_seconds": 0.0}], out)
    assert not out.exists()


def test_class_balance_refuses_counts_that_are_no_row_of_counts_in_one_sentence(tmp_path):
    # The first split's length was taken before its shape was checked: a TypeError from len() of a 0-d array.
    out = tmp_path / "x.png"
    for first in ("x", 5, np.ones((2, 10), int)):
        with pytest.raises(InputError, match="^counts for split 'train' have shape .*, expected one count per class"):
            save_class_balance({"train": first, "test": np.ones(10, int)}, out)
    with pytest.raises(InputError, match="^counts_by_split must map each split's name to its class counts, got list"):
        save_class_balance([np.ones(10, int)], out)
    assert not out.exists()


def test_gallery_of_no_mistakes_is_refused_rather_than_said_to_be_all_correct(tmp_path):
    # n=0 drew "No misclassified digits: all 2 predictions are correct." for two wrong predictions.
    out = tmp_path / "x.png"
    for n in (0, -1, 2.5, "3", True):
        with pytest.raises(InputError, match="^n must be a whole number of mistakes to show, 1 or more, got "):
            save_misclassified_gallery(np.zeros((2, 784)), [0, 1], [1, 0], np.eye(2), out, n=n)
    assert not out.exists()


def test_a_mistake_of_probability_one_is_never_titled_100_percent_sure(tmp_path, predicted):
    # The lesson's SGD models give many wrong answers a probability of exactly 1.0 (a softmax of raw-pixel
    # margins), and evaluate's gallery titled each "(100%)", which the rounding down was there to prevent.
    X, y_true, y_pred, _ = predicted
    wrong = np.flatnonzero(y_true != y_pred)[:3]
    drawn = {}
    for p in (1.0, 0.9999):
        proba = np.zeros((len(wrong), 10))
        proba[np.arange(len(wrong)), y_pred[wrong]] = p
        out = tmp_path / f"mistakes-{p}.png"
        drawn[p] = save_misclassified_gallery(X[wrong], y_true[wrong], y_pred[wrong], proba, out).read_bytes()
    assert drawn[1.0] == drawn[0.9999]  # both titled "(99%)"


def test_grid_columns_that_are_no_whole_number_are_one_sentence(tmp_path):
    # "a" was a TypeError from a comparison, 2.5 a ValueError from matplotlib's layout.
    for ncols in ("a", 2.5, 0):
        with pytest.raises(InputError, match=f"^got ncols={ncols!r}, expected a positive number of columns"):
            save_digit_grid(np.zeros((3, 784)), [1, 2, 3], tmp_path / "x.png", ncols=ncols)


def test_ascii_digit_renders_ink_on_a_blank_background(mnist_small):
    X, _, y, _ = mnist_small
    image = X[0].reshape(28, 28)
    text = ascii_digit(image)
    lines = text.split("\n")
    assert len(lines) == 28 and {len(line) for line in lines} == {56}
    assert text == ascii_digit(X[0])  # flat 784 gives the same picture
    chars = np.array([list(line[::2]) for line in lines])  # one character per pixel
    assert (chars[image == 0] == " ").all()
    assert (chars[image == image.max()] == "@").all()
    np.testing.assert_array_equal(chars != " ", image >= 0.1 * image.max())
    assert ascii_digit(np.zeros((28, 28), np.uint8)).strip() == ""
    with pytest.raises(InputError):
        ascii_digit(X[:2])


def test_most_confident_mistakes_read_proba_by_the_models_classes():
    # proba's columns are classes_ (3 and 8 here), not the classes 0..K-1 a label would number.
    y_true, y_pred = np.array([3, 8, 8, 3]), np.array([8, 8, 3, 8])  # wrong at 0, 2, 3
    proba = np.array([[0.4, 0.6], [0.1, 0.9], [0.7, 0.3], [0.2, 0.8]])
    assert most_confident_mistakes(y_true, y_pred, proba, 5, classes=[3, 8]).tolist() == [3, 2, 0]
    assert most_confident_mistakes(y_true == 8, y_pred == 8, proba, 5, classes=[False, True]).tolist() == [3, 2, 0]
    with pytest.raises(InputError, match=r"^y_pred holds label 5, expected one of classes \[3, 8\]\.$"):
        most_confident_mistakes(y_true, np.array([5, 8, 3, 8]), proba, 5, classes=[3, 8])
    with pytest.raises(InputError, match=r"^classes has shape \(3,\), expected \(2,\): one class per proba column"):
        most_confident_mistakes(y_true, y_pred, proba, 5, classes=[3, 5, 8])


def test_mistakes_of_equal_probability_are_ranked_by_their_margins():
    # A softmax of large margins is exactly 1.0 for many answers; their margins still tell them apart.
    y_true, y_pred = np.array([0, 1, 2, 3]), np.array([1, 2, 3, 3])  # wrong at 0, 1, 2
    proba = np.array([[0.0, 1.0, 0, 0], [0, 0.0, 1.0, 0], [0, 0, 0.0, 1.0], [0, 0, 0, 1.0]])
    margins = np.array([[0, 900.0, 0, 0], [0, 0, 5000.0, 4000.0], [0, 0, 0, 2500.0], [0, 0, 0, 1.0]])
    assert most_confident_mistakes(y_true, y_pred, proba, 5).tolist() == [0, 1, 2]  # ties keep their order
    assert most_confident_mistakes(y_true, y_pred, proba, 5, margins=margins).tolist() == [
        2,
        1,
        0,
    ]  # leads 2500, 1000, 900
    proba[0, 1] = 0.9
    assert most_confident_mistakes(y_true, y_pred, proba, 5, margins=margins).tolist() == [2, 1, 0]
    proba[2, 3] = 0.8  # the probability comes first, the margin only breaks its ties
    assert most_confident_mistakes(y_true, y_pred, proba, 5, margins=margins).tolist() == [1, 0, 2]
    with pytest.raises(InputError, match=r"^margins has shape \(4, 3\), expected \(4, 4\) like proba\.$"):
        most_confident_mistakes(y_true, y_pred, proba, 5, margins=margins[:, :3])


def test_class_names_title_and_tick_a_figures_classes():
    from mnistlab.lab.classnames import class_ticks, class_titles

    fashion = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert class_titles(np.array([0, 7, 9]), fashion) == ["T-shirt/top", "Sneaker", "Ankle boot"]
    assert class_titles(np.array([0, 7]), None) == ["0", "7"]
    assert class_ticks(None, 3) == {"labels": ["0", "1", "2"]}
    ticks = class_ticks(fashion, 10)
    assert ticks["labels"][7] == "Sneaker" and ticks["rotation"] == 30  # slanted: long names would overlap
    with pytest.raises(InputError, match="^labels hold 10, which is no class number of the 10 names given; give "):
        class_titles(np.array([10]), fashion)
    with pytest.raises(InputError, match="^names holds 10 class names for 3 classes; give one name per class.$"):
        class_ticks(fashion, 3)
    with pytest.raises(InputError, match="^names must be a list of class names"):
        class_ticks("Sneaker", 1)


def test_mean_digits_and_class_balance_are_titled_by_the_names_given(tmp_path, mnist_small):
    X_train, _, y_train, _ = mnist_small
    names = [f"class {i}" for i in range(10)]
    mean = [save_mean_digits(X_train, y_train, tmp_path / f"mean{i}.png", names=n) for i, n in enumerate((None, names))]
    counts = {"train": np.bincount(y_train, minlength=10)}
    bars = [save_class_balance(counts, tmp_path / f"bars{i}.png", names=n) for i, n in enumerate((None, names))]
    for plain, named in (mean, bars):
        assert plain.read_bytes() != named.read_bytes()
    with pytest.raises(InputError, match="^names holds 3 class names for 10 classes"):
        save_class_balance(counts, tmp_path / "x.png", names=names[:3])


def test_the_mean_images_are_titled_by_what_the_classes_are(tmp_path, mnist_small):
    # Fashion-MNIST's mean images were titled "Mean digit per class".
    from mnistlab.data.registry import DATASETS
    from mnistlab.lab.classnames import class_noun

    X_train, _, y_train, _ = mnist_small
    fashion, numbers = DATASETS["fashion-mnist"].target_names, DATASETS["mnist"].target_names
    assert [class_noun(n) for n in (None, numbers, fashion, [f"class {i}" for i in range(10)])] == [
        "digit",
        "digit",
        "image",
        "image",
    ]

    def drawn(names, title=None) -> bytes:
        return save_mean_digits(X_train, y_train, tmp_path / "mean.png", names=names, title=title).read_bytes()

    assert drawn(fashion) == drawn(fashion, "Mean image per class") != drawn(fashion, "Mean digit per class")
    assert drawn(None) == drawn(None, "Mean digit per class")


def test_the_confusion_matrix_names_the_classes_given(tmp_path):
    # evaluate drew a Fashion-MNIST model's matrix with the clothes numbered 0-9.
    from mnistlab.data.registry import DATASETS

    y_true, y_pred = np.arange(40) % 10, (np.arange(40) + (np.arange(40) % 3 == 0)) % 10
    fashion = DATASETS["fashion-mnist"].target_names
    plain, unnamed, named = (
        save_confusion_matrix(y_true, y_pred, tmp_path / f"c{i}.png", **kw).read_bytes()
        for i, kw in enumerate(({}, {"names": None}, {"names": fashion}))
    )
    assert plain == unnamed != named


def test_the_comparisons_time_bars_reach_the_fastest_and_slowest_seed(tmp_path):
    # Fit times of 0.001, 0.002 and 0.030 s: mean 0.011, std 0.016. A std bar on the log axis reached below 0
    # and was cut at 90% of the mean; the bar now runs from the fastest seed to the slowest.
    results = [
        {"model": "knn", "fit_seconds_mean": 0.011, "fit_seconds": [0.001, 0.002, 0.030]},
        {"model": "logreg", "fit_seconds_mean": 2.0, "fit_seconds": [2.0]},
        {"model": "instant", "fit_seconds_mean": 0.0, "fit_seconds": [0.0, 0.0]},  # a log axis cannot show 0: 1 ms
    ]
    secs, bars = time_bars(results)
    assert secs == pytest.approx([0.011, 2.0, 0.001])
    assert bars[0] == pytest.approx([0.010, 0.0, 0.0]) and bars[1] == pytest.approx([0.019, 0.0, 0.0])
    for r in results:
        r.update(test_accuracy_mean=0.9, test_accuracy_ci95=[0.88, 0.92])
    assert_drawn(save_accuracy_vs_time_bars(results, tmp_path / "bars.png"))


def test_a_mask_of_booleans_is_drawn_as_the_models_read_it(mnist_small, tmp_path):
    """A binarised digit (``img > 128``), which every model and predictor takes, was refused by every figure."""
    X, y = mnist_small[1][:20], mnist_small[3][:20]
    mask = X > 128
    assert ascii_digit(mask[0]) == ascii_digit(mask[0].astype(np.uint8))
    save_digit_grid(mask, y, tmp_path / "grid.png")
    save_mean_digits(mask, y, tmp_path / "mean.png")
    drawn = np.asarray(Image.open(tmp_path / "grid.png").convert("L"))
    save_digit_grid(mask.astype(np.uint8), y, tmp_path / "same.png")
    np.testing.assert_array_equal(drawn, np.asarray(Image.open(tmp_path / "same.png").convert("L")))
    with pytest.raises(InputError, match="images: pixels of dtype <U1, expected integer, float or boolean pixels"):
        save_digit_grid(np.full((2, 784), "a"), y[:2], tmp_path / "text.png")


def test_long_class_names_title_a_cell_on_two_readable_lines(tmp_path, mnist_small):
    # evaluate's gallery of Fashion-MNIST mistakes titled a cell "true Sneaker, pred Ankle boot (99%)" in 5-point
    # type, and compare's grid "Pullover→T-shirt/top" in 4: squeezed onto one line, neither could be read.
    from mnistlab.data.registry import DATASETS
    from mnistlab.lab.charts import SMALLEST, cell_title, new_figure

    names = DATASETS["fashion-mnist"].target_names
    renderer = new_figure(1, 1).canvas.get_renderer()
    for a in names:
        for b in names:
            for (text, size), cell, weight in (
                (cell_title(f"true {a}", ", ", f"pred {b} (99%)", 180, 8.0), 1.45, "normal"),  # the gallery's, inches
                (cell_title(a, "→", b, 80, 9.0), 0.9 + 0.08 * 0.9, "bold"),  # the grid's cell and its gap
            ):
                assert size >= SMALLEST, text
                for line in text.split("\n"):
                    fig = new_figure(1, 1)
                    drawn = fig.text(0, 0, line, fontsize=size, fontweight=weight)
                    assert drawn.get_window_extent(renderer).width / fig.dpi <= cell, (line, size)
    assert cell_title("true 4", ", ", "pred 9 (97%)", 180, 8.0) == ("true 4, pred 9 (97%)", 8.0)  # MNIST's, as before
    assert cell_title("true Sneaker", ", ", "pred Ankle boot (99%)", 180, 8.0) == (
        "true Sneaker,\npred Ankle boot (99%)",
        8.0,
    )
    X, y = mnist_small[1][:30], np.asarray(names)[mnist_small[3][:30]]
    assert_drawn(save_digit_grid(X, y, tmp_path / "grid.png", predictions=y[::-1]))
    proba = np.eye(10)[(mnist_small[3][:30] + 1) % 10]
    assert_drawn(
        save_misclassified_gallery(
            X, mnist_small[3][:30], (mnist_small[3][:30] + 1) % 10, proba, tmp_path / "g.png", classes=None
        )
    )


def test_the_confusion_matrix_writes_each_count_in_the_ink_that_reads_on_its_cell():
    # Counts over the middle of the colour map were written white: 34 of 1,090 (log scale: 0.505 of the map) in
    # white on a light blue, a contrast of about 2.4:1 where 4.5:1 is the least for text.
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    from mnistlab.lab.charts import contrast, text_inks

    blues = colormaps["Blues"](np.linspace(0, 1, 257))
    inks = text_inks(blues)
    rgb = {"black": (0, 0, 0), "white": (1, 1, 1)}
    assert all(contrast(cell, rgb[ink]) >= 4.5 for cell, ink in zip(blues, inks))
    assert inks[0] == "black" and inks[-1] == "white"
    cell = colormaps["Blues"](LogNorm(vmin=1, vmax=1090)(34))
    assert contrast(cell, rgb["white"]) < 3 and text_inks(cell) == "black"


def test_large_images_are_drawn_in_bounded_memory_and_lines(tmp_path):
    # 2,000 x 2,000 images (a folder of scans) were drawn whole, each pixel made a float: `show --first 100` took
    # 73 s and 4.7 GB for 90-pixel cells, and --ascii printed 2,000 lines of 4,000 characters.
    import tracemalloc

    images = np.random.default_rng(0).integers(0, 256, (10, 2000, 2000), dtype=np.uint8)
    tracemalloc.start()
    try:
        save_digit_grid(images, np.arange(10), tmp_path / "grid.png")
        save_mean_digits(images, np.arange(10) % 2, tmp_path / "mean.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < images.nbytes / 2  # drawn from a 125 x 125 view of each (the float copy alone was 160 MB)
    assert Image.open(tmp_path / "grid.png").size == (920, 125)  # ten 0.9-inch cells in a row, as for MNIST
    lines = ascii_digit(images[0]).splitlines()
    assert len(lines) == 125 and {len(line) for line in lines} == {250}


def test_the_comparisons_chart_labels_models_of_close_accuracy_and_time_apart():
    """compare sgd-hinge sgd-log drew 'sgd-hinge 82.24%' over 'sgd-log 81.83%' (close means and fit times): the
    labels were unreadable, and which dot was which could not be told. They now never overlap."""
    from matplotlib.text import Text

    from mnistlab.lab.benchplots import accuracy_vs_time_bars_figure

    results = [
        {"model": m, "test_accuracy_mean": a, "test_accuracy_ci95": ci, "fit_seconds_mean": t, "fit_seconds": s}
        for m, a, ci, t, s in (
            ("sgd-hinge", 0.8224, [0.6737, 0.9711], 3.50, [2.34, 4.65]),
            ("sgd-log", 0.81825, [0.6181, 1.0], 3.89, [4.39, 3.39]),
            ("logreg", 0.8230, [0.80, 0.84], 3.70, [3.70]),
        )
    ]
    fig = accuracy_vs_time_bars_figure(results)
    fig.canvas.draw()  # places each label where the figure shows it
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in fig.axes[0].texts]  # the text, not its line to the dot
    assert len(boxes) == 3
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    top = fig.axes[0].get_window_extent(renderer).y1
    assert all(b.y1 <= top for b in boxes)  # inside the axes
