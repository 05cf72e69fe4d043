"""The ``mnistlab`` command line.

Every user mistake surfaces as a ``MnistlabError``; ``_Group.invoke`` turns it
into one line on stderr and exit code 2, so no command prints a traceback for
bad input. Heavy modules are imported inside commands to keep start-up quick.
"""

from __future__ import annotations

import json
import sys
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

# --- export (issue 4) ---------------------------------------------------------------------

# --- predict (issue 5) --------------------------------------------------------------------

# --- serve (issue 6) ----------------------------------------------------------------------


def main() -> None:
    app()


if __name__ == "__main__":
    main()
