"""When a recorded run can stand in for a fit: same recipe, parameters, code, data, seed, split and versions.

``reuse_key`` condenses everything that decides a fit's outcome into one
sha256, recorded as a tag of the run. A later comparison with the same key
takes the newest such run instead of fitting again, but only if its model
directory still verifies (the card is byte for byte the recorded one and the
weights match the card's sha256) and its recorded predictions match their
recorded sha256; otherwise it fits again and says why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

import numpy as np

from mnistlab._text import text_path
from mnistlab._version import __version__
from mnistlab.errors import ModelFileError, TrackingError
from mnistlab.lab.options import RunOptions
from mnistlab.lab.record import predictions_sha256
from mnistlab.lab.tracking import TAG, Tracker
from mnistlab.models.files import read_card

__all__ = ["reuse_key", "key_versions", "find_reusable", "file_sha256"]

_PACKAGES = ("numpy", "scipy", "scikit-learn", "skops", "torch")


def key_versions() -> dict:
    """Versions that can change a fit's outcome, read without importing the packages."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "mnistlab": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def reuse_key(model: str, params: dict, code_sha256: str | None, data_sha256: str, options: RunOptions) -> str:
    """The sha256 of what decides a fit: model, parameters (but not ``n_jobs``), code, data, seed, split, versions."""
    recipe_params = {k: v for k, v in params.items() if k != "n_jobs" and not k.endswith("__n_jobs")}
    what = {
        "model": model,
        "params": recipe_params,
        "code_sha256": code_sha256,
        "data_sha256": data_sha256,
        "seed": options.seed,
        "split": options.split,
        "test_size": options.test_size,
        "limit": options.limit,
        "cv": options.cv,
        "versions": key_versions(),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def find_reusable(tracker: Tracker, key: str) -> tuple[dict | None, np.ndarray | None, str | None]:
    """``(result, predictions, None)`` of the newest recorded run under ``key`` that still verifies.

    Otherwise ``(None, None, why)``: why the newest candidate was not reused, or None when there was none.
    """
    why = None
    for run in tracker.find(key):
        tags = run.data.tags
        try:
            _verify_model_dir(tags.get(TAG + "model_dir"), tags.get(TAG + "card_sha256"))
            y_pred = tracker.predictions(run.info.run_id)
            if predictions_sha256(y_pred) != tags.get(TAG + "test_predictions_sha256"):
                raise ModelFileError(f"the recorded predictions of run {run.info.run_id} do not match their sha256")
            result = _recorded_report(tracker, run.info.run_id, tags.get(TAG + "report_sha256"))
        except (ModelFileError, TrackingError, OSError, ValueError) as exc:
            why = why or f"run {run.info.run_id} not reused: {str(exc).rstrip('.')}"  # a clause of a sentence
            continue
        return {**result, "run_id": run.info.run_id, "reused": True}, y_pred, None
    return None, None, why


def _recorded_report(tracker: Tracker, run_id: str, sha256: str | None) -> dict:
    """The run's ``report.json``, which the comparison reads as the fit's result; ``ValueError`` unless it has the
    sha256 the run records (a run recorded before it did: unless it is a JSON object). One that still parsed but
    was no report (a list, another object) was a traceback (TypeError, KeyError) later on."""
    data = tracker.artifact(run_id, "report.json")
    result = json.loads(data)
    if (sha256 is not None and hashlib.sha256(data).hexdigest() != sha256) or not isinstance(result, dict):
        raise ValueError("its report.json does not match the one recorded")
    return result


def _verify_model_dir(model_dir: str | None, card_sha256: str | None) -> None:
    """Raise ModelFileError unless the model directory holds exactly the recorded card and weights."""
    if not model_dir or model_dir == "None":
        raise ModelFileError("the model was not saved")
    folder = Path(text_path(model_dir))  # a folder whose name is not UTF-8 is recorded as path_text writes it
    card = read_card(folder)
    if file_sha256(folder / "model.json") != card_sha256:
        raise ModelFileError(f"{folder / 'model.json'} differs from the recorded card")
    try:
        weights = file_sha256(folder / card["weights_file"])
        onnx = file_sha256(folder / "model.onnx") if "onnx_sha256" in card else None
    except OSError as exc:
        raise ModelFileError(f"{folder} lacks a model file ({exc.strerror})") from None
    if weights != card.get("weights_sha256") or onnx != card.get("onnx_sha256"):
        raise ModelFileError(f"the model files in {folder} do not match the sha256 in their card")
