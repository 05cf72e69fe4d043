"""Figures of digits and results, written to PNG files.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas
rather than through pyplot: no global figure state, no GUI backend, and safe
to call from web-server threads. Every writer creates the parent folder,
writes the PNG atomically (temp file in the same folder, then ``os.replace``)
and returns the path. Bad input raises ``InputError`` with one sentence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from mnistlab._atomic import atomic_writer
from mnistlab.data.home import checked_path
from mnistlab.data.pixels import as_images
from mnistlab.errors import InputError
from mnistlab.lab.charts import DPI, cell_title, drawn, new_figure, spread_labels, style_time_axes, text_inks
from mnistlab.lab.classnames import class_noun, class_ticks, class_titles
from mnistlab.models.proba import margin_lead, proba_columns

__all__ = [
    "save_digit_grid",
    "save_mean_digits",
    "save_class_balance",
    "save_confusion_matrix",
    "save_misclassified_gallery",
    "save_accuracy_vs_time",
    "ascii_digit",
    "confusion_counts",
    "most_confident_mistakes",
]

CELL = 0.9  # inches per digit in a grid
MAX_GRID = 400  # more digits than this make an unreadable, slow-to-render figure
ASCII_RAMP = " .:-=+*#%@"  # dark (background) -> bright (ink)
WRONG = "#c62828"


def _unit_images(images, what: str = "images") -> np.ndarray:
    """Float32 images (N, H, W) scaled for drawing: divided by the brightest pixel of the batch.

    Takes square images in any layout ``as_images`` takes (flat rows, stacks). The
    batch maximum, rather than a fixed 255, makes 0-255 MNIST, [0, 1] floats
    and scikit-learn's 0-16 digits all draw with full-strength ink.
    """
    arr = as_images(images, what=what)
    if arr.shape[1] != arr.shape[2]:  # a digit grid has square cells
        raise InputError(
            f"{what}: {arr.shape[1]} x {arr.shape[2]} pixels (height x width) is not square; figures of digits draw "
            "square images such as MNIST's 28 x 28, so crop or pad them to a square."
        )
    if arr.size == 0:
        raise InputError(f"got 0 {what}, expected at least one.")
    if arr.dtype.kind not in "uifb":  # a mask (``img > 128``) is 0 and 1, as every mnistlab model reads it
        raise InputError(f"{what}: pixels of dtype {arr.dtype}, expected integer, float or boolean pixels.")
    out = drawn(arr).astype(np.float32)  # no more pixels than a figure shows
    lo, hi = float(out.min()), float(out.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0:
        raise InputError(f"{what} have pixel values from {lo:g} to {hi:g}, expected finite intensities >= 0.")
    if hi > 0:  # an all-black batch stays black
        out /= hi
    return out


def _labels(values, n: int | None, what: str, *, integer: bool = True) -> np.ndarray:
    """Validate a 1-D label array, of length ``n`` when given.

    Integer labels are needed where a label indexes a probability column;
    figures that only print labels also take class names such as "7" or "Sneaker".
    """
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and len(arr) != n):
        expected = "a 1-D array of labels" if n is None else f"{n} labels (one per image)"
        raise InputError(f"{what} has shape {arr.shape}, expected {expected}.")
    if not integer:
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{what} has dtype {arr.dtype}, expected integer class labels.")
    return arr.astype(np.int64)


def _save(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically; OS failures become InputError."""
    path = checked_path(path, "path")
    if path.suffix.lower() != ".png":
        raise InputError(f"Output file {path} has suffix {path.suffix!r}, expected a name ending in .png.")
    try:
        with atomic_writer(path) as f:
            fig.savefig(f, format="png", dpi=DPI)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"Cannot write PNG to {path}: {reason}; choose a writable --out path.") from exc
    return path


def _grid(n: int, ncols: int, cell_w: float, cell_h: float, title: str | None, titles=()):
    """A figure with ``n`` image axes laid out ``ncols`` wide, titled cells of cell_w x cell_h inches (taller where
    one of the cells' ``titles`` takes two lines)."""
    if n > MAX_GRID:
        raise InputError(f"got {n} digits to draw, expected at most {MAX_GRID}; pick fewer.")
    if isinstance(ncols, bool) or not isinstance(ncols, int | np.integer) or ncols < 1:
        raise InputError(f"got ncols={ncols!r}, expected a positive number of columns.")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    extra = 0.15 if any("\n" in t for t in titles) else 0.0  # inches for a cell title's second line
    top = (0.55 if title else 0.05) + extra  # inches kept for the figure title
    width, height = ncols * cell_w + 0.2, nrows * (cell_h + extra) + top + 0.1
    fig = new_figure(width, height)
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / height, va="top", parse_math=False)  # a model's "$" as it is
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.subplots_adjust(
        left=0.1 / width,
        right=1 - 0.1 / width,
        bottom=0.1 / height,
        top=1 - top / height,
        wspace=0.08,
        hspace=0.3 + 2 * extra / cell_h,
    )
    for ax in axes:
        ax.set_axis_off()
    return fig, axes[:n]


