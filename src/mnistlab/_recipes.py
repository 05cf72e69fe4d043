"""The recipe registry: named, documented model definitions.

A recipe builds an unfitted scikit-learn compatible estimator from a seed and a
number of jobs. Classic recipes are ``Pipeline`` objects; CNN recipes are
``CNNClassifier`` estimators. Heavy imports (torch) happen inside ``build`` so
that listing recipes stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ._errors import RecipeError

__all__ = ["Recipe", "RECIPES", "register", "get_recipe", "list_recipes", "DEFAULT_LINEUP"]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    build: Callable[[int, int], Any]  # (seed, n_jobs) -> unfitted estimator
    family: str = "classic"  # "classic" or "cnn"


RECIPES: dict[str, Recipe] = {}

# What `mnistlab compare` runs with no recipe named (the main job of `make demo`).
DEFAULT_LINEUP: list[str] = []


def register(recipe: Recipe) -> Recipe:
    if recipe.name in RECIPES:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(RECIPES)
        raise RecipeError(f"Unknown recipe {name!r}; expected one of: {known}.") from None


def list_recipes() -> list[Recipe]:
    return list(RECIPES.values())


# --- classic recipes (issue 3) are registered below this line ---------------

# --- CNN recipes (issue 4) are registered below this line -------------------
