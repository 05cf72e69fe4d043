"""The comparison report: ``index.html`` plus PNG files beside it.

Per dataset: the table (mean accuracy over seeds with its 95% interval, the
standard deviation, times, how many seeds were reused), each model against
the best one and the baseline (paired tests, Holm-corrected, with the interval
of the difference), the matrix of all pairs, accuracy against time with error
bars, and the best model's mistakes. The page is self-contained and works
offline: inline CSS, no scripts, every image a relative link to a PNG in the
same folder, so the folder can be zipped, mailed or opened from disk.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_together, hidden_folder, locked_where_possible
from mnistlab._text import path_text
from mnistlab.errors import InputError, ParameterError
from mnistlab.lab.benchplots import save_accuracy_vs_time_bars
from mnistlab.lab.classnames import dataset_class_names
from mnistlab.lab.formats import format_p
from mnistlab.lab.plots import save_digit_grid

__all__ = ["write_bench_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 76rem;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.4rem; font-size: 1.3rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; } .sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 1rem 0; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child, .desc { text-align: left; }
td.desc { color: #555; font-size: .9rem; max-width: 26rem; }
tr.best td { font-weight: 600; background: #eef7ee; }
td.better { background: #e3f2e3; } td.worse { background: #fbe3e3; } td.same { color: #777; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""
_MISTAKES = 40  # digits in the best model's mistake grid


# Characters of a dataset's name kept in its PNGs' names: a folder's name may take the 255 a file name may, and
# "accuracy-vs-time-" and the temporary file's affixes come on top of it.
_SLUG_CHARS = 80


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "dataset"
    if len(slug) <= _SLUG_CHARS:
        return slug
    return (
        slug[: _SLUG_CHARS - 9].rstrip("-")
        + "-"
        + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    )


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _results_table(results: list[dict]) -> str:
    top = max(r["test_accuracy_mean"] for r in results)  # models that tie at the top are marked alike
    head = ("model", "seeds", "test acc % (mean)", "95% interval", "std", "fit s", "predict s", "reused", "what it is")
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in results:
        low, high = r["test_accuracy_ci95"]
        cells = (
            html.escape(r["model"]),
            str(len(r["seeds"])),
            _pct(r["test_accuracy_mean"]),
            f"{_pct(low)} – {_pct(high)}",
            _pct(r["test_accuracy_std"]),
            f"{r['fit_seconds_mean']:.1f}",
            f"{r['predict_seconds_mean']:.2f}",
            f"{r['reused']} of {len(r['seeds'])}",
        )
        cls = ' class="best"' if r["test_accuracy_mean"] == top else ""
        out.append(
            f"<tr{cls}>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f'<td class="desc">{html.escape(r["description"])}</td></tr>'
        )
    return "\n".join([*out, "</table>"])


def _comparisons_table(comparisons: list[dict]) -> str:
    if not comparisons:
        return "<p>One model: nothing to compare.</p>"
    head = (
        "model",
        "against",
        "difference (points)",
        "95% interval (uncorrected)",
        "only it right (all seeds)",
        "only other right (all seeds)",
        "p",
        "p (Holm)",
        "verdict",
    )
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for c in comparisons:
        low, high = c["diff_ci95"]
        cells = (
            html.escape(c["a"]),
            f"{html.escape(c['b'])} ({html.escape(c['against'])})",
            f"{100 * c['diff']:+.2f}",
            f"{100 * low:+.2f} – {100 * high:+.2f}",
            f"{c['a_only']:,}",
            f"{c['b_only']:,}",
            html.escape(format_p(c["p_value"])),  # "<0.05" is text, not a tag
            html.escape(format_p(c["p_holm"])),
            html.escape(c["verdict"]),
        )
        out.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return "\n".join([*out, "</table>"])


def _matrix_table(names: list[str], matrix: dict) -> str:
    if len(names) < 2:
        return ""  # one model: the comparisons' table already says there is nothing to compare
    out = [
        "<h3>Every pair (Holm-corrected across all pairs; n.d.: not distinguishable at 5%)</h3>",
        "<table>",
        "<tr><th>row against column</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>",
    ]
    for a in names:
        cells = []
        for b in names:
            if a == b:
                cells.append('<td class="same">–</td>')
                continue
            t = matrix[(a, b)]
            cls = {"better": "better", "worse": "worse"}.get(t["verdict"], "same")
            cells.append(
                f'<td class="{cls}" title="{html.escape(t["verdict"])}">{cls if cls != "same" else "n.d."} (p {html.escape(format_p(t["p_holm"], 2))})</td>'
            )
        out.append(f"<tr><td>{html.escape(a)}</td>{''.join(cells)}</tr>")
    return "\n".join([*out, "</table>"])


def _unique_slugs(names: list[str]) -> list[str]:
    """Each dataset's part of the PNGs' names; names that make one ("my data", "My-Data") are numbered."""
    slugs: list[str] = []
    for name in names:
        slug, k = _slug(name), 2
        while slug in slugs:
            slug, k = f"{_slug(name)}-{k}", k + 1
        slugs.append(slug)
    return slugs


def _section_html(section: dict, out_dir: Path, slug: str) -> str:
    """One dataset's part of the page; writes its two PNGs (their names end in ``slug``)."""
    name, results = section["dataset"], section["results"]
    chart = save_accuracy_vs_time_bars(results, out_dir / f"accuracy-vs-time-{slug}.png")
    best = max(results, key=lambda r: r["test_accuracy_mean"])["model"]
    first = section["first"]
    y_pred = np.asarray(section["first_predictions"][best])
    wrong = np.flatnonzero(y_pred != first.y_test)[:_MISTAKES]
    mistakes = ""
    true, pred = first.y_test[wrong], y_pred[wrong]
    names = dataset_class_names(first.dataset, first.data_dir)
    if names is not None:  # "Coat→Pullover" for Fashion-MNIST, not "4→2"
        true, pred = np.asarray(names)[true], np.asarray(names)[pred]
    if len(wrong):
        grid = save_digit_grid(
            np.asarray(first.X_test)[wrong],
            true,
            out_dir / f"mistakes-{slug}.png",
            predictions=pred,
            title=f"{best}: the first {len(wrong)} mistakes (true→predicted), seed {results[0]['seeds'][0]}",
        )
        mistakes = f'<h3>Mistakes of the best model</h3>\n<img src="{grid.name}" alt="mistakes of {html.escape(best)}">'
    r0 = results[0]
    names = [r["model"] for r in results]
    against = " and the baseline" if any(c["against"] == "baseline" for c in section["comparisons"]) else ""
    return f"""<h2>{html.escape(name)}</h2>
<p class="sub">{r0["n_train"]:,} training and {r0["n_test"]:,} test images per seed; seeds {", ".join(map(str, r0["seeds"]))}.</p>
{_results_table(results)}
<h3>Against the best model{against}</h3>
{_comparisons_table(section["comparisons"])}
{_matrix_table(names, section["matrix"])}
<h3>Accuracy against training time</h3>
<img src="{chart.name}" alt="test accuracy against fit time on {html.escape(name)}">
{mistakes}
"""


