"""``mnistlab data info`` and ``mnistlab show``: find, verify, describe and draw datasets.

numpy and the figure module are imported inside the commands: ``mnistlab
--help`` should not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from mnistlab.cli.common import Group, err, given_file, given_path, json_line, out
from mnistlab.errors import InputError, ParameterError
from mnistlab.lab.options import check_seed, check_writable_file

__all__ = ["app", "data_app"]

app = typer.Typer()
data_app = typer.Typer(cls=Group, no_args_is_help=True, help="Find, verify and describe datasets.")

NAME_ARG = typer.Argument(None, help="Dataset: mnist (default), fashion-mnist or digits.")
DATA_DIR_OPT = typer.Option(
    None, "--data-dir", parser=given_path, metavar="DIR", help="A folder holding the four IDX files (.gz or raw)."
)
PNG_OUT = typer.Option(
    None, "--out", parser=given_file, metavar="FILE", help="PNG file to write (default: digits.png)."
)
MAX_GRID = 400  # more digits than this make an unreadable grid


@contextmanager
def download_progress(enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr, fed by ``load_mnist(progress=...)``; shown only once bytes flow."""
    if not enabled:
        yield None
        return
    # rich.progress is only needed when a dataset is loaded, not for --help.
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err
    )
    tasks: dict[str, Any] = {}  # file name -> its bar's task id

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
    """``load_mnist`` with a download bar on stderr unless ``quiet``."""
    from mnistlab.data.load import load_mnist  # numpy and scikit-learn: not at start-up

    with download_progress(not quiet) as progress:
        return load_mnist(name, data_dir=data_dir, progress=progress)


