"""Tracked runs: each fit of a comparison recorded in an MLflow tracking store, and found again.

The store is MLflow's embedded SQLite database in the user data folder
(``$XDG_DATA_HOME/mnistlab/tracking/mlflow.db``, artifacts beside it) unless
``tracking_uri`` or ``MLFLOW_TRACKING_URI`` names another (any tracking
server). ``mlflow ui --backend-store-uri sqlite:///...`` shows the runs. All
of ``compare`` go to one experiment, ``mnistlab-compare``; each carries
``mnistlab_*`` tags (model, dataset, seed, the reuse key, the model directory
and checksums), the estimator's parameters, the metrics (per-fold CV as steps
of ``cv_accuracy``) and artifacts: the model card, the confusion matrix, the
fit's report and its test predictions. Each comparison is a parent run too
(tag ``mnistlab_kind`` = ``comparison``): the fits it made are nested under it,
and its ``comparison.json`` lists every run it used, reused ones included. Sweeps go to ``mnistlab-sweep``: one
parent run per sweep, a nested run per trial (``start_run``, ``end_run``).

MLflow takes about a second to import and a fresh SQLite store a few more to
set up, so it is imported here only, and this module only when a comparison
or ``mnistlab runs`` needs it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from mnistlab._atomic import locked_temp, locked_where_possible, remove_leftovers
from mnistlab._text import path_text
from mnistlab.data.home import expand_home
from mnistlab.errors import ParameterError, TrackingError
from mnistlab.lab.tracking_text import (
    RENAMED,
    dataset_folder,
    mlflow_key,
    no_misread_folders,
    open_error,
    param_text,
    quiet_mlflow,
    shown_uri,
    sqlite_uri,
    staged,
    store_failed,
    store_path,
)
from mnistlab.models.files import models_root

__all__ = ["EXPERIMENT", "SWEEP_EXPERIMENT", "default_tracking_uri", "resolve_uri", "Tracker"]

EXPERIMENT = "mnistlab-compare"
SWEEP_EXPERIMENT = "mnistlab-sweep"  # apart: its runs score held-out parts, compare's the test set
TAG = "mnistlab_"  # prefix of mnistlab's tags (underscores: filter strings need no quoting)


def default_tracking_uri() -> str:
    """MLflow's SQLite store in the user data folder, beside the saved models."""
    return sqlite_uri(_default_folder() / "mlflow.db")


def _default_folder() -> Path:
    return models_root().parent / "tracking"


