"""Run several recipes on the same data and write the comparison report."""

from __future__ import annotations

from collections.abc import Callable

from mnistlab.errors import InputError
from mnistlab.lab.options import Progress, RunOptions, noop, run_options
from mnistlab.lab.train import run_recipe
from mnistlab.models.recipes import DEFAULT_LINEUP, get_recipe

__all__ = ["compare", "run_comparison"]


def compare(
    recipes=None,
    *,
    out_dir="report",
    progress: Progress | None = None,
    data=None,
    on_result: Callable[[dict], None] | None = None,
    **settings,
) -> list[dict]:
    """Train each recipe (default: ``DEFAULT_LINEUP``), save it, and write ``out_dir/index.html``.

    ``settings`` are those of ``train_recipe`` (``cv``, ``split``, ``test_size``,
    ``seed``, ``limit``, ``n_jobs``), described in ``RunOptions``; ``cv=None``
    uses each recipe's default folds. Each model goes to its default model
    directory. ``on_result`` is called after each recipe.
    """
    options = run_options(**settings)
    return run_comparison(recipes, options, out_dir=out_dir, progress=progress, data=data, on_result=on_result)


def run_comparison(
    recipes,
    options: RunOptions,
    *,
    out_dir="report",
    progress: Progress | None = None,
    data=None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """``compare`` with its settings in one ``RunOptions`` (what the CLI calls)."""
    # The report draws with matplotlib, which costs ~0.8 s to import: only when a comparison runs.
    from mnistlab.lab.report import write_report

    names = list(recipes) if recipes else list(DEFAULT_LINEUP)
    if not names:
        raise InputError("No recipes to compare; name some, e.g. `mnistlab compare logreg knn`.")
    for name in names:
        get_recipe(name)  # fail on a typo before spending minutes on the others
    progress = progress or noop
    rows, predictions = [], {}
    for i, name in enumerate(names, start=1):

        def numbered(message: str, prefix=f"[{i}/{len(names)}] ") -> None:
            progress(prefix + message)  # "[2/6] knn: fitting ..." shows how far a long run has got

        scored = run_recipe(name, options, progress=numbered, data=data)
        rows.append(scored.result)
        predictions[name] = scored.y_pred
        if on_result is not None:
            on_result(scored.result)
    progress(f"writing the report into {out_dir}")
    test = scored.data  # every recipe ran on the same data
    report = write_report(rows, out_dir, X_test=test.X_test, y_test=test.y_test, predictions=predictions)
    for row in rows:
        row["report"] = str(report)
    return rows