@data_app.command("info")
def data_info(
    name: str | None = NAME_ARG,
    data_dir: Path | None = DATA_DIR_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Where the data was found, sizes, class counts per split, checksums verified."""
    import numpy as np  # not at start-up: see the module docstring

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
        typer.echo(json_line(info))
        return
    # escape: a folder's name is text, not markup ("runs[v2]" was printed "runs", "a[/b]" a traceback)
    out.print(f"[bold]{escape(info['name'])}[/bold]  {escape(b.DESCR)}")
    out.print(f"path      {escape(info['path'])}")
    out.print(f"verified  {_verified_text(b)}")
    out.print(f"images    {n:,} train + {d['n_test']:,} test, {info['image_shape'][0]}x{info['image_shape'][1]} uint8")
    table = Table(title="class counts")
    table.add_column("class")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for i, label in enumerate(b.target_names):
        table.add_row(escape(label), f"{counts['train'][i]:,}", f"{counts['test'][i]:,}")
    out.print(table)


def _verified_text(bunch) -> str:
    """What ``data info`` says was checked: the files' sha256 for a dataset of files; for scikit-learn's digits,
    which come with no files nor published checksums, nothing (it said every file's sha256 matched)."""
    from mnistlab.data.cache import is_mapped  # not at start-up (numpy): see the module docstring

    if not bunch.details["verified"]:
        return "[yellow]no[/yellow] (not a registered dataset)"
    if not bunch.details["files"]:
        return "[green]yes[/green] (bundled with scikit-learn: no files to check)"
    cached = "; the cached arrays match their digests" if is_mapped(bunch.images) else ", read from them"
    return f"[green]yes[/green] (sha256 of every file matches{cached})"


@app.command()
def show(
    ctx: typer.Context,
    name: str | None = NAME_ARG,
    data_dir: Path | None = DATA_DIR_OPT,
    first: int | None = typer.Option(None, "--first", help="Show the first N images (default 30, or all if fewer)."),
    index: list[int] | None = typer.Option(None, "--index", metavar="I", help="Show the image of index I; repeat."),
    random: int | None = typer.Option(None, "--random", help="Show N images drawn at random."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random."),
    split: str = typer.Option("train", "--split", help="train or test."),
    out_path: Path | None = PNG_OUT,
    ascii_art: bool = typer.Option(False, "--ascii", help="Print the first selected digit in the terminal instead."),
    mean: bool = typer.Option(False, "--mean", help="Plot the mean image of each class."),
    balance: bool = typer.Option(False, "--balance", help="Plot the class counts of both splits."),
):
    """Draw a labelled grid of digits (or mean digits, or class balance) to a PNG."""
    import numpy as np  # not at start-up: see the module docstring

    from mnistlab.lab import classnames, plots  # matplotlib: only for the commands that draw

    check_seed(seed)
    out_path = _png_target(out_path, ascii_art)
    if split not in ("train", "test"):
        raise InputError(f"Unknown split {split!r}; expected one of train, test.")
    selecting = [x is not None and x != [] for x in (first, index, random)]
    if sum(selecting) > 1:
        raise InputError("Choose one of --first, --index or --random.")
    if (mean or balance) and (any(selecting) or ascii_art):
        raise InputError(
            f"--{'mean' if mean else 'balance'} plots every image of the split; drop --first, --index, --random "
            "and --ascii, which pick images to show."
        )
    _refuse_dropped(ctx, mean=mean, balance=balance, random=random)
    b = load_with_progress(name, data_dir)
    if not balance:  # said before anything is drawn or printed, naming the file that holds the images
        _check_square(b)
    n = b.details["n_train"]
    images, labels = (b.images[:n], b.target[:n]) if split == "train" else (b.images[n:], b.target[n:])

    if balance:
        counts = {
            s: np.bincount(t, minlength=len(b.target_names))
            for s, t in (("train", b.target[:n]), ("test", b.target[n:]))
        }
        path = plots.save_class_balance(counts, out_path, names=b.target_names)
    elif mean:
        path = plots.save_mean_digits(np.asarray(images), labels, out_path, names=b.target_names)
    else:
        most = len(images) if ascii_art else min(len(images), MAX_GRID)  # --ascii prints the first only
        chosen = _chosen(len(images), most, split, first=first, index=index, random=random, seed=seed)
        if ascii_art:
            i = int(chosen[0])
            typer.echo(f"{split}[{i}]: label {b.target_names[labels[i]]}")
            typer.echo(plots.ascii_digit(np.asarray(images[i])))
            return
        if len(chosen) > MAX_GRID:
            raise InputError(f"A grid of {len(chosen)} digits is unreadable; show at most {MAX_GRID}.")
        title = f"{b.details['name']} {split}: {len(chosen)} {classnames.class_noun(b.target_names)}s"
        names = [b.target_names[k] for k in labels[chosen]]
        path = plots.save_digit_grid(np.asarray(images[chosen]), names, out_path, title=title)
    err.print(f"wrote {path}", markup=False, soft_wrap=True)  # the path as it is, whole


def _refuse_dropped(ctx: typer.Context, *, mean: bool, balance: bool, random: int | None) -> None:
    """Refuse --mean with --balance, a --split beside --balance and a --seed without --random (each of the last two
    was dropped without a word)."""

    def given(param: str) -> bool:  # by name: typer's ParameterSource need not be click's class
        source = ctx.get_parameter_source(param)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    if mean and balance:
        raise InputError("Choose one of --mean or --balance.")
    if balance and given("split"):
        raise InputError("--balance plots the class counts of both splits; drop --split, or use --mean for one.")
    if random is None and given("seed"):
        raise InputError("--seed draws the images --random picks; drop --seed, or give --random N to draw N images.")


def _png_target(path: Path | None, ascii_art: bool) -> Path:
    """The PNG ``show`` writes (``digits.png`` unless --out names one), checked; an --out beside --ascii, which
    writes no PNG, refused (it was dropped without a word)."""
    if ascii_art and path is not None:
        raise InputError("--ascii prints the digit in the terminal and writes no PNG; drop --out or --ascii.")
    path = Path("digits.png") if path is None else path
    if not ascii_art:
        _check_png_target(path)
    return path


def _check_png_target(path: Path) -> None:
    """Refuse an --out that cannot be written or is no PNG name (digits.txt, a typo's "digits"): said before the
    data loads (or downloads) and the figure is drawn, not when it is saved."""
    check_writable_file(path, "out_path")
    if path.suffix.lower() != ".png":
        raise ParameterError(
            "out_path", f"{{param}} {path} has suffix {path.suffix!r}; give a file name ending in .png."
        )


def _check_square(bunch) -> None:
    """Refuse a dataset of images that are not square: its digits cannot be drawn, but its class counts can."""
    height, width = bunch.images.shape[1:]
    if height != width:
        where = bunch.details.get("files", {}).get("train_images") or bunch.details["name"]
        raise InputError(
            f"{where} holds images of {height} x {width} pixels (height x width), and show draws square digits only; "
            "crop or pad them to a square, or plot the class counts with --balance."
        )


def _chosen(
    n: int, most: int, split: str, *, first: int | None, index: list[int] | None, random: int | None, seed: int
):
    """Indices of the images ``--first``, ``--index`` or ``--random`` select from ``n`` (``most`` at most)."""
    import numpy as np  # not at start-up: see the module docstring

    if index:
        bad = [i for i in index if not 0 <= i < n]
        if bad:
            raise InputError(f"Index {bad[0]} is out of range for the {split} split; expected 0 to {n - 1}.")
        return np.array(index)
    if random is not None:
        if not 1 <= random <= most:
            raise InputError(f"--random must be between 1 and {most}, got {random}.")
        return np.sort(np.random.default_rng(seed).choice(n, random, replace=False))
    count = min(30, most) if first is None else first  # a split of fewer digits is shown whole, not refused
    if not 1 <= count <= most:
        raise InputError(f"--first must be between 1 and {most}, got {count}.")
    return np.arange(count)
