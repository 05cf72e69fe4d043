"""Compare classifiers fairly: every model, every seed, every dataset; paired tests; tracked runs; a report.

One unit of work is one (model, dataset, seed) fit, recorded once as a
tracked run (``tracking``). A unit whose recorded run still verifies is
reused instead of fitted (``reuse``). Per dataset the accuracies over seeds
become a mean, a standard deviation and a 95% interval, and every model is
tested against the best one (and a baseline) with a paired test (McNemar's
exact test for one seed; over several, the mean difference with its seed and
test-sample uncertainty), Holm-corrected (``stats``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import statsmodels

from mnistlab.errors import ParameterError, TrackingError
from mnistlab.lab.cluster import check_task_cpus, cluster_address, connect, run_units_on_cluster
from mnistlab.lab.fitting import open_dataset, split_for
from mnistlab.lab.folders import check_outputs, folder_made, install_model, model_dir_for
from mnistlab.lab.options import (
    MAX_SEED,
    Progress,
    RunOptions,
    callback,
    plain_number,
    run_options,
)
from mnistlab.lab.record import package_versions
from mnistlab.lab.specs import Contender, check_for_data, resolve_specs
from mnistlab.lab.stats import accuracy_summary, comparisons, significance_matrix
from mnistlab.lab.tracking import Tracker, resolve_uri
from mnistlab.lab.train import TrainTest
from mnistlab.lab.units import Unit, numbered, run_unit
from mnistlab.models.files import default_model_dir
from mnistlab.models.recipes import DEFAULT_LINEUP

__all__ = ["compare", "run_comparison", "run_unit", "MAX_SEEDS"]

MAX_SEEDS = 100


def compare(
    specs=None,
    *,
    datasets=("mnist",),
    seeds: int = 1,
    baseline: str | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    update_models: bool = False,
    out_dir="report",
    progress: Progress | None = None,
    on_result: Callable[[dict], None] | None = None,
    cluster: str | None = None,
    **settings,
) -> dict:
    """Fit (or reuse) every model with ``seeds`` seeds on each of ``datasets``, test them, write ``out_dir/index.html``.

    ``specs`` are recipe names, ``"module:callable"`` / ``"file.py:callable"``
    strings, callables or unfitted classifiers (``lab.specs``); default
    ``DEFAULT_LINEUP``. ``datasets`` are names or IDX folders. Seeds run from
    ``seed`` up; with ``split="random"`` each seed draws its own stratified
    split. Models are saved under ``out_dir/models`` (``update_models``: mnistlab's
    recipes on MNIST with the first seed go to their default model directories).
    ``settings`` are ``RunOptions`` fields (``cv``, ``split``, ``test_size``,
    ``seed``, ``limit``, ``n_jobs``). ``retrain`` fits even when a recorded run
    could be reused. ``cluster`` runs the fits on a Ray cluster: its address,
    ``local`` for a runtime on this machine; default ``$RAY_ADDRESS``, else here
    (``lab.cluster``). Returns ``{"results": [...], "comparisons": [...], ...}``.
    One spec or one dataset may be given alone, without a list.
    """
    if isinstance(specs, (str, os.PathLike)) or callable(specs) or hasattr(specs, "fit") or not _many(specs):
        specs = [specs]  # one model, not the characters of its name (and a value of no kind, refused as a model)
    elif specs is not None:
        specs = list(specs)
        if not specs:
            raise ParameterError(
                "specs", "{param} is empty; name at least one model, or pass None for the default line-up."
            )
    for param, flag in (("retrain", retrain), ("update_models", update_models)):
        if not isinstance(flag, bool | np.bool_):  # "no" is truthy: it wrote into the default model folders
            raise ParameterError(param, f"{{param}} must be True or False, got {flag!r}.")
    if isinstance(datasets, (str, os.PathLike)) or not _many(datasets):
        datasets = [datasets]
    return run_comparison(
        specs,
        run_options(**settings),
        datasets=datasets,
        seeds=seeds,
        baseline=baseline,
        tracking_uri=tracking_uri,
        retrain=retrain,
        update_models=update_models,
        out_dir=out_dir,
        progress=progress,
        on_result=on_result,
        cluster=cluster,
    )


def _many(value) -> bool:
    return value is None or isinstance(value, Iterable)


def run_comparison(  # long: the whole run reads top to bottom: check, load, fit or reuse, test, report
    specs,
    options: RunOptions,
    *,
    datasets=("mnist",),
    seeds: int = 1,
    baseline: str | None = None,
    tracking_uri: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    update_models: bool = False,
    out_dir="report",
    progress: Progress | None = None,
    on_result: Callable[[dict], None] | None = None,
    cluster: str | None = None,
) -> dict:
    """``compare`` with its run settings in one ``RunOptions`` (what the CLI calls).

    ``cluster`` (a Ray address, ``local``, else ``$RAY_ADDRESS``) runs the fits
    as tasks on a Ray cluster (``lab.cluster``); the same runs are recorded.
    """
    from mnistlab.lab.report import write_bench_report  # matplotlib: ~0.8 s to import, only once a comparison runs

    progress, on_result = callback(progress), callback(on_result, "on_result")
    seeds = plain_number(seeds)  # numpy's 3 as 3
    contenders = resolve_specs(list(specs) if specs else list(DEFAULT_LINEUP))
    names = [c.name for c in contenders]
    baseline = _baseline_name(baseline, contenders)
    _check(seeds, baseline, names, datasets, options)
    resolve_uri(tracking_uri)  # an empty one is refused before the data is read
    out = check_outputs(out_dir, contenders, update_models)  # an empty one refused, not made the current folder
    address = cluster_address(cluster)
    with contextlib.ExitStack() as stack:
        if address is not None:  # an address that does not answer fails here, before any data is loaded
            progress(f"joining the Ray cluster at {address}")
            stack.enter_context(connect(address))
            check_task_cpus(options.n_jobs)
        progress("loading and verifying the data")
        opened = [open_dataset(str(d)) for d in datasets]
        _check_distinct(opened, datasets)
        for _, bunch in opened:
            for contender in contenders:
                check_for_data(contender, len(np.unique(bunch.target)), bunch.images.shape[1:])
        seed_list = [options.seed + k for k in range(seeds)]
        bunches = dict(opened)
        truth: dict[tuple[str, int], np.ndarray] = {}

        @functools.lru_cache(maxsize=1)  # units come seed by seed: one split in memory at a time
        def split_of(name: str, seed: int) -> TrainTest:
            d = split_for(name, bunches[name], dataclasses.replace(options, seed=seed))
            _check_folds(contenders, options, d)  # scikit-learn's traceback, mid-run, otherwise
            truth[name, seed] = d.y_test
            return d

        # A --limit or --test-size that a dataset cannot give fails here, before any fit; what each dataset is
        # (checksum, folder) is recorded with the comparison, as with each of its fits.
        data = [_data_record(split_of(name, seed_list[0])) for name, _ in opened]
        stack.enter_context(folder_made(out))  # checked writable above; made once the settings are known to run
        units = [
            Unit(
                contender,
                dataclasses.replace(options, seed=seed),
                name,
                model_dir_for(
                    out, contender, name, seed, seed_list[0], update_models, published=bunches[name].details["verified"]
                ),
            )
            for name, _ in opened
            for seed in seed_list
            for contender in contenders
        ]
        progress("opening the tracking store")
        tracker = Tracker(tracking_uri)
        group = stack.enter_context(_grouped(tracker, names, data, seed_list, options))
        done: dict[int, tuple[dict, np.ndarray]] = {}
        shipped: dict | None = None  # on a cluster: how many tasks ran and the bytes put into the object store

        def finished(i: int, row: dict, y_pred: np.ndarray) -> None:
            unit = units[i]
            if update_models and row.get("reused") and unit.model_dir == default_model_dir(unit.contender.name):
                install_model(Path(row["model_dir"]), unit.model_dir)  # a reused model, copied where it was asked for
            done[i] = (row, y_pred)
            on_result(row)

        if address is not None:
            shipped = run_units_on_cluster(units, bunches, split_of, tracker, retrain, progress, finished, group.run_id)
        else:
            for i, u in enumerate(units):
                d = split_of(u.dataset, u.options.seed)
                steps = numbered(progress, i, len(units))
                finished(i, *run_unit(u.contender, u.options, d, tracker, u.model_dir, retrain, steps, group.run_id))
        sections = []
        for name, _ in opened:
            mine = [(unit, *done[i]) for i, unit in enumerate(units) if unit.dataset == name]
            rows = {m: [row for unit, row, _ in mine if unit.contender.name == m] for m in names}
            preds = {m: [y for unit, _, y in mine if unit.contender.name == m] for m in names}
            first = split_for(name, bunches[name], dataclasses.replace(options, seed=seed_list[0]))  # for the report
            y_tests = [truth[name, seed] for seed in seed_list]
            # A random split draws each seed's test set anew from all of the dataset's images: a sample of digits
            # at large, as the official test set is (stats.paired_test).
            pool = len(bunches[name].target) if options.split == "random" else None
            sections.append(_section(name, names, rows, preds, y_tests, first, baseline, pool))
        progress(f"writing the report into {out}")
        report = write_bench_report(sections, out, group.settings)
        group.summary = {
            "results": [r for s in sections for r in s["results"]],
            "comparisons": [c for s in sections for c in s["comparisons"]],
            "runs": [row for s in sections for rows in s["rows"].values() for row in rows],
            "report": str(report),
            "tracking_uri": tracker.shown,
            "cluster": shipped,
            **group.settings,  # seeds, split, limit..., each dataset's checksum, the package versions
        }
    return group.summary


def _data_record(d: TrainTest) -> dict:
    """What a comparison records of one dataset: its name, checksum and, for a folder, where it is."""
    return {"dataset": d.dataset, "data_sha256": d.sha256, **({"data_dir": d.data_dir} if d.data_dir else {})}


@dataclasses.dataclass
class _Group:
    run_id: str  # the comparison's parent run
    settings: dict  # what it ran with: seeds, split, limit..., data (each dataset's checksum), versions
    summary: dict = dataclasses.field(default_factory=dict)  # what compare returns, once it is all done


@contextlib.contextmanager
def _grouped(tracker, names: list[str], data: list[dict], seeds: list[int], options: RunOptions) -> Iterator[_Group]:
    """The comparison's parent run: the fits it makes are nested under it. Finished with every model's mean
    accuracy and ``comparison.json`` (the results, the tests and every run used, reused ones too); failed if the
    comparison stops."""
    datasets = [d["dataset"] for d in data]
    seed_text = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    settings = {"seeds": seeds, **{k: getattr(options, k) for k in ("split", "test_size", "limit", "cv")}}
    # Its own record, not only its fits': a comparison whose fits were all reused from older runs still says
    # which data and which package versions its verdicts came from (statsmodels' too: its tests give the p-values).
    settings.update(data=data, versions={**package_versions(), "statsmodels": statsmodels.__version__})
    group = _Group(
        tracker.start_run(
            f"compare {', '.join(names)} on {', '.join(datasets)}, seeds {seed_text}",
            tags={
                "kind": "comparison",
                "models": ", ".join(names),
                "datasets": ", ".join(datasets),
                "seeds": seed_text,
            },
            params={**_group_params(settings), "models": names, "datasets": datasets},
        ),
        settings,
    )
    try:
        yield group
    except BaseException as exc:
        with contextlib.suppress(TrackingError):  # a store that failed: the error that stopped the comparison is said
            tracker.end_run(group.run_id, metrics={}, failed=True, killed=isinstance(exc, KeyboardInterrupt))
        raise
    results = group.summary["results"]
    metrics = {_metric_key(r["model"], r["dataset"]): r["test_accuracy_mean"] for r in results}
    record = {k: group.summary[k] for k in ("results", "comparisons")} | settings
    record["runs"] = [
        {k: row.get(k) for k in ("run_id", "model", "dataset", "seed", "reused")} for row in group.summary["runs"]
    ]
    tracker.end_run(group.run_id, metrics=metrics, artifacts={"comparison.json": json.dumps(record, indent=2).encode()})


def _group_params(settings: dict) -> dict:
    """The comparison run's parameters: its settings, each dataset's checksum (and folder) as
    ``data_sha256/DATASET`` (``data_dir/DATASET``), and the versions as ``version.PACKAGE``, as its fits name them."""
    params: dict = {k: v for k, v in settings.items() if k not in ("data", "versions")}
    for d in settings["data"]:
        params.update({(k, d["dataset"]): d[k] for k in ("data_sha256", "data_dir") if k in d})
    return params | {f"version.{k}": v for k, v in settings["versions"].items()}


def _metric_key(model: str, dataset: str) -> tuple[str, str, str]:
    """``test_accuracy/MODEL/DATASET``, as the tracker names it in a key MLflow takes (``tracking.mlflow_key``)."""
    return ("test_accuracy", model, dataset)


def _check_folds(contenders: list[Contender], options: RunOptions, d: TrainTest) -> None:
    """Refuse a model's folds (--cv, or its recipe's own) beyond the images of the training set's rarest class, and
    a training set (or fold), or images, smaller than its principal components."""
    pixels = int(np.prod(d.X_train.shape[1:]))
    for contender in contenders:
        own = options.for_recipe(contender.recipe)
        own.check_cv(d.y_train, contender.name if options.cv is None else None)
        own.check_fit_sizes(contender.recipe, d.y_train, pixels, f"the images of {d.dataset}")


def _check(seeds: int, baseline: str | None, names: list[str], datasets, options: RunOptions) -> None:
    """Refuse settings that cannot run, before any data is loaded."""
    if options.target is not None:  # a RunOptions field that train uses; compare fits every model as its recipe says
        raise ParameterError(
            "target",
            "{param} is not used by compare, which fits every model for its recipe's full epochs; drop it, or "
            "train one CNN with it (`mnistlab train RECIPE --target ACC`).",
        )
    first_seed = options.seed
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ParameterError("seeds", f"{{param}} must be a whole number from 1 to {MAX_SEEDS}, got {seeds!r}.")
    if first_seed + seeds - 1 > MAX_SEED:  # numpy's and scikit-learn's largest seed
        raise ParameterError(
            "seeds", f"{{param}} {seeds} from seed {first_seed} runs past {MAX_SEED}, the largest seed; start lower."
        )
    if baseline is not None and baseline not in names:
        raise ParameterError(
            "baseline",
            f"{{param}} {baseline!r} is not among the compared models ({', '.join(names)}); name one of them.",
        )
    if not datasets:
        raise ParameterError("datasets", "{param} is empty; name at least one dataset, e.g. mnist.")
    if len(set(map(str, datasets))) != len(datasets):
        raise ParameterError("datasets", "{param} names a dataset twice; name each once.")


def _baseline_name(baseline, contenders: list[Contender]):
    """The name of the model ``baseline`` names: its name, or the spec it was given as (``path/file.py:build``
    for ``file.py:build``; in Python the callable itself); anything else as it is, to be refused."""
    given = getattr(baseline, "__name__", None) if callable(baseline) else baseline
    given = os.fspath(given) if isinstance(given, os.PathLike) else given  # a spec file given as a Path
    for c in contenders:
        if given is not None and given in (c.name, c.spec):
            return c.name
    return baseline


def _check_distinct(opened: list, datasets) -> None:
    """Refuse one dataset named twice in two ways (``mnist`` and its folder): its results would be mixed."""
    seen: dict[str, str] = {}
    for (name, _), given in zip(opened, map(str, datasets)):
        if name in seen:
            raise ParameterError(
                "datasets",
                f"{{param}} names the dataset {name!r} twice ({seen[name]!r} and {given!r}); name each once "
                "(two folders of one name: rename one).",
            )
        seen[name] = given


def _section(
    dataset: str,
    names: list[str],
    rows: dict,
    preds: dict,
    truth: list,
    first: TrainTest,
    baseline: str | None,
    pool: int | None = None,
) -> dict:
    """One dataset's summary per model, its comparisons and significance matrix, and what the report draws."""
    results = []
    for m in names:
        accs = [r["test_accuracy"] for r in rows[m]]
        summary = accuracy_summary(accs, rows[m][0]["n_test"], pool, y_true=truth, y_pred=preds[m])
        fit_s = [r["fit_seconds"] for r in rows[m]]
        results.append(
            {
                "model": m,
                "dataset": dataset,
                "seeds": [r["seed"] for r in rows[m]],
                "test_accuracy_mean": summary["mean"],
                "test_accuracy_std": summary["std"],
                "test_accuracy_ci95": summary["ci95"],
                "test_accuracies": accs,
                "reused": sum(bool(r.get("reused")) for r in rows[m]),
                "fit_seconds_mean": float(np.mean(fit_s)),
                "fit_seconds_std": float(np.std(fit_s, ddof=1)) if len(fit_s) > 1 else None,
                "fit_seconds": fit_s,
                "predict_seconds_mean": float(np.mean([r["predict_seconds"] for r in rows[m]])),
                "n_train": rows[m][0]["n_train"],
                "n_test": rows[m][0]["n_test"],
                "description": rows[m][0].get("description", ""),
                "run_ids": [r["run_id"] for r in rows[m]],
            }
        )
    means = {r["model"]: r["test_accuracy_mean"] for r in results}
    matrix = significance_matrix(names, truth, preds, pool=pool)  # every pair tested once: comparisons are some
    return {
        "dataset": dataset,
        "results": results,
        "comparisons": comparisons(dataset, means, truth, preds, baseline, matrix=matrix, pool=pool),
        "matrix": matrix,
        "rows": rows,
        "first": first,
        "first_predictions": {m: preds[m][0] for m in names},
    }
