"""The ``mnistlab`` command line.

Every user mistake surfaces as a ``MnistlabError``; ``_Group.invoke`` turns it
into one line on stderr and exit code 2, so no command prints a traceback for
bad input. Heavy modules are imported inside commands to keep start-up quick.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from ._errors import InputError, MnistlabError

__all__ = ["app", "main"]


class _Group(TyperGroup):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MnistlabError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Classify handwritten digits: data, models, photos and a web page.",
)
data_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Find, verify and describe datasets.")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)


def _version(value: bool):
    if value:
        from . import __version__

        typer.echo(f"mnistlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
):
    """mnistlab: verified MNIST data, classic and CNN models, photos of digits, a draw-a-digit page."""


@contextmanager
def download_progress(enabled: bool = True):
    """A rich progress bar on stderr, fed by ``load_mnist(progress=...)``; shown only once bytes flow."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err)
    tasks = {}

    def update(fname: str, done: int, total: int | None):
        if not tasks:
            bar.start()
        if fname not in tasks:
            tasks[fname] = bar.add_task(f"download {fname}", total=total)
        bar.update(tasks[fname], completed=done)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


def load_with_progress(name: str | None, data_dir: Path | None, *, quiet: bool = False):
    from ._load import load_mnist

    with download_progress(not quiet) as progress:
        return load_mnist(name, data_dir=data_dir, progress=progress)


NAME_ARG = typer.Argument(None, help="Dataset: mnist (default), fashion-mnist or digits.")
DATA_DIR_OPT = typer.Option(None, "--data-dir", help="A folder holding the four IDX files (.gz or raw).")


# --- data -------------------------------------------------------------------------


