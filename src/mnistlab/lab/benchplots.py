"""The comparison's chart: test accuracy against fit time, with error bars over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_writer
from mnistlab.lab.charts import new_figure, style_time_axes

__all__ = ["save_accuracy_vs_time_bars", "time_bars"]


def save_accuracy_vs_time_bars(results: list[dict], path) -> Path:
    """One point per model at its mean fit time and mean accuracy; bars: the 95% interval, and the fastest and
    slowest seed's fit time (a std bar on a log axis reaches below 0 for times that vary by more than their mean)."""
    secs, x_err = time_bars(results)
    pct = np.array([100 * float(r["test_accuracy_mean"]) for r in results])
    ci = np.array([[100 * float(x) for x in r["test_accuracy_ci95"]] for r in results])  # (n, 2)
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    y_err = np.stack([pct - ci[:, 0], ci[:, 1] - pct]).clip(min=0)  # (2, n): below, above
    ax.errorbar(secs, pct, yerr=y_err, xerr=x_err, fmt="o", ms=6, capsize=3, color="#1f77b4", zorder=3)
    for r, x, y in zip(results, secs, pct):
        # parse_math=False: a name's "$" is text ("price$x^2$.py" was drawn as "pricex².py", "$\q$" raised)
        ax.annotate(
            f"{r['model']} {y:.2f}%", (x, y), xytext=(6, 4), textcoords="offset points", fontsize=8, parse_math=False
        )
    style_time_axes(
        ax, "fit time (seconds, log scale; bars: fastest to slowest seed)", "test accuracy (%; bars: 95% interval)"
    )
    ax.set_xlim((secs - x_err[0]).min() / 2, (secs + x_err[1]).max() * 6)  # room on the right for the labels
    fig.tight_layout()
    path = Path(path)
    with atomic_writer(path) as f:
        fig.savefig(f, format="png")
    return path


def time_bars(results: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Each model's mean fit time (n,) and its bar (2, n): how far below it the fastest seed's time lies and how
    far above it the slowest's; times under a millisecond (a log axis cannot reach 0) count as one."""
    secs = np.array([max(float(r["fit_seconds_mean"]), 1e-3) for r in results])
    spans = np.array([[min(r["fit_seconds"]), max(r["fit_seconds"])] for r in results]).clip(min=1e-3)  # (n, 2)
    return secs, np.stack([secs - spans[:, 0], spans[:, 1] - secs]).clip(min=0)