def _show(ax, image: np.ndarray) -> None:
    # Dark ink on white paper reads better than MNIST's raw white-on-black.
    ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")


def _cell_title(ax, text: str, fontsize: float, **style) -> None:
    """``text`` above a grid's cell. Set at y=1, where matplotlib would put it: a cell's axis is off, and left to
    place the title itself it measures every cell's axis at each draw (a third of a 40-digit grid's time)."""
    ax.set_title(text, fontsize=fontsize, pad=2, y=1.0, **style)


def save_digit_grid(images, labels, path, *, predictions=None, ncols: int = 10, title: str | None = None) -> Path:
    """A grid of digits titled by label, or by "true→pred" (red when wrong) given predictions."""
    imgs = _unit_images(images)
    n = len(imgs)
    true = None if labels is None else _labels(labels, n, "labels", integer=False).astype(str)
    pred = None if predictions is None else _labels(predictions, n, "predictions", integer=False).astype(str)
    if pred is not None and true is None:
        raise InputError("got predictions without labels, expected true labels to compare them with.")
    if title is None and pred is not None and true is not None:
        title = f"{int((true != pred).sum())} of {n} predictions wrong"
    # "T-shirt/top→Ankle boot" on two lines, readable
    titles = [] if pred is None or true is None else [cell_title(t, "→", p, 80, 9.0) for t, p in zip(true, pred)]
    fig, axes = _grid(n, ncols, CELL, CELL + 0.2, title, [text for text, _ in titles])
    for i, ax in enumerate(axes):
        _show(ax, imgs[i])
        if titles:
            color, weight = (WRONG, "bold") if true[i] != pred[i] else ("black", "normal")  # type: ignore[index]
            _cell_title(ax, titles[i][0], titles[i][1], color=color, fontweight=weight)
        elif true is not None:
            _cell_title(ax, true[i], 9)
    return _save(fig, path)


def save_mean_digits(images, labels, path, *, names=None, title: str | None = None) -> Path:
    """The mean image of each class in one row, each titled with its class (``names[class]``) and count."""
    imgs = _unit_images(images)
    true = _labels(labels, len(imgs), "labels", integer=False)
    classes = np.unique(true)
    title = title or f"Mean {class_noun(names)} per class"  # "digit" said of Fashion-MNIST's clothes too
    fig, axes = _grid(len(classes), len(classes), CELL, CELL + 0.35, title)
    for ax, c, name in zip(axes, classes, class_titles(classes, names)):
        members = true == c
        _show(ax, imgs[members].mean(axis=0))
        _cell_title(ax, f"{name}\nn={int(members.sum()):,}", 8)
    return _save(fig, path)


