"""Hyperparameter sweeps with Ray Tune: a grid or random search over a recipe's parameters, early stopping for CNNs.

Each trial is one configuration fitted on the training set less a held-out
10% (stratified for a classic recipe; a CNN's estimator holds out a random
10% of its own) and scored on that held-out part: the test set takes no part in
choosing, so a later ``compare`` of the chosen configuration is still a fair
test. CNN trials report their held-out accuracy after every epoch and ASHA
(asynchronous successive halving) stops those that trail; a classic recipe's
trial reports once. With several seeds each configuration runs once per seed
and is judged by its mean. The best configuration is saved as a spec file
(JSON) that ``compare`` takes like a recipe name. The sweep is tracked in
MLflow (``tracking``) as one run with a nested run per trial, written by the
driver once the trials have returned, so a trial Ray reruns is one run.

The dataset goes into Ray's object store once (``tune.with_parameters``);
trials run on the cluster ``connect`` joined (``local``: this machine). Ray
Tune is imported only here, and this module only when a sweep runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mnistlab.errors import ClusterError, ParameterError, TrackingError
from mnistlab.lab.cluster import connect
from mnistlab.lab.fitting import open_dataset, split_for
from mnistlab.lab.options import MAX_SEED, Progress, RunOptions, check_writable_file, noop
from mnistlab.lab.record import package_versions
from mnistlab.lab.space import MAX_TRIALS, parse_params, write_spec
from mnistlab.lab.space import configs as _configs
from mnistlab.lab.specs import check_steps, check_values
from mnistlab.lab.tracking import SWEEP_EXPERIMENT, Tracker, resolve_uri
from mnistlab.models.recipes import get_recipe

__all__ = ["parse_params", "sweep", "MAX_TRIALS", "HELD_OUT"]

HELD_OUT = 0.1  # share of the training set each trial is scored on
# What the trials were scored on, in the spec, the sweep's run and its result (see _chosen_on).
_CHOSEN_ON = ("seeds", "dataset", "data_sha256", "data_dir", "split", "test_size", "limit", "held_out")


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """``logger``'s records below CRITICAL dropped for the block."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def sweep(  # long: check, plan, run the trials, pick, save, record; one reading order
    recipe_name: str,
    params: dict[str, list],
    options: RunOptions,
    *,
    samples: int | None = None,
    seeds: int = 1,
    dataset: str = "mnist",
    cluster: str = "local",
    max_concurrent: int | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
    out: Path | str = "best.json",
    progress: Progress | None = None,
) -> dict:
    """Search ``params`` for ``recipe_name``: the grid, or ``samples`` configurations drawn from it, each with ``seeds``.

    A trial is one (configuration, seed). Returns ``{"best", "configs",
    "trials", "spec", "run_id", "tracking_uri"}``: each trial has its
    ``config``, ``seed``, ``val_accuracy`` (the last reported), ``history``
    (held-out accuracy after each epoch), ``epochs`` reported, ``stopped``
    (ended early by ASHA; a CNN that gets every held-out image right ends
    there too, not stopped) and its tracked ``run_id``; each configuration its
    mean held-out accuracy over the seeds. The best configuration is the one
    with the highest mean. Trials start in grid order (configuration, then
    seed), at most ``max_concurrent`` at once (None: as many as the cluster
    has CPUs). The sweep is recorded in the tracking store (``tracking_uri``,
    as for ``compare``) as one run with a nested run per trial.
    """
    progress = progress or noop
    recipe = get_recipe(recipe_name)
    known = recipe.build(options.seed, 1).get_params()
    for name in params:
        if name not in known:
            steps = sorted(k for k in known if k.count("__") == 1)  # a pipeline's step__param names
            near = ", ".join((steps or sorted(known))[:8])
            raise ParameterError("param", f"{recipe_name} has no parameter {name!r}; it takes e.g. {near}.")
        _check_not_set_by_trials(recipe.family, name)
        for value in params[name]:  # a step replaced by a string or a number: refused before Ray starts
            check_steps("--param", recipe_name, {name: value}, known)
    configs = _configs(params, samples, options.seed)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_TRIALS // len(configs):
        raise ParameterError("seeds", f"{{param}} must be from 1 to {MAX_TRIALS // len(configs)} for this sweep.")
    if options.seed + seeds - 1 > MAX_SEED:  # numpy's and scikit-learn's largest seed
        raise ParameterError(
            "seeds", f"{{param}} {seeds} from seed {options.seed} runs past {MAX_SEED}, the largest seed; start lower."
        )
    whole = isinstance(max_concurrent, int) and not isinstance(max_concurrent, bool)
    if max_concurrent is not None and not (whole and 1 <= max_concurrent <= MAX_TRIALS):
        raise ParameterError(
            "max_concurrent", f"{{param}} must be a whole number from 1 to {MAX_TRIALS}, got {max_concurrent!r}."
        )
    out = _writable_spec(out)
    resolve_uri(tracking_uri)  # an empty one is refused before the data is read
    seed_list = [options.seed + k for k in range(seeds)]
    default_epochs = known.get("epochs", 1) if recipe.family == "cnn" else 1
    bad = [e for e in params.get("epochs", []) if isinstance(e, bool) or not isinstance(e, int) or e < 1]
    if bad:  # the scheduler's longest trial is counted in epochs
        raise ParameterError("param", f"{{param}} epochs must be whole numbers of at least 1, got {bad[0]!r}.")
    for name, values in params.items():  # scikit-learn checks a value only in fit: once every other trial ran
        for value in values:
            _check_value(recipe, name, value, options.seed)
    if recipe.family == "cnn":
        _check_one_net(recipe_name, known, params)
    max_epochs = max(int(c.get("epochs", default_epochs)) for c in configs)
    progress("loading and verifying the data")
    name, bunch = open_dataset(dataset)
    # A --limit the dataset cannot give fails before any trial; one split in memory at a time (a random split is
    # a copy of the data).
    first = split_for(name, bunch, dataclasses.replace(options, seed=seed_list[0]))
    if recipe.family != "cnn":  # a CNN holds out its part unstratified, in the estimator
        _check_held_out(first.y_train, options.limit)
    chosen_on = _chosen_on(first, options, seed_list)
    for seed in seed_list[1:]:
        split_for(name, bunch, dataclasses.replace(options, seed=seed))
    progress("opening the tracking store")
    tracker = Tracker(tracking_uri, SWEEP_EXPERIMENT)
    # Tune's progress tables would bury the one-line steps; the trials' rows come back in the result.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Ctrl+C stops the sweep: Tune's own handler would end the trials early and return as if the sweep were done.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    with connect(cluster):
        from ray import tune  # Ray Tune: only when a sweep runs
        from ray.tune.schedulers import ASHAScheduler

        trainable = tune.with_parameters(_trial, recipe_name=recipe_name, options=options, dataset=name, bunch=bunch)
        scheduler = ASHAScheduler(max_t=max_epochs, grace_period=1, reduction_factor=2) if max_epochs > 1 else None
        progress(f"running {len(configs) * seeds} trial(s) of {recipe_name}")
        # One grid over (configuration, seed) pairs: Tune creates trials in this order.
        units = [{"params": c, "seed": s} for c in configs for s in seed_list]
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={"unit": tune.grid_search(units)},
                tune_config=tune.TuneConfig(
                    metric="val_accuracy",
                    mode="max",
                    scheduler=scheduler,
                    max_concurrent_trials=max_concurrent,
                    # A trial runs in a worker an earlier trial finished with: a new process per trial spent
                    # seconds importing torch (the ASHA test's 4 trials 34 -> 17 s). Each fit seeds itself.
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(storage_path=storage, name="sweep", verbose=0),
            )
            with _quiet("ray.tune"):  # a failed trial's traceback: its error is said in one sentence below
                found = tuner.fit()
            trials = [_trial_row(found[i], default_epochs) for i in range(len(found))]  # read before storage goes
    if len(trials) < len(units):  # a sweep stopped before every trial ran: nothing to pick from, nothing written
        raise ClusterError(
            f"Only {len(trials)} of {len(units)} trials ran (the sweep was stopped); nothing was written or "
            "recorded; run it again."
        )
    trials.sort(key=lambda t: units.index({"params": t["config"], "seed": t["seed"]}))
    failed = next((t for t in trials if t["error"]), None)
    summary = [_config_row(c, [t for t in trials if t["config"] == c]) for c in configs]
    best = None if failed else max(summary, key=lambda c: (c["val_accuracy"], -c["stopped"]))
    spec = {
        "recipe": recipe_name,
        "name": f"{recipe_name}-tuned",
        "params": best["config"] if best else None,
        "val_accuracy": best["val_accuracy"] if best else None,
        **chosen_on,
    }
    if best is not None:
        write_spec(out, spec)
    progress(f"recording {len(trials)} trial(s) in {tracker.shown}")
    plan = {"grid": params, "samples": samples, "dataset": name, "max_concurrent": max_concurrent}
    run_id = _record(tracker, spec, plan, trials, best, str(out) if best else None)
    if failed is not None:
        raise ParameterError("param", f"The trial {failed['config']} failed ({failed['error']}); check the values.")
    return {
        "best": best,
        "configs": summary,
        "trials": trials,
        "spec": str(out),
        "run_id": run_id,
        "tracking_uri": tracker.shown,
        **chosen_on,
        "versions": package_versions("ray"),
    }


