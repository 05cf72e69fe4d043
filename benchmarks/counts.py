"""The argparse type of every count a benchmark takes (trials, requests, photos, seeds...)."""

from __future__ import annotations

import argparse

__all__ = ["at_least_one"]


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (0 trials, requests or photos would leave every mean
    empty, a rate divided by zero, or a table with nothing in it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value
