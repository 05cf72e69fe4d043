"""``recipes``, ``train``, ``evaluate``, ``compare`` and ``export``: the lab's commands.

The lab (scikit-learn, matplotlib, torch for CNNs) is imported inside the
commands: ``mnistlab --help`` should not pay for it.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from mnistlab.cli.common import at_home, given_file, given_path, json_line, mlflow_ui, out, step_progress
from mnistlab.cli.options import with_run_options
from mnistlab.errors import InputError
from mnistlab.lab.formats import format_p, format_size
from mnistlab.lab.options import RunOptions, check_model_dir, check_writable_file

__all__ = ["app"]

app = typer.Typer()


def _cluster_option(what: str):
    return typer.Option(
        None,
        "--cluster",
        envvar="RAY_ADDRESS",
        metavar="ADDRESS",
        help=f"Run {what} as tasks on a Ray cluster: host:port of its head, ray://host:port, auto, or local "
        "(a Ray runtime on this machine). Default: $RAY_ADDRESS, else this machine's process pool.",
    )


@app.command("recipes")
def recipes_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the model recipes that train and compare accept."""
    from mnistlab.models.recipes import DEFAULT_LINEUP, list_recipes  # scikit-learn: not at start-up

    recipes = list_recipes()
    if as_json:
        rows = [
            {"recipe": r.name, "family": r.family, "default": r.name in DEFAULT_LINEUP, "description": r.description}
            for r in recipes
        ]
        typer.echo(json_line(rows))
        return
    table = Table(title="recipes (* = in the default compare line-up)")
    for col in ("recipe", "family", "description"):
        table.add_column(col)
    for r in recipes:
        table.add_row(r.name + (" *" if r.name in DEFAULT_LINEUP else ""), r.family, r.description)
    out.print(table)


@app.command()
@with_run_options(target=True)
def train(
    recipe: str = typer.Argument(
        ..., help="Recipe name (see `mnistlab recipes`) or a spec file (best.json) written by `mnistlab sweep`."
    ),
    # A str, not a Path: typer would turn "" into Path("."), the current folder, before any check could see it.
    out_dir: str | None = typer.Option(
        None,
        "--out",
        metavar="DIR",
        help="Model directory (default: $XDG_DATA_HOME/mnistlab/models/NAME, the recipe's or spec's).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the results."),
    cluster: str | None = _cluster_option("the CV folds and a CNN ensemble's members"),
    *,
    options: RunOptions,
):
    """Fit a recipe (or a sweep's best spec): per-fold CV accuracies, test accuracy, times; save the model."""
    import contextlib

    from mnistlab.lab.cluster import parallel_on_cluster  # Ray itself: only when a cluster is asked for
    from mnistlab.lab.specs import resolve_recipe_or_spec_file
    from mnistlab.lab.train import run_recipe  # scikit-learn: not at start-up
    from mnistlab.models.files import default_model_dir, read_card

    name = resolve_recipe_or_spec_file(recipe).name  # an unknown name or a bad spec file fails before any data loads
    # Before training: an empty --out is refused here, not taken for the current folder.
    model_dir = check_model_dir(default_model_dir(name) if out_dir is None else at_home(out_dir, "out_dir"), "out_dir")
    with step_progress(not as_json) as progress:
        on_cluster = parallel_on_cluster(cluster, progress) if cluster else contextlib.nullcontext()
        with on_cluster:
            result = run_recipe(recipe, options, out=model_dir, progress=progress).result
    if as_json:
        typer.echo(json_line(result))
        return

    def say(text: str) -> None:  # soft_wrap: long lines (the CV array, the model path) stay whole in logs and pipes
        out.print(text, soft_wrap=True)

    say(f"[bold]{escape(result['recipe'])}[/bold]: {escape(result['description'])}")
    say(
        f"cross-validation ({result['cv']} folds): {_cv_text(result, options.cv)}"
        if result["cv"]
        else f"cross-validation: {_cv_text(result, options.cv)}"
    )
    low, high = result["test_accuracy_ci95"]
    say(
        f"test accuracy  [bold]{result['test_accuracy']:.4f}[/bold] (95% interval {low:.4f}-{high:.4f}) on {result['n_test']:,} images"
    )
    say(f"fit            {result['fit_seconds']:.1f} s on {result['n_train']:,} images")
    if "epochs" in result:  # CNN recipes; an ensemble's epochs are its members', summed
        n = (read_card(result["model_dir"]).get("config") or {}).get("params", {}).get("n_members", 1)  # a CNN's
        members = f" over {n} members" if n > 1 else ""
        say(f"epochs         {result['epochs']}{members} ({result['train_seconds']:.1f} s in the training loop)")
    say(f"predict        {result['predict_seconds']:.2f} s")
    for note in result.get("notes", []):
        say(f"[dim]note: {escape(note)}[/dim]")
    # escape: a path is text, not markup ("logreg[v2]" was printed "logreg", "run[/tag]" a traceback)
    say(f"model          {escape(result['model_dir'])} ({format_size(result['model_size_bytes'])})")


