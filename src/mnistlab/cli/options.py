"""The flags of ``train`` and ``compare``, declared once, turned into one ``RunOptions``; ``sweep`` takes
``--test-size`` from here too.

``with_run_options`` adds the flags to a command's signature (typer reads
signatures) and calls the command with ``options=RunOptions(...)`` instead of
the separate values, so both commands share each flag's name, default and help.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import typer

from mnistlab.lab.options import RunOptions

__all__ = ["with_run_options", "TEST_SIZE", "test_size_value"]


# Its own name: `sweep` takes it too, beside flags of its own.
TEST_SIZE = typer.Option(
    None,
    "--test-size",
    help="Test fraction (<1) or count, for --split random (default: as many test images as the official split).",
)


def _flags(
    cv: int | None = typer.Option(
        None, "--cv", help="Cross-validation folds (0 skips CV); default: the recipe's own (3, or 0 for slow ones)."
    ),
    split: str = typer.Option(
        "official", "--split", help="official (first 60,000 / last 10,000) or random (stratified)."
    ),
    test_size: float | None = TEST_SIZE,
    seed: int = typer.Option(
        42, "--seed", help="Seed for the model, the random split and --limit (42 reproduces the lesson)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Train on a stratified subset of N training images."),
    n_jobs: int = typer.Option(
        -1,
        "--n-jobs",
        help="Parallel processes for CV folds, parallel models and ensemble members; torch threads for single CNNs "
        "(-1: all cores; one thread for a single CNN).",
    ),
    target: float | None = typer.Option(
        None,
        "--target",
        min=0.0,
        max=1.0,
        metavar="ACC",
        help="CNN recipes: stop once accuracy on a held-out 10% of the training set reaches ACC (e.g. 0.99).",
    ),
) -> None:
    """Declares the flags; typer reads this signature, nothing calls it. Each name is a RunOptions field."""


def test_size_value(test_size: float | None) -> int | float | None:
    """``--test-size`` as ``RunOptions`` takes it: a whole number is a count of test images, as in
    train_test_split; a fraction (or a value ``RunOptions`` refuses) as it is. One past 2**53, where a float holds
    no longer every whole number, stays the float typed (1e300 was refused as a count of 301 digits)."""
    if test_size is not None and 1 <= test_size <= 2**53 and test_size == int(test_size):
        return int(test_size)
    return test_size


def _options(values: dict) -> RunOptions:
    return RunOptions(**{**values, "test_size": test_size_value(values.get("test_size"))})


def with_run_options(*, target: bool = False) -> Callable:
    """Give a command the shared flags (``--target`` too when asked) and pass it ``options: RunOptions``.

    The command declares its own arguments and options as usual, plus a
    keyword-only ``options`` parameter.
    """
    flags = [p for p in inspect.signature(_flags, eval_str=True).parameters.values() if target or p.name != "target"]
    names = [p.name for p in flags]

    def decorate(command: Callable) -> Callable:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]

        @functools.wraps(command)
        def wrapper(**kwargs):
            values = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, options=_options(values))

        params = own + flags
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
