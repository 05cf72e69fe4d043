"""``sweep``: search a recipe's parameters with Ray Tune; the best configuration saved as a spec ``compare`` takes.

Ray, scikit-learn and torch are imported inside the command: ``mnistlab
--help`` should not pay for them.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer
from rich.table import Table

from mnistlab.cli.common import given_file, json_line, mlflow_ui, out, step_progress
from mnistlab.cli.options import TEST_SIZE, test_size_value
from mnistlab.lab.options import RunOptions

__all__ = ["app"]

app = typer.Typer()

SPEC_OUT = typer.Option(
    Path("best.json"), "--out", parser=given_file, metavar="FILE", help="Where to save the best configuration (JSON)."
)


@app.command("sweep")
def sweep_cmd(
    recipe: str = typer.Argument(..., help="Recipe name; see `mnistlab recipes`."),
    params: list[str] = typer.Option(
        ...,
        "--param",
        metavar="NAME=V1,V2",
        help="A parameter of the recipe's estimator and its values (e.g. lr=0.05,0.1; logreg__C=0.1,1); repeat.",
    ),
    samples: int | None = typer.Option(
        None, "--samples", metavar="N", help="Draw N random configurations instead of the whole grid."
    ),
    seeds: int = typer.Option(
        1, "--seeds", metavar="K", help="Run each configuration with K seeds; judge by the mean."
    ),
    dataset: str = typer.Option("mnist", "--dataset", help="mnist, fashion-mnist, digits or a folder of IDX files."),
    split: str = typer.Option("official", "--split", help="official or random (stratified)."),
    test_size: float | None = TEST_SIZE,
    seed: int = typer.Option(42, "--seed", help="Seed for the models, the split, --limit and the held-out part."),
    limit: int | None = typer.Option(None, "--limit", help="Train on a stratified subset of N training images."),
    cluster: str = typer.Option(
        "local",
        "--cluster",
        envvar="RAY_ADDRESS",
        metavar="ADDRESS",
        help="Ray cluster for the trials: host:port, ray://host:port, auto, or local (this machine; the default).",
    ),
    concurrent: int | None = typer.Option(
        None, "--concurrent", metavar="N", help="At most N trials at once (default: one per CPU); 1: repeatable ASHA."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking store (as for compare); experiment mnistlab-sweep."
    ),
    spec_file: Path = SPEC_OUT,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: the trials and the best."),
):
    """Grid or random search (CNNs: early stopping by ASHA on held-out accuracy per epoch); save the best."""
    from mnistlab.lab.sweep import parse_params, sweep  # Ray Tune and scikit-learn: not at start-up

    grid = parse_params(params)
    options = RunOptions(split=split, test_size=test_size_value(test_size), seed=seed, limit=limit, n_jobs=1)
    with step_progress(not as_json) as progress:
        result = sweep(
            recipe,
            grid,
            options,
            samples=samples,
            seeds=seeds,
            dataset=dataset,
            cluster=cluster,
            max_concurrent=concurrent,
            tracking_uri=tracking_uri,
            out=spec_file,
            progress=progress,
        )
    if as_json:
        typer.echo(json_line(result))
        return
    _print(result, recipe, list(grid), dataset=dataset)


def _print(result: dict, recipe: str, names: list[str], *, dataset: str = "mnist") -> None:
    """The trials as a table, best first; the best configuration, where it was saved and recorded, and the
    command that tests it on the data it was tuned on."""
    table = Table(title=f"{recipe}: {len(result['trials'])} trial(s), held-out accuracy (10% of the training set)")
    # "epochs run" beside a swept "epochs": how many of them the trial ran before it ended.
    for col in (*names, "seed", "held-out acc", "epochs run" if "epochs" in names else "epochs", "ended"):
        table.add_column(col, justify="right")
    for t in sorted(result["trials"], key=lambda t: (-t["val_accuracy"], t["seed"])):
        ended = "stopped early" if t["stopped"] else "held-out 100%" if t["val_accuracy"] == 1.0 else "completed"
        values = [str(t["config"][k]) for k in names]
        table.add_row(*values, str(t["seed"]), f"{t['val_accuracy']:.4f}", str(t["epochs"]), ended)
    out.print(table)
    best = result["best"]
    mean = f"mean over {len(best['val_accuracies'])} seeds" if len(best["val_accuracies"]) > 1 else "held-out"
    out.print(f"best: {json.dumps(best['config'])} ({mean} accuracy {best['val_accuracy']:.4f})", soft_wrap=True)
    # markup=False: paths are text (brackets in them were read as styling)
    uri = result["tracking_uri"]
    out.print(
        f"recorded as run {result['run_id']} in {uri} ({mlflow_ui(uri, quoted=True)})", soft_wrap=True, markup=False
    )
    # compare fits MNIST unless told: a configuration tuned on other data was tested on MNIST
    on = "" if dataset == "mnist" else f" --dataset {shlex.quote(dataset)}"
    out.print(
        f"saved {result['spec']}: `mnistlab compare {shlex.quote(str(result['spec']))} {recipe}{on}` tests it",
        soft_wrap=True,
        markup=False,
    )
