"""Hyperparameter sweeps with Ray Tune: a grid or random search over a recipe's parameters, early stopping for CNNs.

Each trial is one configuration fitted on the training set less a stratified
held-out 10% and scored on that held-out part: the test set takes no part in
choosing, so a later ``compare`` of the chosen configuration is still a fair
test. CNN trials report their held-out accuracy after every epoch and ASHA
(asynchronous successive halving) stops those that trail; a classic recipe's
trial reports once. With several seeds each configuration runs once per seed
and is judged by its mean. The best configuration is saved as a spec file
(JSON) that ``compare`` takes like a recipe name.

The dataset goes into Ray's object store once (``tune.with_parameters``);
trials run on the cluster ``connect`` joined (``local``: this machine). Ray
Tune is imported only here, and this module only when a sweep runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from mnistlab._atomic import atomic_write_bytes
from mnistlab.errors import ParameterError
from mnistlab.lab.cluster import connect
from mnistlab.lab.fitting import open_dataset, split_for
from mnistlab.lab.options import MAX_SEED, Progress, RunOptions, check_writable_file, noop
from mnistlab.models.recipes import get_recipe

__all__ = ["parse_params", "sweep", "MAX_TRIALS", "HELD_OUT"]

MAX_TRIALS = 1000  # a grid or --samples above this is refused before anything starts
HELD_OUT = 0.1  # share of the training set each trial is scored on


def parse_params(texts: list[str]) -> dict[str, list]:
    """``["lr=0.05,0.1", "epochs=2,4"]`` as ``{"lr": [0.05, 0.1], "epochs": [2, 4]}`` (numbers, booleans, text)."""
    params: dict[str, list] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ParameterError("param", f"{{param}} {text!r} is not NAME=V1,V2,...; e.g. lr=0.05,0.1.")
        if name in params:
            raise ParameterError("param", f"{{param}} names {name!r} twice; give all its values in one.")
        params[name] = [_value(v.strip()) for v in values.split(",")]
    if not params:
        raise ParameterError("param", "No {param} given; name at least one, e.g. lr=0.05,0.1.")
    return params


def _value(text: str):
    try:
        return json.loads(text.lower() if text.lower() in ("true", "false", "null") else text)
    except json.JSONDecodeError:
        return text


def sweep(  # long: check, plan, run the trials, pick, save; one reading order
    recipe_name: str,
    params: dict[str, list],
    options: RunOptions,
    *,
    samples: int | None = None,
    seeds: int = 1,
    dataset: str = "mnist",
    cluster: str = "local",
    out: Path | str = "best.json",
    progress: Progress | None = None,
) -> dict:
    """Search ``params`` for ``recipe_name``: the grid, or ``samples`` configurations drawn from it, each with ``seeds``.

    A trial is one (configuration, seed). Returns ``{"best", "configs",
    "trials", "spec"}``: each trial has its ``config``, ``seed``,
    ``val_accuracy`` (the last reported), ``epochs`` reported and ``stopped``
    (ended early by ASHA); each configuration its mean held-out accuracy over
    the seeds. The best configuration is the one with the highest mean.
    """
    progress = progress or noop
    recipe = get_recipe(recipe_name)
    known = recipe.build(options.seed, 1).get_params()
    for name in params:
        if name not in known:
            steps = sorted(k for k in known if k.count("__") == 1)  # a pipeline's step__param names
            near = ", ".join((steps or sorted(known))[:8])
            raise ParameterError("param", f"{recipe_name} has no parameter {name!r}; it takes e.g. {near}.")
    configs = _configs(params, samples, options.seed)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_TRIALS // len(configs):
        raise ParameterError("seeds", f"{{param}} must be from 1 to {MAX_TRIALS // len(configs)} for this sweep.")
    if options.seed + seeds - 1 > MAX_SEED:  # numpy's and scikit-learn's largest seed
        raise ParameterError(
            "seeds", f"{{param}} {seeds} from seed {options.seed} runs past {MAX_SEED}, the largest seed; start lower."
        )
    out = _writable_spec(Path(out))
    seed_list = [options.seed + k for k in range(seeds)]
    default_epochs = known.get("epochs", 1) if recipe.family == "cnn" else 1
    max_epochs = max(int(c.get("epochs", default_epochs)) for c in configs)
    progress("loading and verifying the data")
    name, bunch = open_dataset(dataset)
    for seed in seed_list:  # a --limit the dataset cannot give fails before any trial
        split_for(name, bunch, dataclasses.replace(options, seed=seed))
    # Tune's progress tables would bury the one-line steps; the trials' rows come back in the result.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with connect(cluster):
        from ray import tune  # Ray Tune: only when a sweep runs
        from ray.tune.schedulers import ASHAScheduler

        trainable = tune.with_parameters(_trial, recipe_name=recipe_name, options=options, dataset=name, bunch=bunch)
        scheduler = ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=2) if max_epochs > 1 else None
        progress(f"running {len(configs) * seeds} trial(s) of {recipe_name}")
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={"params": tune.grid_search(configs), "seed": tune.grid_search(seed_list)},
                tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=scheduler),
                run_config=tune.RunConfig(storage_path=storage, name="sweep", verbose=0),
            )
            found = tuner.fit()
            trials = [_trial_row(found[i], default_epochs) for i in range(len(found))]
    if any(t["error"] for t in trials):
        bad = next(t for t in trials if t["error"])
        raise ParameterError("param", f"The trial {bad['config']} failed ({bad['error']}); check the values.")
    summary = [_config_row(c, [t for t in trials if t["config"] == c]) for c in configs]
    best = max(summary, key=lambda c: (c["val_accuracy"], -c["stopped"]))
    spec = {
        "recipe": recipe_name,
        "name": f"{recipe_name}-tuned",
        "params": best["config"],
        "val_accuracy": best["val_accuracy"],
        "seeds": seed_list,
        "data_sha256": bunch.details["data_sha256"],
        **{k: getattr(options, k) for k in ("split", "limit")},
    }
    atomic_write_bytes(out, (json.dumps(spec, indent=2) + "\n").encode())
    return {"best": best, "configs": summary, "trials": trials, "spec": str(out)}


def _configs(params: dict[str, list], samples: int | None, seed: int) -> list[dict]:
    """The grid's configurations, or ``samples`` of them drawn without repeats (seeded: the same draw each time)."""
    grid = [dict(zip(params, values)) for values in itertools.product(*params.values())]
    if samples is None:
        if len(grid) > MAX_TRIALS:
            raise ParameterError(
                "param", f"The grid of {{param}} values has {len(grid)} points, over {MAX_TRIALS}; use --samples N."
            )
        return grid
    if not 1 <= samples <= MAX_TRIALS:
        raise ParameterError("samples", f"{{param}} must be from 1 to {MAX_TRIALS} trials, got {samples}.")
    picked = np.random.default_rng(seed).permutation(len(grid))[:samples]  # all of a grid smaller than samples
    return [grid[i] for i in sorted(picked)]