def _design_text(settings: dict | None) -> str:
    """How the seeds' fits were trained and tested, and so what the intervals and tests hold: with ``--split
    random`` each seed draws its own test images, with ``--limit`` its own training images."""
    settings = settings or {}
    if settings.get("split") == "random":
        design = "Each seed drew its own split of the data into training and test images"
        several = (
            "it holds how much the accuracy moves from seed to seed (each seed's test images are new) and how far "
            "the dataset they were drawn from, itself a sample of such images, may lie from all of them"
        )
        beside = "the dataset's"
    else:
        design = (
            "Each seed drew its own subset of the training images"
            if settings.get("limit") is not None
            else "Every seed trained on the same training images"
        ) + " and was tested on the same test images"
        several = "it also holds how much the accuracy moves from seed to seed"
        beside = "the test sample's (the same test images in every seed are not new evidence)"
    return (
        f"{design}, the same for every model. With one seed (or seeds that all agree) the interval is the Wilson "
        f"interval of the test sample; with several, {several}.\nTwo models are compared image by image: with one "
        "seed (or seeds that repeat it) by McNemar's exact test, with several by the t test of the mean difference "
        f"over the seeds, whose uncertainty is both the seeds' spread and {beside}."
    )


def _provenance_html(settings: dict | None) -> str:
    """What the comparison ran with (``compare``'s settings: split, limit, folds, each dataset's checksum, the
    package versions): a page kept apart from the tracking store still says what its numbers came from."""
    if not settings:
        return ""
    size = f" (test size {settings['test_size']})" if settings.get("test_size") is not None else ""
    limit = "all" if settings.get("limit") is None else f"{settings['limit']:,}"
    folds = "each model's default" if settings.get("cv") is None else settings["cv"]
    data = "; ".join(
        f"{html.escape(d['dataset'])}" + (f" ({html.escape(d['data_dir'])})" if "data_dir" in d else "")
        + f" sha256 <code>{d['data_sha256']}</code>"
        for d in settings.get("data", [])
    )  # fmt: skip
    versions = ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in sorted(settings.get("versions", {}).items()))
    return (
        f'<p class="sub">Split {html.escape(str(settings.get("split")))}{size}; training images: {limit}; '
        f"cross-validation folds: {folds}. Data: {data}. Packages: {versions}.</p>"
    )