def _cv_text(result: dict, asked: int | None) -> str:
    """The CV line's text; ``asked``: the --cv given (None: the recipe's default)."""
    import numpy as np  # not at start-up: see the module docstring

    if not result["cv_scores"]:
        if asked == 0:
            return "skipped (--cv 0)"
        return "skipped (this recipe's default is no CV; pass --cv 3 to run it)"
    # The lesson prints cross_val_score's array as is; its std is numpy's (ddof=0), not compare's sample std: said.
    scores = np.array2string(np.array(result["cv_scores"]), precision=5, separator=", ")
    return f"array({scores})  mean {result['cv_mean']:.4f}, std {result['cv_std']:.4f} (over the folds, ddof=0)"


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., parser=given_path, help="A model directory written by `mnistlab train`."),
    out_dir: Path | None = typer.Option(
        None, "--out", parser=given_path, metavar="DIR", help="Folder for the PNGs (default: the model directory)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Accuracy, per-class precision/recall/F1, a confusion matrix and the most confident mistakes."""
    from mnistlab.lab.evaluate import check_figures_dir, evaluate_model  # scikit-learn: not at start-up
    from mnistlab.models.files import read_card

    read_card(model_dir)  # a path that is no model folder is said as such, not as a bad --out
    check_figures_dir(model_dir, out_dir)  # before the model is measured
    with step_progress(not as_json) as progress:
        result = evaluate_model(model_dir, out_dir=out_dir, progress=progress)
    if as_json:
        typer.echo(json_line(result))
        return
    out.print(
        f"[bold]{escape(str(result['recipe']))}[/bold] from {escape(result['model_dir'])}: accuracy [bold]{result['accuracy']:.4f}[/bold] "
        f"(95% interval {result['accuracy_ci95'][0]:.4f}-{result['accuracy_ci95'][1]:.4f}) on {result['n_test']:,} test images",
        soft_wrap=True,
    )
    if result["same_predictions_as_training"] is False:
        out.print(
            "[yellow]warning:[/yellow] predictions differ from those recorded at training time (other library versions?)."
        )
    table = Table(title="per class")
    named = any(row["name"] != str(row["digit"]) for row in result["per_class"])  # Fashion-MNIST's clothes
    for col in ("class" if named else "digit", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for row in result["per_class"]:
        table.add_row(
            escape(row["name"]),
            f"{row['precision']:.4f}",
            f"{row['recall']:.4f}",
            f"{row['f1']:.4f}",
            f"{row['support']:,}",
        )
    out.print(table)
    out.print(f"confusion matrix: {result['confusion_png']}", soft_wrap=True, markup=False)
    out.print(f"most confident mistakes: {result['gallery_png']}", soft_wrap=True, markup=False)


COMPARE_SETTINGS = ("seeds", "split", "test_size", "limit", "cv", "data", "versions")
REPORT_OUT = typer.Option(
    Path("report"), "--out", parser=given_path, metavar="DIR", help="Folder for index.html, its images and the models."
)


@app.command("compare")
@with_run_options()
def compare_cmd(
    models: list[str] | None = typer.Argument(
        None,
        help="Recipes, 'module:callable' or 'file.py:callable' (returning a scikit-learn classifier or a torch "
        "nn.Module), or a spec file (best.json) written by `mnistlab sweep`; default: the standard line-up.",
    ),
    datasets: list[str] | None = typer.Option(
        None, "--dataset", metavar="NAME", help="mnist (default), fashion-mnist, digits or an IDX folder; repeatable."
    ),
    seeds: int = typer.Option(1, "--seeds", help="Fit every model with K seeds (--seed, --seed+1, ...).", metavar="K"),
    baseline: str | None = typer.Option(None, "--baseline", help="Also test every model against this one."),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking store (default: $MLFLOW_TRACKING_URI, else SQLite in $XDG_DATA_HOME/mnistlab/tracking).",
    ),
    retrain: bool = typer.Option(False, "--retrain", help="Fit even where a recorded run could be reused."),
    update_models: bool = typer.Option(
        False, "--update-models", help="Save mnistlab's recipes (MNIST, first seed) to their default model folders."
    ),
    out_dir: Path = REPORT_OUT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: results and comparisons."),
    cluster: str | None = _cluster_option("the fits"),
    *,
    options: RunOptions,
):
    """Compare models over seeds and datasets: intervals, paired tests, tracked runs, an HTML report."""
    from mnistlab.lab.compare import run_comparison  # scikit-learn and MLflow: not at start-up

    with step_progress(not as_json) as progress:
        summary = run_comparison(
            models,
            options,
            datasets=datasets or ["mnist"],
            seeds=seeds,
            baseline=baseline,
            tracking_uri=tracking_uri,
            retrain=retrain,
            update_models=update_models,
            out_dir=out_dir,
            progress=progress,
            cluster=cluster,
        )
    if as_json:
        # What it ran with too (seeds, split, limit, each dataset's checksum, the package versions): the
        # verdicts alone cannot be redone or trusted.
        shown = ("results", "comparisons", "report", "tracking_uri", *COMPARE_SETTINGS)
        typer.echo(json_line({k: summary[k] for k in shown}))
        return
    _print_comparison(summary, baseline)


_TESTS = {  # a comparison's "test", as the legend under the table says it
    "McNemar exact": "McNemar's exact test of one seed (one seed, or seeds that repeat it)",
    "t over seeds": "the t test of the mean difference over the seeds",
}


def _beside(summary: dict) -> str:
    """What the accuracy's t interval holds beside the seeds' spread: the dataset's (``--split random``: each
    seed's test images are new) or the test sample's (the same test images in every seed)."""
    return "dataset's" if summary.get("split") == "random" else "test sample's"


def _print_comparison(summary: dict, baseline: str | None) -> None:
    """``compare``'s answer for people: a table per dataset, how to read it, where the report and runs went."""
    for dataset in dict.fromkeys(r["dataset"] for r in summary["results"]):
        out.print(_compare_table(dataset, summary, baseline))
    # The tests that ran: deterministic models repeat their first seed and are tested as one seed, whatever --seeds.
    ran = {c["test"] for c in summary["comparisons"]}
    tests = [text for test, text in _TESTS.items() if test in ran]
    out.print(
        f"[dim]vs: {', '.join(tests) or 'nothing to compare'}; "
        "Holm-corrected (vs best: with every pair); n.d. = not distinguishable at 5%. Interval: Wilson for one "
        f"seed or seeds that agree, else t with the seeds' spread and the {_beside(summary)}.[/dim]"
    )
    # markup=False: a path is text ("report[v2]" was said as "report", "a[/b]" a traceback after the run)
    out.print(f"report: {summary['report']}", soft_wrap=True, markup=False)
    uri = summary["tracking_uri"]
    out.print(f"runs recorded in {uri} (`mnistlab runs`, {mlflow_ui(uri, quoted=True)})", soft_wrap=True, markup=False)


def _compare_table(dataset: str, summary: dict, baseline: str | None) -> Table:
    """One dataset's results: accuracy over seeds with its interval, times, reuse, and the verdicts."""
    results = [r for r in summary["results"] if r["dataset"] == dataset]
    verdicts = {(c["a"], c["against"]): c for c in summary["comparisons"] if c["dataset"] == dataset}
    first = results[0]
    table = Table(
        title=f"{escape(dataset)}: {first['n_train']:,} training / {first['n_test']:,} test images, {len(first['seeds'])} seed(s)"
    )
    columns = ["model", "acc %", "95% CI", "fit s", "reused", "vs best"]  # the std: in --json and the report
    if baseline is not None:
        columns.append(f"vs {escape(baseline)}")  # text, not markup: "nb[red].py:make", "run[/tag].py:make"
    for col in columns:  # the numbers stay whole in 80 columns (a pipe's): the names and the verdicts wrap
        text = col == "model" or col.startswith("vs ")
        table.add_column(col, justify="left" if text else "right", no_wrap=not text, overflow="fold")
    best = max(r["test_accuracy_mean"] for r in results)
    for r in results:
        low, high = r["test_accuracy_ci95"]
        mean = f"{100 * r['test_accuracy_mean']:.2f}"
        row = [
            escape(r["model"]),  # a user's spec may hold brackets: text, not markup
            f"[bold green]{mean}[/bold green]" if r["test_accuracy_mean"] == best else mean,
            f"{100 * low:.2f}-{100 * high:.2f}",  # the 95% interval
            f"{r['fit_seconds_mean']:.1f}",
            f"{r['reused']}/{len(r['seeds'])}" if r["reused"] else "no",
        ]
        for against in ("best",) + (("baseline",) if baseline is not None else ()):
            c = verdicts.get((r["model"], against))
            row.append("–" if c is None else _verdict_text(c))
        table.add_row(*row)
    return table


def _verdict_text(c: dict) -> str:
    """A comparison in a table cell: "better p=0.012", "n.d. p=0.31", "worse p<0.001"."""
    short = {"better": "better", "worse": "worse"}.get(c["verdict"], "n.d.")
    p = "<0.001" if c["p_holm"] < 0.001 else format_p(c["p_holm"], 2)
    return f"{short} p{p}" if p.startswith("<") else f"{short} p={p}"


TABLE_RUNS = 50  # the runs the table shows unless --last says: a store may hold thousands


@app.command("runs")
def runs_cmd(
    dataset: str | None = typer.Option(None, "--dataset", help="Only runs on this dataset (as compare was given it)."),
    recipe: str | None = typer.Option(
        None, "--recipe", help="Only runs of this model (a recipe, or a spec as compare was given it)."
    ),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking store (as for compare)."),
    last: int | None = typer.Option(
        None, "--last", min=1, metavar="N", help=f"Only the newest N runs (default: {TABLE_RUNS}; with --json: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of runs."),
):
    """List the runs `compare` recorded (newest first), then the `mlflow ui` command that shows them too."""
    from mnistlab.lab.specs import recorded_name
    from mnistlab.lab.tracking import Tracker  # MLflow: about a second to import

    tracker = Tracker(tracking_uri, create=False)  # a typo'd path is said, not made into an empty store
    model = None if recipe is None else recorded_name(recipe)
    if as_json:
        typer.echo(json_line(tracker.runs(dataset=dataset, model=model, last=last)))
        return
    shown = last or TABLE_RUNS  # the newest of thousands (one more is read to know whether there are more)
    runs = tracker.runs(dataset=dataset, model=model, last=shown + 1)
    more, runs = len(runs) > shown, runs[:shown]
    title = f"{'newest ' if more else ''}{len(runs)} run{'s' if more else '(s)'} in {tracker.shown}"
    out.print(title, soft_wrap=True, markup=False)  # the URI whole, to copy: as a table's title it folded
    # Ids, models and numbers whole in 80 columns (the id was cut to "9335f7cee8…"): no rules, a long dataset folds.
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    table.add_column("run", no_wrap=True, min_width=max((len(r["run_id"]) for r in runs), default=3))
    for col in ("model", "dataset", "seed", "test acc", "fit s"):
        table.add_column(
            col, justify="left" if col in ("model", "dataset") else "right", no_wrap=col != "dataset", overflow="fold"
        )
    for r in runs:
        acc = "–" if r["test_accuracy"] is None else f"{r['test_accuracy']:.4f}"
        fit_s = "–" if r["fit_seconds"] is None else f"{r['fit_seconds']:.1f}"
        table.add_row(r["run_id"], escape(str(r["model"])), escape(str(r["dataset"])), str(r["seed"]), acc, fit_s)
    out.print(table)
    if more:
        out.print("older runs not shown: --last N shows more, --json lists them all", soft_wrap=True)
    out.print(mlflow_ui(tracker.shown), soft_wrap=True, markup=False)


@app.command("export")
def export_cmd(
    model_dir: Path = typer.Argument(..., parser=given_path, help="A CNN model directory written by `mnistlab train`."),
    onnx_file: Path = typer.Option(..., "--onnx", parser=given_file, help="The ONNX file to write.", metavar="FILE"),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Quantize the convolutions to int8 (faster on CPUs), measured against float32 on the model's test set.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Write a CNN model as ONNX (any batch size), checked to predict as PyTorch does."""
    from mnistlab.models.files import read_card

    _check_onnx_target(onnx_file)  # before seconds of loading and exporting
    read_card(model_dir)  # a path that is no model folder is said as such, before torch is imported

    from mnistlab.lab.export import export_model  # torch and onnx: seconds to import
    from mnistlab.models.cnn.onnx import OPSET

    with step_progress(not as_json) as progress:
        result = export_model(model_dir, onnx_file, int8=int8, progress=progress)
    if as_json:
        typer.echo(json_line(result))
        return
    shape = ", ".join(map(str, result["image_shape"]))
    out.print(
        f"wrote {result['onnx_file']} ({format_size(result['size_bytes'])}): {result['recipe'] or 'model'}, opset {OPSET}, "
        f"input 'image' float32 (N, 1, {shape}) in [0, 1], output 'probabilities'; checked against PyTorch",
        soft_wrap=True,
        markup=False,  # the file's name and the recipe's as they are: "cnn[v2].onnx" was said as "cnn.onnx"
    )
    if int8:
        out.print(
            f"int8 convolutions, calibrated on {result['n_calibration']:,} training images: test accuracy "
            f"{result['accuracy_int8']:.4f} (float32 {result['accuracy_float32']:.4f}), the same answer for "
            f"{result['same_answers']:,} of {result['n_test']:,} test images",
            soft_wrap=True,
        )


def _check_onnx_target(onnx_file: Path) -> None:
    """Refuse a name that does not end in .onnx: a typo's file would not open as ONNX, and the model's own
    files (model.json, model.safetensors) would be overwritten by an export named after them."""
    check_writable_file(onnx_file, "onnx_file")
    if onnx_file.suffix.lower() != ".onnx":
        raise InputError(f"--onnx {onnx_file} has suffix {onnx_file.suffix!r}; give a file name ending in .onnx.")