def _chosen_on(d, options: RunOptions, seeds: list[int]) -> dict:
    """What the held-out accuracies were measured on, recorded with the spec, the run and the result: the data
    (a folder's path too: its name alone does not find it again), the split that cut it, the seeds and the
    held-out share. ``d`` is the first seed's split (``split_for``)."""
    return {
        "seeds": seeds,
        "dataset": d.dataset,
        "data_sha256": d.sha256,
        **({"data_dir": d.data_dir} if d.data_dir is not None else {}),
        **{k: getattr(options, k) for k in ("split", "test_size", "limit")},
        "held_out": HELD_OUT,
    }


def _check_not_set_by_trials(family: str, name: str) -> None:
    """Refuse a parameter each trial sets itself (``_trial``): swept, its values were replaced, every trial ran
    alike, and the spec saved one of them, never measured, for ``compare`` to fit with."""
    if name == "random_state" or name.endswith("__random_state"):
        raise ParameterError(
            "param", f"{{param}} {name} is set by each trial's seed; use --seed and --seeds to sweep seeds."
        )
    if family == "cnn" and name in ("target", "validation_fraction", "callback"):
        raise ParameterError(
            "param",
            f"{{param}} {name} is set by each trial itself (every epoch run, scored on a held-out {HELD_OUT:.0%} of "
            "the training set); drop it.",
        )