def resolve_uri(uri: str | os.PathLike[str] | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``default_tracking_uri()``; the path of a ``.db`` (``.sqlite``)
    file, without a scheme, is the SQLite store it names (MLflow would take it for its retired folder store), and
    may be given as a ``Path``."""
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if uri is not None and not isinstance(uri, str):
        raise ParameterError(
            "tracking_uri",
            f"{{param}} must be a store's URI or a .db file's path, got {type(uri).__name__} {str(uri)[:40]!r}.",
        )
    if uri is not None and not uri.strip():  # an unset $STORE: not the default store, silently
        raise ParameterError(
            "tracking_uri", "{param} is empty, which would mean the default store; give a store, or leave it out."
        )
    given = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not given:
        return default_tracking_uri()
    named = f"MLFLOW_TRACKING_URI={given}" if uri is None else "{param} " + given
    path = expand_home(given, lambda why: ParameterError("tracking_uri", f"{named} {why}; give its full path."))
    if "://" not in given and path.suffix.lower() in (".db", ".sqlite", ".sqlite3") and not path.is_dir():
        return sqlite_uri(store_path(path.absolute(), named))  # a file where its folder goes: said now
    return given


class Tracker:
    """One tracking store, opened (and its experiment created) before anything trains."""

    def __init__(self, uri: str | os.PathLike[str] | None = None, experiment: str = EXPERIMENT, *, create: bool = True):
        """``create=False`` (``mnistlab runs``) only reads: a SQLite store that is not there is refused (the default
        one reads as empty), and a store without the experiment has no runs; nothing is made."""
        self.uri = resolve_uri(uri)
        self.shown = shown_uri(self.uri)  # what is said and recorded: a password in it as ***
        self.empty = False  # a store or experiment not made yet, opened to read: no runs
        database = _sqlite_file(self.uri)
        if not create and database is not None and not database.exists():
            if self.uri != default_tracking_uri():  # a typo'd path: made, it would list nothing and keep a new store
                raise TrackingError(
                    f"No tracking store at {database}, so no runs; check --tracking-uri "
                    "/ MLFLOW_TRACKING_URI (compare makes the store on its first run)."
                )
            self.empty, self.experiment_id = True, ""
            return
        quiet_mlflow()  # a server that does not answer fails in seconds; no URL (with its password) printed
        from mlflow.tracking import MlflowClient  # about a second to import: only when runs are tracked

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines on database set-up are noise here
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # It logs each database error with its traceback before raising it, which is said here in one sentence.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        artifacts, folder = None, None
        if self.uri == default_tracking_uri():
            folder = _default_folder()
            _make_default_folder(folder)
            artifacts = (folder / "artifacts").as_uri()
        elif database is not None:  # artifacts beside the database, not in ./mlruns of wherever we run
            folder = Path(os.path.realpath(database)).parent  # a link loop: said when the store is opened
            artifacts = (folder / "artifacts").as_uri()
        try:
            # Two processes setting up one new SQLite database at once both ran its migrations, and one failed
            # ("table experiments already exists"): they take turns on its folder while the store is opened.
            with _store_lock(folder), no_misread_folders(self.uri, database):
                _made_whole(database, self.uri)
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id, deleted = _experiment_id(self.client, experiment, artifacts, create)
                self.empty = not self.experiment_id
        except Exception as exc:  # MlflowException, SQLAlchemy and network errors alike
            raise open_error(self.uri, exc) from None
        if deleted:  # its runs are hidden and no run can be added; MLflow keeps the name until it is purged
            uri = shlex.quote(self.shown)
            raise TrackingError(
                f"The experiment {experiment} in the tracking store {self.shown} was deleted; restore it "
                f"(MLFLOW_TRACKING_URI={uri} mlflow experiments restore -x {self.experiment_id}), remove it "
                f"for good (mlflow gc --backend-store-uri {uri}), or name another store with --tracking-uri."
            )

    def find(self, key: str) -> list:
        """Finished runs recorded under the reuse ``key``, newest first."""
        return self._guard(
            lambda: self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.{TAG}key = '{key}' and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=5,
            )
        )

    def record(
        self,
        *,
        name: str,
        tags: dict,
        params: dict,
        metrics: dict,
        cv_scores,
        artifacts: dict,
        parent: str | None = None,
    ) -> str:
        """One finished run (nested under the run ``parent`` when given): tags (prefixed ``mnistlab_``), params,
        metrics, per-fold CV and artifacts; its id."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        def write() -> str:
            nested = {MLFLOW_PARENT_RUN_ID: parent} if parent is not None else {}
            run = self.client.create_run(self.experiment_id, run_name=path_text(name), tags=nested)
            run_id = run.info.run_id

            def log() -> None:
                cv = {"cv_accuracy": cv_scores}  # per fold, from step 0
                self._log(run_id, params=params, tags=tags, metrics=metrics, series=cv, first_step=0)
                self._log_artifacts(run_id, artifacts)
                self.client.set_terminated(run_id)

            self._or_failed(run_id, log)
            return run_id

        return self._guard(write)

    def start_run(self, name: str, *, tags: dict, params: dict, parent: str | None = None) -> str:
        """A new run (nested under the run ``parent`` when given) with its tags and parameters; its id."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        def write() -> str:
            nested = {MLFLOW_PARENT_RUN_ID: parent} if parent is not None else {}
            run_id = self.client.create_run(self.experiment_id, run_name=path_text(name), tags=nested).info.run_id
            self._or_failed(run_id, lambda: self._log(run_id, params=params, tags=tags))
            return run_id

        return self._guard(write)

    def end_run(
        self,
        run_id: str,
        *,
        metrics: dict,
        series: dict | None = None,
        artifacts: dict | None = None,
        failed: bool = False,
        killed: bool = False,
    ) -> None:
        """Log a run's metrics (``series``: name to values for steps 1, 2, ...) and artifacts (file name to
        bytes), and mark it finished, failed, or killed (stopped by Ctrl+C)."""

        def write() -> None:
            self._log(run_id, metrics=metrics, series=series or {})
            self._log_artifacts(run_id, artifacts or {})
            self.client.set_terminated(run_id, status="KILLED" if killed else "FAILED" if failed else "FINISHED")

        self._guard(lambda: self._or_failed(run_id, write))

    def _log(self, run_id: str, *, params=None, tags=None, metrics=None, series=None, first_step: int = 1) -> None:
        """A run's parameters, tags (prefixed ``mnistlab_``; None left out) and metrics (``series``: name to
        values by step from ``first_step``), under the keys ``mlflow_key`` gives, in batches MLflow takes."""
        from mlflow.entities import Metric, Param, RunTag

        now, renamed = int(time.time() * 1000), {}

        def key(name) -> str:
            # MLflow keeps UTF-8 text alone: a folder named b"r\\xfe" (data_dir, a key's dataset) as path_text says it
            name = path_text(name) if isinstance(name, str) else tuple(map(path_text, name))
            given, taken = name if isinstance(name, str) else "/".join(name), mlflow_key(name)
            if taken != given:
                renamed[RENAMED + taken] = given
            return taken

        batch_params = [Param(key(k), param_text(v)) for k, v in (params or {}).items()]
        batch_metrics = [Metric(key(k), float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
        batch_metrics += [
            Metric(key(k), float(v), now, first_step + i) for k, vs in (series or {}).items() for i, v in enumerate(vs)
        ]
        batch_tags = [RunTag(TAG + k, path_text(str(v))) for k, v in (tags or {}).items() if v is not None]
        batch_tags += [RunTag(k, v) for k, v in renamed.items()]
        for i in range(0, max(len(batch_params), len(batch_tags)), 100):  # at most 100 of each in one call
            self.client.log_batch(run_id, params=batch_params[i : i + 100], tags=batch_tags[i : i + 100])
        for i in range(0, len(batch_metrics), 1000):  # at most 1000 metrics in one call
            self.client.log_batch(run_id, metrics=batch_metrics[i : i + 1000])

    def _or_failed(self, run_id: str, log: Callable[[], None]) -> None:
        """``log()``, which writes to the run ``run_id``; where it fails (an artifact folder that cannot be
        written, a store gone away), the run is marked FAILED (KILLED on Ctrl+C) before the error goes on, where
        the store still takes that: not left RUNNING for ever in ``mnistlab runs`` and ``mlflow ui``."""
        try:
            log()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.client.set_terminated(run_id, status="KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise

    def _log_artifacts(self, run_id: str, artifacts: dict) -> None:
        if not artifacts:
            return
        with staged(artifacts) as tmp:
            self.client.log_artifacts(run_id, tmp)

    def artifact(self, run_id: str, file_name: str) -> bytes:
        """The bytes of one artifact of a run."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self._guard(lambda: self.client.download_artifacts(run_id, file_name, tmp))
            return Path(path).read_bytes()

    def predictions(self, run_id: str) -> np.ndarray:
        """A run's test predictions (``predictions.npy``, read without pickle)."""
        return np.load(io.BytesIO(self.artifact(run_id, "predictions.npy")), allow_pickle=False)

    def runs(self, *, dataset: str | None = None, model: str | None = None, last: int | None = None) -> list[dict]:
        """The recorded fits (newest first; only the newest ``last`` where given, read no further than needed) as
        flat objects, optionally of one dataset (its name, or the folder compare was given) and one model."""
        if self.empty:
            return []
        # A folder given: the runs that recorded it too (as path_text wrote it: MLflow keeps UTF-8 text alone).
        wanted = {path_text(d) for d in (dataset, *dataset_folder(dataset)) if d is not None}
        rows: list[dict] = []
        size = 1000 if last is None else min(1000, max(100, 2 * last))  # comparisons' runs are read and left out
        token = None
        while last is None or len(rows) < last:
            page = self._guard(lambda t=token: self._page(t, size))
            fits = (_run_row(r) for r in page if r.data.tags.get(TAG + "kind") != "comparison")
            mine = (r for r in fits if model in (None, r["model"]))
            rows += [r for r in mine if not wanted or wanted & {r["dataset"], r["data_dir"]}]
            token = page.token
            if not token:
                break
        return rows[:last]

    def _page(self, token: str | None, size: int):
        return self.client.search_runs(
            [self.experiment_id], order_by=["attributes.start_time DESC"], max_results=size, page_token=token
        )

    def _guard(self, call):
        try:
            return call()
        except TrackingError:  # said already
            raise
        except Exception as exc:  # MlflowException, SQLAlchemy and network errors alike
            raise store_failed(self.uri, exc) from None