def save_class_balance(counts_by_split: dict, path, *, names=None) -> Path:
    """Grouped bars of per-class counts, one colour per split (index of a count = its class, ``names[index]``)."""
    if not isinstance(counts_by_split, Mapping):
        kind = type(counts_by_split).__name__
        raise InputError(f"counts_by_split must map each split's name to its class counts, got {kind}.")
    if not counts_by_split:
        raise InputError("got no splits to plot, expected e.g. {'train': counts, 'test': counts}.")
    counts = {str(k): np.asarray(v) for k, v in counts_by_split.items()}
    for name, c in counts.items():
        if c.ndim != 1 or len(c) == 0:
            raise InputError(f"counts for split {name!r} have shape {c.shape}, expected one count per class.")
    k = len(next(iter(counts.values())))
    for name, c in counts.items():
        if len(c) != k:
            raise InputError(f"counts for split {name!r} have shape {c.shape}, expected ({k},) like the first split.")
        if not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
            raise InputError(f"counts for split {name!r} are not all non-negative integers, expected class counts.")
    fig = new_figure(max(6.0, 0.35 * k * len(counts) + 2.5), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    x = np.arange(k)
    for j, (name, c) in enumerate(counts.items()):
        bars = ax.bar(x + (j - (len(counts) - 1) / 2) * width, c, width, label=f"{name} ({int(c.sum()):,})")
        ax.bar_label(bars, labels=[f"{v:,}" for v in c], fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, **class_ticks(names, k))
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_ylim(0, max(int(c.max()) for c in counts.values()) * 1.18 or 1)  # room for the labels
    ax.set_title("Images per class")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _save(fig, path)


def confusion_counts(y_true, y_pred, classes=None) -> np.ndarray:
    """Counts[i, j] = images of class ``classes[i]`` predicted as ``classes[j]``.

    ``classes`` defaults to the union of both label arrays; rows and columns
    follow sorted class order.
    """
    true = _labels(y_true, None, "y_true", integer=False)
    pred = _labels(y_pred, len(true), "y_pred", integer=False)
    classes = np.union1d(true, pred) if classes is None else np.unique(np.asarray(classes))
    k = len(classes)
    ti, pi = np.searchsorted(classes, true), np.searchsorted(classes, pred)
    for name, labels, idx in (("y_true", true, ti), ("y_pred", pred, pi)):
        ok = (idx < k) & (classes[np.minimum(idx, k - 1)] == labels)
        if not ok.all():
            raise InputError(f"{name} holds label {labels[~ok][0]}, expected one of {classes.tolist()}.")
    return np.bincount(ti * k + pi, minlength=k * k).reshape(k, k)


def save_confusion_matrix(y_true, y_pred, path, *, title: str | None = None, names=None) -> Path:
    """Annotated confusion matrix (rows true, columns predicted), its classes named ``names[class]`` if given.

    With 100 or more images in a cell the colour is on a log scale, so that a
    handful of mistakes beside a diagonal of thousands still shows.
    """
    true = _labels(y_true, None, "y_true", integer=False)
    pred = _labels(y_pred, len(true), "y_pred", integer=False)
    if len(true) == 0:
        raise InputError("got 0 predictions, expected at least one to build a confusion matrix.")
    classes = np.union1d(true, pred)
    counts = confusion_counts(true, pred, classes)
    k = len(classes)
    if title is None:
        title = f"Confusion matrix: accuracy {np.trace(counts) / counts.sum():.2%} on {counts.sum():,} images"
    size, titles = max(4.5, 0.6 * k + 1.8), class_titles(classes, names)  # "Sandal" for Fashion-MNIST's 5, not 5
    fig = new_figure(size + 1.0, size + 0.06 * max(0, max(map(len, titles)) - 3))  # room for the slanted names
    ax = fig.add_subplot()
    top = int(counts.max())
    log = top >= 100
    norm = LogNorm(vmin=1, vmax=top) if log else Normalize(vmin=0, vmax=top)
    # Zero cells are masked (drawn white, unlabelled): LogNorm cannot place 0, and blanks read faster.
    image = ax.imshow(np.ma.masked_equal(counts, 0), cmap="Blues", norm=norm)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="images (log scale)" if log else "images")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))  # 1,000 rather than 10^3
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    inks = text_inks(image.cmap(norm(counts)))  # black or white, whichever reads better on the cell's blue
    for i in range(k):
        for j in range(k):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:,}",
                    ha="center",
                    va="center",
                    fontsize=8 if counts[i, j] < 10_000 else 6,
                    color=inks[i, j],
                )
    ax.set_xticks(range(k), **class_ticks(titles, k))
    ax.set_yticks(range(k), titles)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def most_confident_mistakes(y_true, y_pred, proba, n: int, *, classes=None, margins=None) -> np.ndarray:
    """Indices of up to ``n`` wrong predictions, highest predicted-class probability first.

    ``proba[i, j]`` is the probability of class ``classes[j]``: an estimator's
    ``classes_`` (3 and 8, booleans), or by default class ``j`` (columns are
    integer classes 0..K-1). ``margins``, the estimator's decision margins in
    the same columns (only the mistakes' rows are read), break ties: a softmax
    of large margins is exactly 1.0 for most mistakes of a model of raw pixels,
    and the predicted class's lead over the runner-up still tells how sure it
    was. Other ties keep the original order.
    """
    true = _labels(y_true, None, "y_true", integer=classes is None)
    pred = _labels(y_pred, len(true), "y_pred", integer=classes is None)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(true):
        raise InputError(f"proba has shape {p.shape}, expected ({len(true)}, n_classes).")
    columns = proba_columns(pred, classes, p.shape[1])
    if n < 0:
        raise InputError(f"got n={n}, expected a number of mistakes >= 0.")
    wrong = np.flatnonzero(true != pred)
    confidence = p[wrong, columns[wrong]]
    lead = np.zeros(len(wrong)) if margins is None else margin_lead(margins, p.shape, wrong, columns[wrong])
    return wrong[np.lexsort((-lead, -confidence))[:n]]  # a stable sort: the last key first