@data_app.command("info")
def data_info(
    name: Optional[str] = NAME_ARG,
    data_dir: Optional[Path] = DATA_DIR_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Where the data was found, sizes, class counts per split, checksums verified."""
    import numpy as np

    b = load_with_progress(name, data_dir, quiet=as_json)
    d = b.details
    n = d["n_train"]
    counts = {
        "train": np.bincount(b.target[:n], minlength=len(b.target_names)).tolist(),
        "test": np.bincount(b.target[n:], minlength=len(b.target_names)).tolist(),
    }
    info = {
        "name": d["name"],
        "path": d["path"],
        "verified": d["verified"],
        "n_train": n,
        "n_test": d["n_test"],
        "image_shape": list(b.images.shape[1:]),
        "target_names": b.target_names,
        "class_counts": counts,
        "checksums": d["checksums"],
        "data_sha256": d["data_sha256"],
    }
    if as_json:
        typer.echo(json.dumps(info))
        return
    from rich.table import Table

    out.print(f"[bold]{info['name']}[/bold]  {b.DESCR}")
    out.print(f"path      {info['path']}")
    verified = "[green]yes[/green] (sha256 of every file matches)" if d["verified"] else "[yellow]no[/yellow] (not a registered dataset)"
    out.print(f"verified  {verified}")
    out.print(f"images    {n:,} train + {d['n_test']:,} test, {info['image_shape'][0]}x{info['image_shape'][1]} uint8")
    table = Table(title="class counts")
    table.add_column("class")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for i, label in enumerate(b.target_names):
        table.add_row(label, f"{counts['train'][i]:,}", f"{counts['test'][i]:,}")
    out.print(table)


# --- show ---------------------------------------------------------------------------


@app.command()
def show(
    name: Optional[str] = NAME_ARG,
    data_dir: Optional[Path] = DATA_DIR_OPT,
    first: Optional[int] = typer.Option(None, "--first", help="Show the first N images (default 30)."),
    index: Optional[List[int]] = typer.Option(None, "--index", help="Show these image indices (repeatable)."),
    random: Optional[int] = typer.Option(None, "--random", help="Show N images drawn at random."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random."),
    split: str = typer.Option("train", "--split", help="train or test."),
    out_path: Path = typer.Option(Path("digits.png"), "--out", help="PNG file to write."),
    ascii_art: bool = typer.Option(False, "--ascii", help="Print the first selected digit in the terminal instead."),
    mean: bool = typer.Option(False, "--mean", help="Plot the mean digit of each class."),
    balance: bool = typer.Option(False, "--balance", help="Plot the class counts of both splits."),
):
    """Draw a labelled grid of digits (or mean digits, or class balance) to a PNG."""
    import numpy as np

    from . import _plots

    if split not in ("train", "test"):
        raise InputError(f"Unknown split {split!r}; expected one of train, test.")
    if sum(x is not None and x != [] for x in (first, index, random)) > 1:
        raise InputError("Choose one of --first, --index or --random.")
    b = load_with_progress(name, data_dir)
    n = b.details["n_train"]
    images, labels = (b.images[:n], b.target[:n]) if split == "train" else (b.images[n:], b.target[n:])

    if balance:
        counts = {s: np.bincount(t, minlength=len(b.target_names)) for s, t in (("train", b.target[:n]), ("test", b.target[n:]))}
        path = _plots.save_class_balance(counts, out_path)
    elif mean:
        path = _plots.save_mean_digits(np.asarray(images), labels, out_path)
    else:
        if index:
            bad = [i for i in index if not -len(images) <= i < len(images)]
            if bad:
                raise InputError(f"Index {bad[0]} is out of range for the {split} split; expected 0 to {len(images) - 1}.")
            chosen = np.array(index)
        elif random is not None:
            if not 1 <= random <= len(images):
                raise InputError(f"--random must be between 1 and {len(images)}, got {random}.")
            chosen = np.sort(np.random.default_rng(seed).choice(len(images), random, replace=False))
        else:
            count = 30 if first is None else first
            if not 1 <= count <= len(images):
                raise InputError(f"--first must be between 1 and {len(images)}, got {count}.")
            chosen = np.arange(count)
        if ascii_art:
            i = int(chosen[0])
            typer.echo(f"{split}[{i}]: label {b.target_names[labels[i]]}")
            typer.echo(_plots.ascii_digit(np.asarray(images[i])))
            return
        if len(chosen) > 400:
            raise InputError(f"A grid of {len(chosen)} digits is unreadable; show at most 400.")
        title = f"{b.details['name']} {split}: {len(chosen)} digits"
        names = [b.target_names[k] for k in labels[chosen]]
        path = _plots.save_digit_grid(np.asarray(images[chosen]), names, out_path, title=title)
    err.print(f"wrote {path}")


# --- recipes ---------------------------------------------------------------------------


@app.command("recipes")
def recipes_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the model recipes that train and compare accept."""
    from ._recipes import DEFAULT_LINEUP, list_recipes

    rows = [{"recipe": r.name, "family": r.family, "default": r.name in DEFAULT_LINEUP, "description": r.description} for r in list_recipes()]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(title="recipes (* = in the default compare line-up)")
    for col in ("recipe", "family", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["recipe"] + (" *" if r["default"] else ""), r["family"], r["description"])
    out.print(table)


# --- train / evaluate / compare (issue 3) ---------------------------------------------


@contextmanager
def step_progress(enabled: bool = True):
    """Yield ``progress(message)``: a live spinner with elapsed time on stderr, and one
    finished line per step (also when stderr is not a terminal, e.g. in a log)."""
    if not enabled:
        yield None
        return
    import time

    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    state = {"task": None, "message": None, "start": 0.0}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True) as bar:

        def finish_step():
            if state["message"] is not None:
                bar.console.print(
                    f"[green]✓[/green] {escape(state['message'])} [dim]({time.perf_counter() - state['start']:.1f} s)[/dim]", soft_wrap=True
                )

        def update(message: str):
            finish_step()
            state["message"], state["start"] = message, time.perf_counter()
            if state["task"] is not None:
                bar.remove_task(state["task"])
            state["task"] = bar.add_task(escape(message), total=None)

        yield update
        finish_step()


def _cv_text(result: dict) -> str:
    import numpy as np

    if not result["cv_scores"]:
        return "skipped (this recipe's default is no CV; pass --cv 3 to run it)"
    # The lesson prints cross_val_score's array as is.
    scores = np.array2string(np.array(result["cv_scores"]), precision=5, separator=", ")
    return f"array({scores})  mean {result['cv_mean']:.4f} ± {result['cv_std']:.4f}"