def _check_one_net(recipe_name: str, known: dict, params: dict[str, list]) -> None:
    """Refuse a CNN of several members: a trial reports one net's held-out accuracy after each of its epochs, so an
    ensemble's trial reported each member's in turn, and ASHA ended it after the first member's, "completed"."""
    swept = "n_members" in params
    for n in params.get("n_members", [known.get("n_members", 1)]):
        if n == 1:
            continue
        if swept:
            raise ParameterError(
                "param", f"{{param}} n_members={n} would score an ensemble of {n} nets as its first net; sweep one net."
            )
        raise ParameterError(
            "param",
            f"{recipe_name} averages {n} nets, which a trial would score as its first net; sweep the nets' own "
            "recipe (cnn-best), or add --param n_members=1.",
        )


def _check_value(recipe, name: str, value, seed: int) -> None:
    """Refuse a value the recipe's estimator cannot take, before Ray starts and the other trials run."""
    try:
        check_values(recipe.build(seed, 1).set_params(**{name: value}))
    except (ValueError, TypeError) as exc:
        raise ParameterError(
            "param",
            f"{{param}} {name}={json.dumps(value)} is a value {recipe.name} cannot take ({exc}); fix or drop it.",
        ) from None


def _writable_spec(out: Path | str) -> Path:
    """``out``, a .json path in a folder checked writable now rather than after the trials; nothing is created."""
    path = check_writable_file(out, "out_dir")  # given as it is: Path() would drop a trailing / that names a folder
    if path.suffix != ".json":
        raise ParameterError("out_dir", f"{{param}} {path} must end in .json: it is a spec file compare takes.")
    return path


def _config_row(config: dict, trials: list[dict]) -> dict:
    """One configuration over its seeds: the mean held-out accuracy, each seed's, how many ASHA stopped."""
    accuracies = [t["val_accuracy"] for t in sorted(trials, key=lambda t: t["seed"])]
    return {
        "config": config,
        "val_accuracy": float(np.mean(accuracies)),
        "val_accuracies": accuracies,
        "stopped": sum(t["stopped"] for t in trials),
    }