def _sqlite_file(uri: str) -> Path | None:
    """The database file a ``sqlite:///`` URI names, also in SQLite's URI form (``sqlite:///file:PATH?mode=ro&
    uri=true``, a store opened read-only), its ``%XX`` decoded as SQLAlchemy decodes them; None for other stores and
    an in-memory one."""
    if not uri.startswith("sqlite:///"):
        return None
    path, _, query = uri.removeprefix("sqlite:///").partition("?")
    path = unquote(path)
    if "uri=true" in query.lower().split("&"):
        path = path.removeprefix("file:")
    return None if path in ("", ":memory:") else Path(path)


def _make_default_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only or foreign data folder
        raise TrackingError(
            f"Cannot make the tracking folder {folder} ({exc.strerror or type(exc).__name__}); set XDG_DATA_HOME "
            "to a folder you can write, or name another store with --tracking-uri / MLFLOW_TRACKING_URI."
        ) from None


@contextlib.contextmanager
def _store_lock(folder: Path | None) -> Iterator[None]:
    """An exclusive lock on a SQLite store's folder (made if need be, as MLflow would) while the block runs;
    nothing for other stores."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with locked_where_possible(folder):
        yield


def _made_whole(database: Path | None, uri: str) -> None:
    """A new SQLite store made in a temporary file beside ``database``, then renamed into place, so that it
    appears whole or not at all. MLflow sets a database up in seconds of migrations, each table change committed
    on its own: a first comparison stopped meanwhile (Ctrl+C, a kill) left a half-made store, which every later
    one failed to open ("table _alembic_tmp_latest_metrics already exists"). Only for a plain ``sqlite:///PATH``
    that is not there yet; the caller holds the store's lock."""
    if database is None or "?" in uri or os.path.lexists(database):
        return
    from mlflow.tracking import MlflowClient

    remove_leftovers(database, ".tmp")  # a killed making's, which no live process holds
    try:
        fd, tmp = locked_temp(database, ".tmp")
    except OSError as exc:  # a folder that cannot be written: said of the store, not of a temporary file
        raise OSError(exc.errno, exc.strerror, str(database)) from None
    try:
        MlflowClient(tracking_uri=sqlite_uri(Path(tmp).absolute())).search_experiments(max_results=1)
        os.replace(tmp, database)
    finally:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)