def _size_text(n) -> str:
    return "–" if n is None else f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _check_choice(value: str, choices: tuple, option: str) -> None:
    if value not in choices:
        raise InputError(f"Unknown {option} {value!r}; expected one of {', '.join(choices)}.")


CV_OPT = typer.Option(None, "--cv", help="Cross-validation folds (0 skips CV); default: the recipe's own (3, or 0 for slow ones).")
SPLIT_OPT = typer.Option("official", "--split", help="official (first 60,000 / last 10,000) or random (stratified).")
TEST_SIZE_OPT = typer.Option(None, "--test-size", help="Test fraction (<1) or count, for --split random.")
SEED_OPT = typer.Option(42, "--seed", help="Seed for the model, the random split and --limit (42 reproduces the lesson).")
LIMIT_OPT = typer.Option(None, "--limit", help="Train on a stratified subset of N training images.")
N_JOBS_OPT = typer.Option(-1, "--n-jobs", help="Parallel processes for CV folds, parallel models and ensemble members; torch threads for single CNNs (-1: all cores; one thread for a single CNN).")


def _test_size(value: Optional[float]):
    # A whole number above 1 is a count of test images, as in train_test_split.
    return None if value is None else int(value) if value >= 1 else value


@app.command()
def train(
    recipe: str = typer.Argument(..., help="Recipe name; see `mnistlab recipes`."),
    cv: Optional[int] = CV_OPT,
    split: str = SPLIT_OPT,
    test_size: Optional[float] = TEST_SIZE_OPT,
    seed: int = SEED_OPT,
    limit: Optional[int] = LIMIT_OPT,
    n_jobs: int = N_JOBS_OPT,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Model directory (default: $XDG_DATA_HOME/mnistlab/models/RECIPE)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with the results."),
    target: Optional[float] = typer.Option(
        None, "--target", min=0.0, max=1.0,
        help="CNN recipes: stop once accuracy on a held-out 10% of the training set reaches ACC (e.g. 0.99).",
        metavar="ACC",
    ),
):
    """Fit a recipe: per-fold CV accuracies, test accuracy, times; save the model."""
    from ._recipes import get_recipe
    from ._training import train_recipe

    get_recipe(recipe)  # an unknown name fails before any data is loaded
    _check_choice(split, ("official", "random"), "split")
    with step_progress(not as_json) as progress:
        result = train_recipe(
            recipe, cv=cv, split=split, test_size=_test_size(test_size), seed=seed, limit=limit,
            n_jobs=n_jobs, out=out_dir, progress=progress, target=target,
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    # soft_wrap: long lines (the CV array, the model path) stay whole in logs and pipes.
    def say(text: str) -> None:
        out.print(text, soft_wrap=True)

    say(f"[bold]{result['recipe']}[/bold]: {result['description']}")
    say(f"cross-validation ({result['cv']} folds): {_cv_text(result)}" if result["cv"] else f"cross-validation: {_cv_text(result)}")
    say(f"test accuracy  [bold]{result['test_accuracy']:.4f}[/bold] on {result['n_test']:,} images")
    say(f"fit            {result['fit_seconds']:.1f} s on {result['n_train']:,} images")
    if "epochs" in result:  # CNN recipes
        say(f"epochs         {result['epochs']} ({result['train_seconds']:.1f} s in the training loop)")
    say(f"predict        {result['predict_seconds']:.2f} s")
    for note in result.get("notes", []):
        say(f"[dim]note: {note}[/dim]")
    say(f"model          {result['model_dir']} ({_size_text(result['model_size_bytes'])})")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="A model directory written by `mnistlab train`."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for the PNGs (default: the model directory)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Accuracy, per-class precision/recall/F1, a confusion matrix and the most confident mistakes."""
    from ._training import evaluate_model

    with step_progress(not as_json) as progress:
        result = evaluate_model(model_dir, out_dir=out_dir, progress=progress)
    if as_json:
        typer.echo(json.dumps(result))
        return
    from rich.table import Table

    out.print(
        f"[bold]{result['recipe']}[/bold] from {result['model_dir']}: accuracy [bold]{result['accuracy']:.4f}[/bold] "
        f"on {result['n_test']:,} test images", soft_wrap=True,
    )
    if result["same_predictions_as_training"] is False:
        out.print("[yellow]warning:[/yellow] predictions differ from those recorded at training time (other library versions?).")
    table = Table(title="per class")
    for col in ("digit", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for row in result["per_class"]:
        table.add_row(str(row["digit"]), f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", f"{row['support']:,}")
    out.print(table)
    out.print(f"confusion matrix: {result['confusion_png']}", soft_wrap=True)
    out.print(f"most confident mistakes: {result['gallery_png']}", soft_wrap=True)


@app.command("compare")
def compare_cmd(
    recipes: Optional[List[str]] = typer.Argument(None, help="Recipes to run (default: the standard line-up)."),
    out_dir: Path = typer.Option(Path("report"), "--out", help="Folder for index.html and its images."),
    cv: Optional[int] = CV_OPT,
    split: str = SPLIT_OPT,
    test_size: Optional[float] = TEST_SIZE_OPT,
    seed: int = SEED_OPT,
    limit: Optional[int] = LIMIT_OPT,
    n_jobs: int = N_JOBS_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list with an object per recipe."),
):
    """Run several recipes, print a comparison table and write an HTML report."""
    from ._recipes import DEFAULT_LINEUP, get_recipe
    from ._training import compare

    names = list(recipes) if recipes else list(DEFAULT_LINEUP)
    for name in names:
        get_recipe(name)
    _check_choice(split, ("official", "random"), "split")
    with step_progress(not as_json) as progress:
        rows = compare(
            names, out_dir=out_dir, cv=cv, split=split, test_size=_test_size(test_size), seed=seed, limit=limit,
            n_jobs=n_jobs, progress=progress,
        )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.table import Table

    table = Table(title=f"{rows[0]['n_train']:,} training / {rows[0]['n_test']:,} test images, seed {seed}")
    for col in ("recipe", "CV mean ± std", "test acc", "fit s", "predict s", "size"):
        table.add_column(col, justify="left" if col == "recipe" else "right", no_wrap=True)
    best = max(r["test_accuracy"] for r in rows)
    for r in rows:
        cv_text = f"{r['cv_mean']:.4f} ± {r['cv_std']:.4f}" if r["cv_scores"] else "skipped"
        acc = f"{r['test_accuracy']:.4f}"
        table.add_row(
            r["recipe"], cv_text, f"[bold green]{acc}[/bold green]" if r["test_accuracy"] == best else acc,
            f"{r['fit_seconds']:.1f}", f"{r['predict_seconds']:.2f}", _size_text(r["model_size_bytes"]),
        )
    out.print(table)
    out.print(f"report: {rows[0]['report']}")

# --- export (issue 4) ---------------------------------------------------------------------


@app.command("export")
def export_cmd(
    model_dir: Path = typer.Argument(..., help="A CNN model directory written by `mnistlab train`."),
    onnx_file: Path = typer.Option(..., "--onnx", help="The ONNX file to write.", metavar="FILE"),
):
    """Write a CNN model as ONNX (any batch size), checked to predict as PyTorch does."""
    from ._modelfiles import load_model
    from ._onnx import OPSET, export_onnx

    estimator, card = load_model(model_dir)
    path = export_onnx(estimator, onnx_file)
    out.print(
        f"wrote {path} ({_size_text(path.stat().st_size)}): {card.get('recipe', 'model')}, opset {OPSET}, "
        f"input 'image' float32 (N, 1, {', '.join(map(str, estimator.image_shape_))}) in [0, 1], "
        f"output 'probabilities' (N, {len(estimator.classes_)}); checked against PyTorch"
    )

# --- predict (issue 5) --------------------------------------------------------------------


def _save_preprocessed(folder: Path, source: Path, result: dict) -> None:
    """Write the 28x28 image(s) the model saw as PNG: <stem>.png, or <stem>-<i>.png per digit of a number."""
    import io

    from PIL import Image

    from ._atomic import atomic_write_bytes

    images = [d["mnist_image"] for d in result["digits"]] if "digits" in result else [result["mnist_image"]]
    for i, image in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="PNG")
        name = f"{source.stem}-{i}.png" if "digits" in result else f"{source.stem}.png"
        atomic_write_bytes(folder / name, buf.getvalue())


def _probability_text(result: dict) -> str:
    return f"{result['probability']:.1%}"


@app.command()
def predict(
    files: List[Path] = typer.Argument(..., help="Images (PNG, JPEG, BMP, TIFF, WebP) or .npy/.csv files of 784 pixel values."),
    model: Optional[Path] = typer.Option(None, "--model", help="A saved model folder (default: the best model saved on this machine)."),
    number: bool = typer.Option(False, "--number", help="Read a row of digits (a house number, a code) instead of one digit."),
    top: int = typer.Option(3, "--top", min=1, max=10, help="How many ranked digits to show."),
    save_preprocessed: Optional[Path] = typer.Option(None, "--save-preprocessed", help="Folder to write the 28x28 images the model saw."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
):
    """Which digit (or number, with --number) is in each file, and is the model sure?"""
    from rich.table import Table

    from ._predict import load_predictor, predict_file, to_json

    _announce_detector(model)
    predictor = load_predictor(model)  # a missing or broken model stops everything: exit 2
    if save_preprocessed is not None:
        save_preprocessed.mkdir(parents=True, exist_ok=True)
    table = Table()
    table.add_column("File", overflow="fold")
    for title in ("Number", "Digits") if number else ("Digit", "Probability", "Top"):
        table.add_column(title)
    table.add_column("Confident")
    failed = False
    for path in files:
        try:
            result = predict_file(path, predictor, top=top, number=number)
        except MnistlabError as exc:
            failed = True
            if as_json:
                typer.echo(json.dumps({"file": str(path), "error": str(exc)}))
            else:
                message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
                err.print(f"Error: {message}", markup=False, highlight=False, soft_wrap=True)
            continue
        if save_preprocessed is not None:
            _save_preprocessed(save_preprocessed, path, result)
        if as_json:
            typer.echo(json.dumps(to_json(result, str(path))))
            continue
        reason = lambda r: "yes" if r["confident"] else f"no: {r['reason']}"  # noqa: E731
        if number:
            digits = " ".join(f"{d['digit']}:{_probability_text(d)}" for d in result["digits"])
            unsure = [f"{i + 1}: {d['reason']}" for i, d in enumerate(result["digits"]) if not d["confident"]]
            verdict = "yes" if result["confident"] else "no" + (f" ({'; '.join(unsure)})" if unsure else ": no digits found")
            table.add_row(str(path), result["number"] or "-", digits, verdict)
        else:
            ranked = ", ".join(f"{d} {p:.1%}" for d, p in result["top"])
            table.add_row(str(path), str(result["digit"]), _probability_text(result), ranked, reason(result))
    if not as_json and table.row_count:
        out.print(table)
    if failed:
        raise typer.Exit(1)

# --- serve (issue 6) ----------------------------------------------------------------------


@app.command()
def serve(
    model: Optional[Path] = typer.Option(None, "--model", help="A saved model folder (default: the best model saved on this machine)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 exposes the page to your network."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
):
    """Serve the draw-a-digit page and its JSON API (docs at /docs) until Ctrl+C."""
    from ._server import serve as run_server

    _announce_detector(model)
    run_server(model, host=host, port=port)


def _announce_detector(model: Optional[Path]) -> None:
    """Say so before the one long wait of a first prediction on this machine."""
    from ._digit_detector import detector_ready
    from ._modelfiles import find_best_model

    try:
        if (model is not None or find_best_model() is not None) and not detector_ready():
            err.print(
                "Fitting the digit / not-a-digit detector for the confidence checks: "
                "once per machine, about 2 minutes on one CPU core."
            )
    except MnistlabError:
        pass  # loading the model reports it, with the same message


def main() -> None:
    app()


if __name__ == "__main__":
    main()
