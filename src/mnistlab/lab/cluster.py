"""Run a comparison's fits, or one fit's parallel parts, as tasks on a Ray cluster, recording each result once, here.

``--cluster ADDRESS`` (or ``$RAY_ADDRESS``) names a running cluster
(``host:port`` of its head, ``ray://host:port`` for Ray Client, ``auto``);
``local`` starts a Ray runtime on this machine. Without it nothing here runs.

Who does what:

- the driver (this process) looks every unit up in the tracking store, so a
  reusable run never becomes a task;
- each dataset goes into the object store once (``ray.put``); a task gets its
  reference, cuts its seed's split itself (``fitting.split_for``: the same
  function and seed as here, so the same arrays) and fits in a temporary
  folder, returning the fit and its model files as bytes;
- the driver writes those files into the unit's model folder and records the
  run. Recording here rather than in the task means a task that Ray reruns
  (a worker or node lost: ``max_retries``) can never record twice, and the
  workers need no access to the tracking store or the driver's disk.

``train --cluster`` fits here, with its parallel parts on the cluster
(``parallel_on_cluster``): CV folds through Ray's joblib backend, and a CNN
ensemble's members as one task each (``run_members_on_cluster``, plugged
into ``models.cnn.parallel`` for the block), returning their weights and
epoch rows; a rerun member's lost attempt leaves no row behind.

Ray takes a second or two to import and seconds to start, so it is imported
in the functions that use it, only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab._text import path_text
from mnistlab.data.bunch import Bunch
from mnistlab.errors import ClusterError, MnistlabError, ParameterError, RecipeError
from mnistlab.lab.fitting import Fitted, fit_one, split_for
from mnistlab.lab.options import Progress, RunOptions, noop
from mnistlab.lab.rayhead import CONNECT_TIMEOUT_S, check_reachable
from mnistlab.lab.specs import Contender
from mnistlab.lab.tracking import Tracker
from mnistlab.lab.train import TrainTest
from mnistlab.lab.units import Unit, look_up, numbered, record_fit
from mnistlab.models.folder import install_files

__all__ = [
    "check_task_cpus",
    "cluster_address",
    "connect",
    "parallel_on_cluster",
    "run_units_on_cluster",
    "run_members_on_cluster",
    "task_cpus",
    "CONNECT_TIMEOUT_S",
    "MAX_RETRIES",
]

MAX_RETRIES = 3  # reruns of a task whose worker or node died; the fit is pure, so a rerun is harmless


def cluster_address(cluster: str | None) -> str | None:
    """``cluster``, else ``$RAY_ADDRESS``, else None (run in this process, as without a cluster)."""
    if cluster is not None and not isinstance(cluster, str):  # a number was "argument of type 'int' is not iterable"
        raise ParameterError(
            "cluster",
            f"{{param}} must be a Ray cluster's address (host:port, ray://host:port, auto) or local, got {cluster!r}.",
        )
    return cluster or os.environ.get("RAY_ADDRESS") or None


@contextlib.contextmanager
def connect(address: str) -> Iterator[dict]:
    """Join the cluster at ``address`` (``local``: start one here) for the block; its resources.

    A Ray runtime this process already runs (``ray.init`` by the caller) is
    used as it is and left running. An address whose head does not accept a
    connection within ``CONNECT_TIMEOUT_S`` is one ``ClusterError``, before
    anything is loaded or recorded.
    """
    import ray  # seconds to import: only when a cluster is asked for

    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    if address not in ("local", "auto"):
        check_reachable(address)
    # ray.init puts its own SIGTERM handlers (a Python one, and a C++ crash report that aborts) in place of this
    # process's: a sweep sent SIGTERM printed "*** SIGTERM received ..." and dumped core. This one is put back.
    kept = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        _text_entrypoint()
        ray.init(
            address=address,
            include_dashboard=False if address == "local" else None,
            logging_level=logging.ERROR,  # its INFO and WARNING lines (start-up, auth token) are noise here
            log_to_driver=False,  # the driver prints each unit's progress; the workers' own lines are noise
        )
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError from a bad or absent cluster alike
        raise ClusterError(
            f"Cannot join the Ray cluster at {address!r} ({type(exc).__name__}: {_first_line(exc)}); "
            "check --cluster / RAY_ADDRESS (host:port of the head, ray://host:port, auto or local)."
        ) from None
    finally:
        if kept is not None:
            signal.signal(signal.SIGTERM, kept)
    try:
        yield ray.cluster_resources()
    finally:
        ray.shutdown()  # leaves a remote cluster running; stops the runtime that "local" started


def _text_entrypoint() -> None:
    """Ray records this process's command line (``/proc``'s, not ``sys.argv``) as UTF-8 text: a path not in UTF-8
    on it (``sweep --dataset caf\\xe9``) failed ``ray.init`` in "Cannot join the Ray cluster" with a
    UnicodeEncodeError. It records the line as ``path_text`` writes it."""
    import ray._private.utils as ray_utils

    name = getattr(ray_utils, "get_entrypoint_name", None)  # private: another Ray may not have it
    if name is not None and not getattr(name, "mnistlab_text", False):
        ray_utils.get_entrypoint_name = lambda: path_text(name())
        ray_utils.get_entrypoint_name.mnistlab_text = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def parallel_on_cluster(address: str, progress: Progress | None = None) -> Iterator[dict]:
    """For the block, a fit's parallel work runs as tasks on the cluster at ``address``; yields its resources.

    - scikit-learn's ``n_jobs`` work (CV folds): Ray's joblib backend makes
      each joblib call a task, and an argument passed to several calls (the
      training set, to every fold) is put into the object store once;
    - a CNN ensemble's members: one task each (``run_members_on_cluster``,
      installed with ``models.cnn.parallel.members_run_by``), instead of the
      estimator's own process pool here.
    """
    import functools

    import joblib

    from mnistlab.models.cnn.parallel import members_run_by  # no torch: that loads when an ensemble fits

    with connect(address) as resources:
        from ray.util.joblib import register_ray  # with ray, only when a cluster is asked for

        register_ray()
        runner = functools.partial(run_members_on_cluster, progress=progress or noop)
        with joblib.parallel_backend("ray"), members_run_by(runner):
            yield resources


def _member_task(train, job, X: np.ndarray, y: np.ndarray, n_threads: int, since_start: float):
    """On a worker: one ensemble member (``parallel.train_one``); its state and its epoch rows."""
    from mnistlab.models.cnn.parallel import train_one  # torch: loaded by the worker that trains

    if dataclasses.is_dataclass(job) and not isinstance(job, type) and hasattr(job, "start"):
        # The rows' "elapsed" counts from the fit's start; this node's clock has another origin.
        job = dataclasses.replace(job, start=time.perf_counter() - since_start)
    rows: list[dict] = []
    return train_one(train, job, X, y, n_threads, rows.append), rows


def run_members_on_cluster(  # long: submit, then collect in completion order, cancelling everything on Ctrl-C
    train, tasks, y: np.ndarray, *, n_threads: int, on_row: Callable[[dict], None], progress: Progress = noop
) -> list:
    """Train each (job, X) of ``tasks`` as a Ray task of ``n_threads`` CPUs; their state dicts, in task order.

    A ``models.cnn.parallel`` member runner. Each distinct input array and
    the labels go into the object store once, whatever the number of members
    that read them. A member's epoch rows reach ``on_row`` when the member
    is done (not epoch by epoch: streaming them from other nodes would need
    an actor for no gain in the result), so a rerun after a lost worker or
    node (``max_retries``) never hands on a row twice. Every task runs
    ``parallel.train_one`` with the same member seed and thread count as a
    local fit, so the weights are the same. A failure or Ctrl-C cancels the
    members still running.
    """
    import ray  # loaded already: the block that installed this runner joined the cluster
    import torch

    largest = int(max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0))
    if n_threads > largest:  # tasks no node can hold: Ray would keep them queued, without a word and without end
        raise RecipeError(
            f"n_threads {n_threads} asks for {n_threads} CPUs per ensemble member, and the largest node of the "
            f"cluster has {largest}; give n_threads {largest} or less, or train without --cluster."
        )
    member = ray.remote(_member_task).options(num_cpus=n_threads, max_retries=MAX_RETRIES, retry_exceptions=False)
    shared: dict[int, Any] = {}  # id(array) -> its ObjectRef: an array shared by members is put once
    y_ref, shipped = ray.put(y), y.nbytes
    refs = []
    for job, X in tasks:
        if id(X) not in shared:
            shared[id(X)], shipped = ray.put(X), shipped + X.nbytes
        since_start = time.perf_counter() - getattr(job, "start", time.perf_counter())  # of the fit, for "elapsed"
        refs.append(member.remote(train, job, shared[id(X)], y_ref, n_threads, since_start))
    index = {ref: i for i, ref in enumerate(refs)}
    progress(f"{len(refs)} ensemble members submitted to the cluster ({shipped / 2**20:.1f} MiB of data shared)")
    states: dict[int, dict] = {}
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            state, rows = _result(ray, ready[0], f"ensemble member {i + 1}")
            states[i] = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}  # np.array: a writable copy
            for row in rows:
                on_row(row)
    except BaseException:  # Ctrl-C or a failed member: nothing of this fit keeps running on the cluster
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return [states[i] for i in range(len(tasks))]


def task_cpus(n_jobs: int) -> int:
    """The CPUs a fit's task asks for: its ``n_jobs`` (-1, a node's every core, as one)."""
    return n_jobs if n_jobs > 0 else 1


def check_task_cpus(n_jobs: int) -> None:
    """Refuse, on the joined cluster, fits that ask for more CPUs than its largest node has: Ray would keep them
    queued, without a word and without end."""
    import ray  # loaded already: the caller joined the cluster

    largest = int(max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0))
    if largest < 1:
        raise ClusterError(
            "No node of the Ray cluster has a CPU (a head started with --num-cpus 0 and no workers?); add a "
            "worker node (`ray start --address=HEAD:PORT`) and run again."
        )
    if task_cpus(n_jobs) > largest:
        raise ParameterError(
            "n_jobs",
            f"{{param}} {n_jobs} asks for {n_jobs} CPUs per fit, and the largest node of the cluster has {largest}; "
            f"give {{param}} {largest} or less.",
        )


def _fit_task(contender: Contender, options: RunOptions, dataset: str, bunch) -> tuple[Fitted, dict[str, bytes]]:
    """On a worker: cut the seed's split, fit in a temporary folder, return the fit and the model's files."""
    d = split_for(dataset, bunch, options)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        fitted = fit_one(contender, options, d, folder, noop)
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
    return fitted, files


def run_units_on_cluster(
    units: list[Unit],
    bunches: dict,
    split_of: Callable[[str, int], TrainTest],
    tracker: Tracker,
    retrain: bool,
    progress: Progress,
    on_result: Callable[[int, dict, np.ndarray], None],
    parent: str | None = None,
) -> dict:
    """Look up every unit here, fit the others as Ray tasks, record each returned fit once; what was shipped.

    ``bunches`` maps each dataset name to its loaded data; ``split_of(dataset,
    seed)`` cuts a unit's split here (its checksum and name are recorded). ``on_result(i, row,
    y_pred)`` is called once per unit, reused ones first, the rest as they
    finish. Fits are recorded nested under the run ``parent`` (the comparison's).
    A fit that fails (its code raises, or the cluster loses it) is raised once
    the other fits are in and recorded; Ctrl-C, or a failure of the driver's
    own (the tracking store), cancels every task of the run, from the first
    submitted on. Returns ``{"tasks", "shipped_bytes"}``.
    """
    import ray  # seconds to import: only when a cluster is asked for

    _pickle_user_code_by_value()
    submitted: dict = {}  # ObjectRef -> (unit index, its lookup), filled as the tasks go out
    try:
        shipped = _submit(ray, units, bunches, split_of, tracker, retrain, progress, on_result, submitted)
        failed = _collect(ray, units, submitted, split_of, tracker, progress, on_result, parent)
    except BaseException:  # Ctrl-C or the driver's own failure: nothing of this run keeps running on the cluster
        for ref in submitted:  # a finished task's cancel does nothing
            ray.cancel(ref, force=True)
        raise
    if failed is not None:
        raise failed
    return {"tasks": len(submitted), "shipped_bytes": shipped}


def _submit(ray, units, bunches, split_of, tracker, retrain, progress, on_result, submitted: dict) -> int:
    """Look every unit up, hand reused ones to ``on_result``, submit the others into ``submitted``; bytes shipped."""
    total = len(units)
    refs: dict[str, object] = {}
    shipped = 0
    fit = ray.remote(_fit_task)
    for i, unit in enumerate(units):
        d = split_of(unit.dataset, unit.options.seed)
        looked = look_up(unit.contender, unit.options, d, tracker, retrain, numbered(progress, i, total))
        if looked.found is not None and looked.y_found is not None:
            on_result(i, looked.found, looked.y_found)
            continue
        if unit.dataset not in refs:  # each dataset once into the object store, shared by all its tasks
            slim = _slim(bunches[unit.dataset])
            shipped += slim["data"].nbytes + slim["target"].nbytes
            refs[unit.dataset] = ray.put(slim)
        ref = fit.options(num_cpus=task_cpus(looked.options.n_jobs), max_retries=MAX_RETRIES, retry_exceptions=False)
        submitted[ref.remote(unit.contender, looked.options, unit.dataset, refs[unit.dataset])] = (i, looked)
    if submitted:
        progress(f"{len(submitted)} fit(s) submitted to the cluster; {total - len(submitted)} reused")
    return shipped


def _collect(ray, units, submitted: dict, split_of, tracker, progress, on_result, parent) -> MnistlabError | None:
    """Record each submitted fit as it returns; the first fit's own failure, after the others are in."""
    failed = None
    pending = list(submitted)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        i, looked = submitted[ready[0]]
        steps = numbered(progress, i, len(units))
        try:
            fitted, files = _result(ray, ready[0], looked.label)
        except MnistlabError as exc:  # this fit's own: the other models' fits go on, to be recorded and reused
            steps(f"{looked.label}: failed" + (f"; {len(pending)} other fit(s) go on" if pending else ""))
            failed = failed or exc
            continue
        unit = units[i]
        fitted = _install(fitted, files, unit.model_dir)
        d = split_of(unit.dataset, unit.options.seed)
        on_result(i, record_fit(tracker, unit.contender, d, looked, fitted, steps, parent), fitted.y_pred)
    return failed


def _result(ray, ref, label: str) -> Any:
    """A task's return value; its own one-sentence error as it is, a cluster failure as a ``ClusterError``."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, MnistlabError):
            raise exc.cause from None
        missing = re.search(r"No module named '([^']+)'", str(exc.cause))
        if missing:  # the task's arguments name code the worker cannot import: a module importable here only
            raise ClusterError(
                f"{label}: the cluster's workers cannot import the module {missing[1]!r} the model needs; install "
                "it on every node, or give your own model as path/to/file.py:callable, whose code travels with "
                "its tasks."
            ) from None
        raise ClusterError(
            f"{label}: the fit failed on the cluster ({type(exc.cause).__name__}: {_first_line(exc.cause)})."
        ) from None
    except ray.exceptions.RayError as exc:  # a worker or node lost more often than max_retries, an object lost
        raise ClusterError(
            f"{label}: the cluster lost this fit ({type(exc).__name__}) after {MAX_RETRIES} retries; "
            "check the cluster's nodes and run again (finished fits are reused)."
        ) from None


def _install(fitted: Fitted, files: dict[str, bytes], model_dir: Path) -> Fitted:
    """Write a task's model files into ``model_dir`` (weights first, the card last); the fit, pointing there."""
    result = dict(fitted.result)
    if result.get("model_dir") is None or not files:
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        result.update(model_dir=None, model_size_bytes=None)
        return fitted._replace(result=result)
    install_files(model_dir, {name: files[name] for name in sorted(files, key=lambda n: n == "model.json")})
    result["model_dir"] = str(Path(model_dir).absolute())  # as a local fit records it: read from other folders too
    result["model_size_bytes"] = sum(len(b) for n, b in files.items() if not n.startswith("."))
    return fitted._replace(result=result)


def _slim(bunch):
    """What a task needs of a dataset to cut its split: pixels, labels and the details (size, checksum, name)."""
    return Bunch(data=bunch.data, target=bunch.target, details=bunch.details)


def _pickle_user_code_by_value() -> None:
    """Ship users' ``file.py:callable`` code, and the modules and packages beside it (``layers.py``), with tasks."""
    from ray import cloudpickle

    users = {name: module for name, module in sys.modules.items() if name.startswith("mnistlab_user_")}
    folders = {Path(module.__file__).resolve().parent for module in users.values() if module.__file__}
    for name, module in list(sys.modules.items()):
        file = Path(getattr(module, "__file__", None) or "/").resolve()
        beside = (file.parent.parent if file.name == "__init__.py" else file.parent) in folders and "." not in name
        if name in users or beside:
            cloudpickle.register_pickle_by_value(module)  # a package's submodules with it


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