def _experiment_id(client, name: str, artifacts: str | None, create: bool) -> tuple[str, bool]:
    """The id of the experiment ``name``, made if the store has none (or another process made it meanwhile), and
    whether it was deleted; ``""`` where there is none and ``create`` is False."""
    found = client.get_experiment_by_name(name)
    if found is None and not create:
        return "", False
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifacts), False
        except Exception:  # a tracking server where another comparison made it first
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    return found.experiment_id, found.lifecycle_stage == "deleted"


def _run_row(run) -> dict:
    tags, seed = run.data.tags, run.data.tags.get(TAG + "seed")
    # A metric that is not a number (a run logged by hand, by another tool) as none: JSON has no NaN.
    metrics = {k: v for k, v in run.data.metrics.items() if np.isfinite(v)}
    return {
        "run_id": run.info.run_id,
        "model": tags.get(TAG + "model"),
        "dataset": tags.get(TAG + "dataset"),
        "seed": int(seed) if seed is not None and seed.lstrip("-").isdigit() else None,
        "test_accuracy": metrics.get("test_accuracy"),
        "fit_seconds": metrics.get("fit_seconds"),
        "status": run.info.status,
        "start_time": run.info.start_time,
        "model_dir": tags.get(TAG + "model_dir"),
        "data_dir": run.data.params.get("data_dir"),  # the folder of a dataset given as one
    }