def save_misclassified_gallery(
    images, y_true, y_pred, proba, path, *, n: int = 25, classes=None, margins=None, probabilities: bool = True
) -> Path:
    """The ``n`` most confident mistakes, each titled "true 4, pred 9 (97%)".

    ``classes`` and ``margins`` are as for ``most_confident_mistakes``. ``probabilities=False``: ``proba`` is
    a softmax of a classifier's margins (a hinge-loss SGD has no predict_proba), which ranks its mistakes but is
    no chance of being right, so no percentage is shown ("true 4, pred 9").
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InputError(f"n must be a whole number of mistakes to show, 1 or more, got {n!r}.")
    if not isinstance(probabilities, bool | np.bool_):  # "no" is truthy: margins' softmax was shown as chances
        raise InputError(f"probabilities must be True or False, got {probabilities!r}.")
    imgs = _unit_images(images)
    true = _labels(y_true, len(imgs), "y_true", integer=classes is None)
    picked = most_confident_mistakes(true, y_pred, proba, n, classes=classes, margins=margins)
    pred, p = np.asarray(y_pred), np.asarray(proba)
    n_wrong = int((true != pred).sum())
    if len(picked) == 0:
        fig = new_figure(6.0, 1.5)
        text = f"No misclassified digits: all {len(true):,} predictions are correct."
        fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
        return _save(fig, path)
    title = f"Most confident mistakes: {len(picked)} of {n_wrong:,} wrong (of {len(true):,})"
    columns = proba_columns(pred[picked], classes, p.shape[1])
    # Rounded down, at most 99: a wrong answer is never shown "100%" sure (a saturated softmax is exactly 1.0).
    sure = [min(math.floor(p[i, column] * 100), 99) for i, column in zip(picked, columns)]
    # "true Sneaker, pred Ankle boot" on two lines, readable
    said = [f"pred {pred[i]} ({s}%)" if probabilities else f"pred {pred[i]}" for i, s in zip(picked, sure)]
    titles = [cell_title(f"true {true[i]}", ", ", text, 180, 8.0) for i, text in zip(picked, said)]
    fig, axes = _grid(len(picked), 5 if len(picked) <= 25 else 10, 1.45, 1.45, title, [t for t, _ in titles])
    for ax, i, (text, size) in zip(axes, picked, titles):
        _show(ax, imgs[i])
        _cell_title(ax, text, size)
    return _save(fig, path)


def save_accuracy_vs_time(rows: list, path) -> Path:
    """Test accuracy against fit time (log scale), one labelled point per recipe."""
    if not rows:
        raise InputError("got no results to plot, expected rows with recipe, test_accuracy, fit_seconds.")
    needed = ("recipe", "test_accuracy", "fit_seconds")
    for row in rows:
        missing = [key for key in needed if key not in row]
        if missing:
            raise InputError(f"result row {row!r} lacks {', '.join(missing)}, expected keys {', '.join(needed)}.")
    names = [str(r["recipe"]) for r in rows]
    acc = np.array([float(r["test_accuracy"]) for r in rows])
    secs = np.array([float(r["fit_seconds"]) for r in rows])
    if not (np.isfinite(secs).all() and (secs > 0).all()):
        raise InputError(f"fit_seconds are {secs.tolist()}, expected positive times for a log-scale axis.")
    if not (np.isfinite(acc).all() and ((acc >= 0) & (acc <= 1)).all()):
        raise InputError(f"test_accuracy values are {acc.tolist()}, expected fractions between 0 and 1.")
    pct = acc * 100
    labels = [f"{name} {a:.2f}%" for name, a in zip(names, pct)]
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    ax.scatter(secs, pct, s=45, color="#1f77b4", zorder=3)
    style_time_axes(ax, "fit time (seconds, log scale)", "test accuracy (%)")
    x_lo, x_hi = np.log10(secs.min() / 2), np.log10(secs.max() * 6)  # room on the right for labels
    spread = max(np.ptp(pct), 1.0)
    y_lo, y_hi = pct.min() - 0.1 * spread, pct.max() + 0.1 * spread
    label_y = spread_labels(np.log10(secs), pct, labels, (x_hi - x_lo) / 6.3, (y_hi - y_lo) / 3.5)
    for label, x, y, ty in zip(labels, secs, pct, label_y):
        line = dict(arrowstyle="-", color="0.6", lw=0.6) if ty != y else None  # a moved label points to its dot
        ax.annotate(label, (x, y), xytext=(x * 1.25, ty), fontsize=8, va="center", arrowprops=line)
    ax.set_xlim(10**x_lo, 10**x_hi)
    ax.set_ylim(y_lo, max(y_hi, max(label_y) + 0.05 * spread))
    fig.tight_layout()
    return _save(fig, path)


def ascii_digit(image) -> str:
    """One line per pixel row; background is spaces, ink runs " .:-=+*#%@".

    Each pixel is two characters wide because terminal cells are about twice as
    tall as they are wide, so the digit keeps its proportions.
    """
    arr = np.asarray(image)
    if arr.ndim not in (1, 2):
        raise InputError(f"image has shape {arr.shape}, expected one digit of shape (28, 28) or (784,).")
    unit = _unit_images(arr[None], "image")[0]
    levels = np.minimum((unit * len(ASCII_RAMP)).astype(int), len(ASCII_RAMP) - 1)
    return "\n".join("".join(ASCII_RAMP[v] * 2 for v in row) for row in levels)
