"""The comparison report: ``index.html`` plus PNG files beside it.

The page is self-contained and works offline: inline CSS, no scripts, no
CDN, and every image is a relative link to a PNG written into the same
folder, so the folder can be zipped, mailed or opened from disk.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab.errors import InputError, ParameterError
from mnistlab.lab.formats import format_size
from mnistlab.lab.plots import save_accuracy_vs_time, save_confusion_matrix, save_digit_grid

__all__ = ["write_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; font-size: 1.2rem; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 1rem 0; }
th, td { padding: .35rem .7rem; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child, .desc { text-align: left; }
td:first-child { white-space: nowrap; }
td.desc { color: #555; font-size: .9rem; max-width: 28rem; }
tr.best td { font-weight: 600; background: #eef7ee; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { font-size: .9rem; color: #444; text-align: center; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.grid img { width: 22rem; }
"""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _table(rows: list[dict]) -> str:
    best = max(range(len(rows)), key=lambda i: rows[i]["test_accuracy"])
    head = ("recipe", "CV accuracy (mean ± std)", "test accuracy", "fit s", "predict s", "model size", "what it is")
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head[:-1]) + f'<th class="desc">{head[-1]}</th></tr>']
    for i, r in enumerate(rows):
        if r.get("cv_scores"):
            cv = f"{r['cv_mean']:.4f} ± {r['cv_std']:.4f}"
        else:
            cv = "skipped"
        cells = (
            html.escape(r["recipe"]),
            cv,
            f"{r['test_accuracy']:.4f}",
            _fmt(r.get("fit_seconds"), ".1f"),
            _fmt(r.get("predict_seconds"), ".2f"),
            format_size(r.get("model_size_bytes")),
        )
        cls = ' class="best"' if i == best else ""
        out.append(
            f"<tr{cls}>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td class="desc">{html.escape(r.get("description", ""))}</td></tr>'
        )
    out.append("</table>")
    return "\n".join(out)


def write_report(rows: list[dict], out_dir, *, X_test, y_test, predictions: dict, n_sample: int = 30) -> Path:
    """Write ``out_dir/index.html`` and its PNGs; return the path of index.html.

    ``rows`` are result objects from ``train_recipe``; ``predictions`` maps a
    recipe name to its predictions on ``X_test``.
    """
    if not rows:
        raise InputError("got no results, expected at least one recipe's result to report.")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(
            "out_dir", f"Cannot create report folder {out_dir} ({exc.strerror}); choose a writable {{param}} folder."
        ) from None
    figures = _draw_figures(rows, out_dir, np.asarray(X_test), np.asarray(y_test), predictions, n_sample)
    index = out_dir / "index.html"
    atomic_write_bytes(index, _page(rows, figures).encode("utf-8"))
    return index


def _draw_figures(rows, out_dir: Path, X_test, y_test, predictions: dict, n_sample: int) -> list[str]:
    """Write the sample, the accuracy chart and a confusion matrix per recipe; return the matrices' HTML."""
    # A fixed, evenly spaced sample of the test set so that reports compare across runs.
    sample = np.linspace(0, len(y_test) - 1, num=min(n_sample, len(y_test))).astype(int)
    best = max(rows, key=lambda r: r["test_accuracy"])
    save_digit_grid(
        X_test[sample],
        y_test[sample],
        out_dir / "digits.png",
        predictions=np.asarray(predictions[best["recipe"]])[sample],
        title=f"Test digits: true→predicted by {best['recipe']} (red: wrong)",
    )
    save_accuracy_vs_time(rows, out_dir / "accuracy_vs_time.png")
    figures = []
    for r in rows:
        png = f"confusion-{_slug(r['recipe'])}.png"
        save_confusion_matrix(
            y_test,
            predictions[r["recipe"]],
            out_dir / png,
            title=f"{r['recipe']}: test accuracy {r['test_accuracy']:.4f}",
        )
        figures.append(
            f'<figure><a href="{png}"><img src="{png}" alt="confusion matrix of {html.escape(r["recipe"])}"></a>'
            f"<figcaption>{html.escape(r['recipe'])}</figcaption></figure>"
        )
    return figures


def _page(rows: list[dict], figures: list[str]) -> str:
    """The HTML of index.html; every image is a PNG in the same folder."""
    first = rows[0]
    setup = (
        f"{html.escape(str(first.get('split')))} split: {first.get('n_train', 0):,} training"
        + (" (a stratified subset)" if first.get("limit") else "")
        + f" and {first.get('n_test', 0):,} test images, seed {first.get('seed')}"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mnistlab: classifier comparison</title>
<style>{_CSS}</style>
</head>
<body>
<h1>MNIST classifiers compared</h1>
<p class="sub">{setup}. Times are seconds of wall clock on this machine; CV is stratified K-fold on the
training set (“skipped” for recipes whose default is no CV).</p>
<h2>Results</h2>
{_table(rows)}
<h2>Accuracy against training time</h2>
<img src="accuracy_vs_time.png" alt="test accuracy against fit time">
<h2>A sample of test digits</h2>
<img src="digits.png" alt="sample of test digits with predictions">
<h2>Confusion matrices</h2>
<div class="grid">
{chr(10).join(figures)}
</div>
</body>
</html>
"""