def _check_held_out(y_train: np.ndarray, limit: int | None) -> None:
    """Refuse a training set whose stratified held-out part (``_trial``'s) cannot hold an image of every class:
    scikit-learn refused it in every trial, after Ray had started, as a failure of the trial's values."""
    classes, n = len(np.unique(y_train)), len(y_train)
    held = math.ceil(HELD_OUT * n)  # as train_test_split counts its test part
    if held >= classes:
        return
    need = next(k for k in itertools.count(n) if math.ceil(HELD_OUT * k) >= classes)
    why = f"leaves {held} training images for the held-out {HELD_OUT:.0%} each trial is scored on, fewer than the"
    if limit is not None:
        raise ParameterError("limit", f"{{param}} {limit} {why} {classes} classes; give {{param}} {need} or more.")
    raise ParameterError("dataset", f"The training set of {n} images {why} {classes} classes; use a larger dataset.")


def _trial(config: dict, *, recipe_name: str, options: RunOptions, dataset: str, bunch) -> None:
    """One configuration and seed, on a worker: fit on 90% of the training set, report held-out accuracy.

    CNNs report after every epoch (ASHA decides from those), others once.
    """
    from ray import tune
    from sklearn.model_selection import train_test_split

    recipe = get_recipe(recipe_name)
    config = config["unit"]
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
    """One trial as reported: configuration, seed, held-out accuracy per epoch, whether ASHA stopped it."""
    metrics = result.metrics or {}
    epochs = int(metrics.get("training_iteration", 0))
    unit = result.config["unit"]
    config = dict(unit["params"])
    accuracy = float(metrics.get("val_accuracy", float("nan")))
    return {
        "config": config,
        "seed": int(unit["seed"]),
        "val_accuracy": accuracy,
        "history": _history(result.metrics_dataframe),
        "epochs": epochs,
        "stopped": result.error is None and epochs < int(config.get("epochs", default_epochs)) and accuracy < 1.0,
        "error": None if result.error is None else str(result.error).strip().splitlines()[-1][:300],
    }


def _history(frame) -> list[float]:
    """Held-out accuracy after each reported epoch, from a trial's table of results (one row per report)."""
    if frame is None or "val_accuracy" not in frame or "training_iteration" not in frame:
        return []
    rows = frame.dropna(subset=["val_accuracy"]).drop_duplicates("training_iteration", keep="last")
    return [float(v) for v in rows.sort_values("training_iteration")["val_accuracy"]]


def _record(tracker: Tracker, spec: dict, plan: dict, trials: list[dict], best: dict | None, spec_path) -> str:
    """The sweep as one run and each trial as a run nested in it, once, from the driver; the sweep's run id.

    Recording here rather than in the trials means a trial Ray reruns is still
    one run, and workers never need the store.
    """
    versions = {f"version.{k}": v for k, v in package_versions("ray").items()}
    # Every trial's run names its data and versions as the sweep's does: trials are searched across sweeps too.
    shared = {**{k: spec[k] for k in ("data_sha256", "data_dir") if k in spec}, **versions}
    parent = tracker.start_run(
        f"sweep {spec['recipe']} {plan['dataset']}",
        tags={"kind": "sweep", "model": spec["recipe"], "dataset": plan["dataset"], "spec": spec_path},
        params={
            "recipe": spec["recipe"],
            **plan,
            **{k: spec[k] for k in _CHOSEN_ON if k in spec},
            "spec": spec_path,
            **{f"best.{k}": v for k, v in (best["config"] if best else {}).items()},
            **versions,
        },
    )
    try:
        for t in trials:
            t["run_id"] = tracker.start_run(
                " ".join(f"{k}={v}" for k, v in t["config"].items()) + f" seed {t['seed']}",
                tags={"kind": "trial", "model": spec["recipe"], "dataset": plan["dataset"], "seed": t["seed"]}
                | {"stopped": t["stopped"], **({"error": t["error"]} if t["error"] else {})},
                params={**t["config"], "seed": t["seed"], **shared},
                parent=parent,
            )
            tracker.end_run(
                t["run_id"],
                metrics={"epochs": t["epochs"], "stopped": int(t["stopped"])},
                series={"val_accuracy": t["history"]},
                failed=t["error"] is not None,
            )
    except BaseException as exc:  # a trial's run that could not be written: the sweep's run ends, not stays RUNNING
        with contextlib.suppress(TrackingError):
            tracker.end_run(parent, metrics={}, failed=True, killed=isinstance(exc, KeyboardInterrupt))
        raise
    tracker.end_run(parent, metrics={"best_val_accuracy": best["val_accuracy"] if best else None}, failed=not best)
    return parent
