"""One unit of a comparison, looked up, fitted and recorded: one (model, dataset, seed).

A unit is first looked up in the tracking store by its reuse key (``reuse``);
a verified recorded run stands in for the fit. Otherwise it is fitted
(``fitting.fit_one``) and recorded once. ``run_unit`` does all three in this
process; ``lab.cluster`` does the lookup and the recording here and only the
fit on a Ray cluster, so both ways record the same runs with the same keys.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mnistlab.lab.codehash import built_code_sha256
from mnistlab.lab.fitting import Fitted, fit_one
from mnistlab.lab.options import Progress, RunOptions
from mnistlab.lab.record import json_safe_params
from mnistlab.lab.reuse import find_reusable, reuse_key
from mnistlab.lab.specs import Contender
from mnistlab.lab.tracking import Tracker
from mnistlab.lab.train import TrainTest

__all__ = ["Unit", "Lookup", "look_up", "record_fit", "run_unit", "numbered"]


class Unit(NamedTuple):
    """One fit of a comparison, as planned before anything runs."""

    contender: Contender
    options: RunOptions  # its seed set
    dataset: str  # the name its split is cut from
    model_dir: Path


class Lookup(NamedTuple):
    """A unit's reuse key and, when a recorded run can stand in for the fit, that run's row and predictions."""

    options: RunOptions  # with the recipe's default folds filled in
    label: str
    params: dict
    key: str
    found: dict | None
    y_found: np.ndarray | None


def look_up(
    contender: Contender, options: RunOptions, d: TrainTest, tracker: Tracker, retrain: bool, progress: Progress
) -> Lookup:
    """The unit's reuse key and the verified recorded run under it (unless ``retrain``), saying why one is not used."""
    options = options.for_recipe(contender.recipe)
    label = f"{d.dataset} seed {options.seed}: {contender.name}"
    estimator = contender.recipe.build(options.seed, options.n_jobs)
    params = json_safe_params(estimator)
    # Pixels stretched to 0-255 (scikit-learn's digits): not the data of runs recorded before they were.
    data = d.sha256 if d.stretched_from == 255 else f"{d.sha256} 0-{d.stretched_from} as 0-255"
    key = reuse_key(contender.name, params, built_code_sha256(contender.code_sha256, estimator), data, options)
    if retrain:
        return Lookup(options, label, params, key, None, None)
    start = time.perf_counter()
    found, y_found, why = find_reusable(tracker, key)
    if found is not None and y_found is not None:
        progress(f"{label}: reusing recorded run {found['run_id']}")
        return Lookup(options, label, params, key, {**found, "tracking_seconds": time.perf_counter() - start}, y_found)
    if why:
        progress(f"{label}: {why}; fitting again")
    return Lookup(options, label, params, key, None, None)


def record_fit(
    tracker: Tracker,
    contender: Contender,
    d: TrainTest,
    looked: Lookup,
    fitted: Fitted,
    progress: Progress,
    parent: str | None = None,
) -> dict:
    """Record a fit once, under its reuse key (nested under the comparison's run ``parent``); its row."""
    result = {**fitted.result, "model": contender.name, "dataset": d.dataset}
    progress(f"{looked.label}: recording the run")
    start = time.perf_counter()
    run_id = _record(tracker, looked.key, contender, looked.options, d, looked.params, fitted, result, parent)
    return {**result, "run_id": run_id, "reused": False, "tracking_seconds": time.perf_counter() - start}


def run_unit(
    contender: Contender,
    options: RunOptions,
    d: TrainTest,
    tracker: Tracker,
    model_dir: Path,
    retrain: bool,
    progress: Progress,
    parent: str | None = None,
) -> tuple[dict, np.ndarray]:
    """One (model, dataset, seed): the verified recorded run with the same key, else a fit recorded once."""
    looked = look_up(contender, options, d, tracker, retrain, progress)
    if looked.found is not None and looked.y_found is not None:
        return looked.found, looked.y_found
    fitted = fit_one(contender, looked.options, d, model_dir, progress)
    return record_fit(tracker, contender, d, looked, fitted, progress, parent), fitted.y_pred


def numbered(progress: Progress, i: int, total: int) -> Progress:
    """``progress`` for unit ``i`` (from 0) of ``total``: each message starts ``[i+1/total]``."""
    return lambda message: progress(f"[{i + 1}/{total}] {message}")


_METRICS = (
    "test_accuracy",
    "fit_seconds",
    "predict_seconds",
    "cv_seconds",
    "cv_mean",
    "cv_std",
    "epochs",
    "train_seconds",
    "n_train",
    "n_test",
)


def _record(
    tracker: Tracker,
    key: str,
    contender: Contender,
    options: RunOptions,
    d: TrainTest,
    params: dict,
    fitted: Fitted,
    result: dict,
    parent: str | None,
) -> str:
    """Record one fit as a finished run: tags for finding and verifying it, parameters, metrics, artifacts."""
    model_dir = Path(result["model_dir"]) if result["model_dir"] is not None else None
    card_bytes = (model_dir / "model.json").read_bytes() if model_dir is not None else None
    report = json.dumps(result, indent=2).encode()
    settings = {
        **{k: getattr(options, k) for k in ("seed", "split", "test_size", "limit", "cv")},
        "dataset": d.dataset,
        "data_sha256": d.sha256,
        **({"data_dir": d.data_dir} if d.data_dir is not None else {}),
        # Where a CNN ran (its param "device" may say "auto"); what a dataset's pixels were stretched from.
        **{k: fitted.card[k] for k in ("device", "stretched_from") if k in fitted.card},
        **{f"version.{k}": v for k, v in fitted.card["versions"].items()},
    }
    # An estimator's parameter named as a run setting (LogisticRegressionCV's cv) is kept beside it, not replaced.
    run_params = {**{f"estimator.{k}" if k in settings else k: v for k, v in params.items()}, **settings}
    return tracker.record(
        name=f"{contender.name} {d.dataset} seed {options.seed}",
        tags={
            "key": key,
            "model": contender.name,
            "dataset": d.dataset,
            "seed": options.seed,
            "spec": contender.spec,
            "code_sha256": contender.code_sha256,
            "data_sha256": d.sha256,
            "test_predictions_sha256": result["test_predictions_sha256"],
            "model_dir": result["model_dir"],
            "card_sha256": hashlib.sha256(card_bytes).hexdigest() if card_bytes is not None else None,
            "report_sha256": hashlib.sha256(report).hexdigest(),  # what a reuse reads of the run, checked
        },
        params=run_params,
        metrics={k: result.get(k) for k in _METRICS},
        cv_scores=result["cv_scores"],
        artifacts={
            "model.json": card_bytes if card_bytes is not None else json.dumps(fitted.card, indent=2).encode(),
            "confusion.json": json.dumps({"labels": fitted.labels, "matrix": fitted.confusion}).encode(),
            "report.json": report,
            "predictions.npy": _npy(fitted.y_pred),
        },
        parent=parent,
    )


def _npy(y_pred: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(y_pred, dtype=np.int64), allow_pickle=False)
    return buffer.getvalue()
