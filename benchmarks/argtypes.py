"""The argparse types of the benchmarks' options: counts (trials, requests, photos, seeds...), a share, a recipe."""

from __future__ import annotations

import argparse

__all__ = ["at_least_one", "at_least_zero", "recipe_name", "share"]


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (0 trials, requests or photos would leave every mean
    empty, a rate divided by zero, or a table with nothing in it)."""
    return _at_least(text, 1)


def at_least_zero(text: str) -> int:
    """An argparse type: a whole number of 0 or more (0 skips that part of a benchmark; a negative count
    was taken from the end of a list: bench_hands.py --mnist -1 read 4,999 digits)."""
    return _at_least(text, 0)


def _at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of {least} or more, not {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, not {value}")
    return value


def share(text: str) -> float:
    """An argparse type: a share from 0 up to, not including, 1 (bench_serve.py's --junk-share 1 left no
    valid request to measure, and its report failed on the missing kind)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to below 1, not {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to below 1, not {text}")
    return value


def recipe_name(text: str) -> str:
    """An argparse type: the name of a registered recipe, checked as the arguments are read
    (bench_cnn.py --long cnn-bets failed only after the comparison's quarter of an hour of training)."""
    from mnistlab.errors import RecipeError
    from mnistlab.models.recipes import get_recipe

    try:
        get_recipe(text)
    except RecipeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