def _writable_spec(out: Path) -> Path:
    """``out``, a .json path in a folder checked writable now rather than after the trials; nothing is created."""
    if out.suffix != ".json":
        raise ParameterError("out_dir", f"{{param}} {out} must end in .json: it is a spec file compare takes.")
    return check_writable_file(out, "out_dir")


def _config_row(config: dict, trials: list[dict]) -> dict:
    """One configuration over its seeds: the mean held-out accuracy, each seed's, how many ASHA stopped."""
    accuracies = [t["val_accuracy"] for t in sorted(trials, key=lambda t: t["seed"])]
    return {
        "config": config,
        "val_accuracy": float(np.mean(accuracies)),
        "val_accuracies": accuracies,
        "stopped": sum(t["stopped"] for t in trials),
    }


def _trial(config: dict, *, recipe_name: str, options: RunOptions, dataset: str, bunch) -> None:
    """One configuration and seed, on a worker: fit on 90% of the training set, report held-out accuracy.

    CNNs report after every epoch (ASHA decides from those), others once.
    """
    from ray import tune
    from sklearn.model_selection import train_test_split

    recipe = get_recipe(recipe_name)
    options = dataclasses.replace(options, seed=config["seed"])
    d = split_for(dataset, bunch, options)
    X_fit, X_val, y_fit, y_val = train_test_split(
        d.X_train, d.y_train, test_size=HELD_OUT, stratify=d.y_train, random_state=options.seed
    )
    estimator = recipe.build(options.seed, 1).set_params(**config["params"])
    if recipe.family == "cnn":
        # The loop scores a held-out part every epoch when a target is set; 1.0 never stops it early.
        estimator.set_params(target=1.0, validation_fraction=HELD_OUT)
        estimator.set_params(callback=lambda row: tune.report({"val_accuracy": row["val_accuracy"]}))
        estimator.fit(d.X_train, d.y_train)
        return
    estimator.fit(X_fit, y_fit)
    tune.report({"val_accuracy": float(np.mean(estimator.predict(X_val) == y_val))})


def _trial_row(result, default_epochs: int) -> dict:
    """One trial as reported: configuration, seed, last held-out accuracy, epochs run, whether ASHA stopped it."""
    metrics = result.metrics or {}
    epochs = int(metrics.get("training_iteration", 0))
    config = dict(result.config["params"])
    return {
        "config": config,
        "seed": int(result.config["seed"]),
        "val_accuracy": float(metrics.get("val_accuracy", float("nan"))),
        "epochs": epochs,
        "stopped": result.error is None and epochs < int(config.get("epochs", default_epochs)),
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:300],
    }