def write_bench_report(sections: list[dict], out_dir, settings: dict | None = None) -> Path:
    """Write ``out_dir/index.html`` and its PNGs for the sections of ``compare`` (and what it ran with,
    ``settings``: see ``_provenance_html``); return the page's path."""
    out_dir = Path(out_dir)
    try:
        body, files = _drawn(sections, out_dir)
    except OSError as exc:
        raise _unwritable(out_dir, exc) from None
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mnistlab: classifier comparison</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Classifiers compared</h1>
<p class="sub">{_design_text(settings)}
p-values are Holm-corrected within each family (against the best: with every pair, since the best was picked from the same results); the interval of a difference is not. With one seed it is Tango's score interval, widened to the exact one McNemar's test inverts where that is wider. "Not distinguishable at 5%" means the test images cannot tell them apart.
Times are seconds of wall clock on this machine; "reused" counts seeds taken from recorded runs instead of fitted.</p>
{_provenance_html(settings)}
{body}
</body>
</html>
"""
    files["index.html"] = path_text(page).encode("utf-8")  # a folder's name not in UTF-8 (data_dir) as \\xfe
    # Written one after another, a figure that failed (a full disk) left the old page beside new figures, and
    # two comparisons into one folder at once could mix theirs: all are written or none, one writer at a time.
    try:
        with locked_where_possible(out_dir):
            atomic_write_together(out_dir, files)
    except OSError as exc:
        raise _unwritable(out_dir, exc) from None
    return out_dir / "index.html"


def _drawn(sections: list[dict], out_dir: Path) -> tuple[str, dict[str, bytes]]:
    """The sections' HTML and their figures (name -> PNG bytes), drawn in a hidden folder in ``out_dir``: on the
    report's own disk, whatever room the system's temporary folder has."""
    slugs = _unique_slugs([s["dataset"] for s in sections])
    out_dir.mkdir(parents=True, exist_ok=True)
    with hidden_folder(out_dir, ".mnistlab-report-") as drawn:  # a killed comparison's: removed
        try:
            body = "\n".join(_section_html(s, Path(drawn), slug) for s, slug in zip(sections, slugs))
        except InputError as exc:  # a figure the disk refused: said of out_dir, not of this folder, gone by then
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None
            raise
        return body, {p.name: p.read_bytes() for p in sorted(Path(drawn).iterdir())}


def _unwritable(out_dir: Path, exc: OSError) -> ParameterError:
    return ParameterError(
        "out_dir",
        f"Cannot write the report into {{param}} {out_dir} ({exc.strerror or exc}); free space there, move what is "
        "in the way, or choose another folder.",
    )
