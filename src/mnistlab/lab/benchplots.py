"""The comparison's chart: test accuracy against fit time, with error bars over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mnistlab._atomic import atomic_writer
from mnistlab.lab.charts import new_figure, spread_labels, style_time_axes

__all__ = ["save_accuracy_vs_time_bars", "accuracy_vs_time_bars_figure", "time_bars"]


def save_accuracy_vs_time_bars(results: list[dict], path) -> Path:
    """One point per model at its mean fit time and mean accuracy; bars: the 95% interval, and the fastest and
    slowest seed's fit time (a std bar on a log axis reaches below 0 for times that vary by more than their mean)."""
    fig = accuracy_vs_time_bars_figure(results)
    path = Path(path)
    with atomic_writer(path) as f:
        fig.savefig(f, format="png")
    return path


def accuracy_vs_time_bars_figure(results: list[dict]) -> Figure:
    """The figure ``save_accuracy_vs_time_bars`` writes; each point's label right of it, moved up (a line points
    to its dot) where it would cover another's: models of close accuracy and time, such as the lesson's two SGD
    models, were labelled on top of each other."""
    secs, x_err = time_bars(results)
    pct = np.array([100 * float(r["test_accuracy_mean"]) for r in results])
    ci = np.array([[100 * float(x) for x in r["test_accuracy_ci95"]] for r in results])  # (n, 2)
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    y_err = np.stack([pct - ci[:, 0], ci[:, 1] - pct]).clip(min=0)  # (2, n): below, above
    ax.errorbar(secs, pct, yerr=y_err, xerr=x_err, fmt="o", ms=6, capsize=3, color="#1f77b4", zorder=3)
    style_time_axes(
        ax, "fit time (seconds, log scale; bars: fastest to slowest seed)", "test accuracy (%; bars: 95% interval)"
    )
    ax.set_xlim((secs - x_err[0]).min() / 2, (secs + x_err[1]).max() * 6)  # room on the right for the labels
    labels = [f"{r['model']} {y:.2f}%" for r, y in zip(results, pct)]
    fig.tight_layout()
    label_y = list(pct)
    for _ in range(2):  # placed in the axes' inches, then again once the top was raised to hold them
        box = ax.get_position()
        x_lo, x_hi = np.log10(ax.get_xlim())
        y_lo, y_hi = ax.get_ylim()
        per_inch = (x_hi - x_lo) / (box.width * fig.get_figwidth()), (y_hi - y_lo) / (box.height * fig.get_figheight())
        label_y = spread_labels(np.log10(secs), pct, labels, *per_inch)
        ax.set_ylim(y_lo, max(y_hi, max(label_y) + 0.2 * per_inch[1]))
    shift = 10 ** (0.1 * per_inch[0])  # 0.1 in right of the dot, where spread_labels starts a label
    for label, x, y, ty in zip(labels, secs, pct, label_y):
        line = dict(arrowstyle="-", color="0.6", lw=0.6) if ty != y else None  # a moved label points to its dot
        # parse_math=False: a name's "$" is text ("price$x^2$.py" was drawn as "pricex².py", "$\q$" raised)
        ax.annotate(label, (x, y), xytext=(x * shift, ty), fontsize=8, va="center", arrowprops=line, parse_math=False)
    return fig


def time_bars(results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Each model's mean fit time (n,) and its bar (2, n): how far below it the fastest seed's time lies and how
    far above it the slowest's; times under a millisecond (a log axis cannot reach 0) count as one."""
    secs = np.array([max(float(r["fit_seconds_mean"]), 1e-3) for r in results])
    spans = np.array([[min(r["fit_seconds"]), max(r["fit_seconds"])] for r in results]).clip(min=1e-3)  # (n, 2)
    return secs, np.stack([secs - spans[:, 0], spans[:, 1] - secs]).clip(min=0)
