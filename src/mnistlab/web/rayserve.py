"""``mnistlab serve --ray-replicas N``: the same app as N Ray Serve replicas behind Serve's HTTP proxy.

Each replica is one Ray actor holding one CPU that builds the application of
``app.create_app`` (same routes, limits, errors and headers as the plain
server) around a model it loads once, when it starts. The model's files
travel with the deployment (read here: a few MB, ``MAX_MODEL_BYTES`` at most),
so the cluster's nodes need mnistlab installed but no copy of the model
folder; without ``--model`` every replica loads the reader shipped with
mnistlab.

Serve sends a replica traffic only once its constructor has returned, that
is once the model is loaded and verified; after that Serve's periodic health
check asks the same question as ``/api/ready`` (the route's own function),
and Serve replaces a replica that fails it. Serve's proxy (one per node with
a replica) listens on ``host:port``; the app's ``/api/health`` names the
replica process that answered (``worker``). ``run_on_ray`` deploys and
waits; SIGTERM or Ctrl+C shuts Serve down (replicas, proxies, controller).

Ray takes seconds to import, so it is imported in the functions here, only
when a deployment is asked for; the caller connects to the cluster first.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request

from mnistlab._atomic import locked_folder
from mnistlab.errors import ClusterError, ParameterError
from mnistlab.models.folder import MODEL_FILES, followed_link
from mnistlab.trust.predict import Predictor, load_predictor
from mnistlab.web.app import DEFAULT_MAX_UPLOAD_BYTES, create_app
from mnistlab.web.limits import BodyPace
from mnistlab.web.protocol import ConnectionLimits
from mnistlab.web.routes import ready

__all__ = [
    "APP_NAME",
    "HEALTH_CHECK_PERIOD_S",
    "MAX_MODEL_BYTES",
    "MnistlabReplica",
    "model_files",
    "ray_application",
    "run_on_ray",
]

APP_NAME = "mnistlab"  # the Serve application's name on the cluster
HEALTH_CHECK_PERIOD_S = 10.0  # seconds between Serve's readiness checks of each replica
MAX_MODEL_BYTES = 256 * 2**20  # model files shipped with the deployment; larger: a folder on each node
SHUTDOWN_REPORTS_S = 1.0  # how long after Serve's shutdown the raylet's report of it is kept from stdout
# The longest a stop signal waits to be handled. The system may hand a signal to one of Ray's threads (it does when
# the main thread already has one pending and is not running: SIGTERM and Ctrl+C back to back on a busy machine),
# and that thread takes both off the queue; their Python handler runs only once the main thread runs Python again.
# It slept an hour at a time: the command hung.
SIGNAL_POLL_S = 0.5


def model_files(model_dir: str | Path | None) -> dict[str, bytes] | None:
    """The files of ``model_dir`` (verified here first: a broken model stops before anything starts), or None
    for the shipped reader."""
    if model_dir is None:
        return None
    # A link to the folder (`ln -sfn v2 current`) followed once: followed for each file, a swap meanwhile shipped
    # one model's card beside the other's weights.
    model_dir = followed_link(model_dir)
    load_predictor(model_dir)  # a missing or broken model: its one-sentence ModelFileError, now
    # The model's own files, read under the folder's lock as load_model reads them: a save meanwhile (`train --out`
    # into it) left its temporary files in the list, gone before they were read (a FileNotFoundError traceback).
    with locked_folder(model_dir, shared=True):
        paths = sorted(p for p in Path(model_dir).iterdir() if p.name in MODEL_FILES and p.is_file())
        size = sum(p.stat().st_size for p in paths)
        if size > MAX_MODEL_BYTES:
            raise ParameterError(
                "model",
                f"The model folder holds {size / 2**20:.0f} MiB, more than the {MAX_MODEL_BYTES // 2**20} MiB "
                "shipped to Serve replicas; serve it with plain replicas (see the README).",
            )
        return {p.name: p.read_bytes() for p in paths}


class MnistlabReplica:
    """One Serve replica: loads the model once, in its constructor, then answers through ``create_app``."""

    def __init__(
        self,
        files: dict[str, bytes] | None,
        max_upload_bytes: int,
        max_decodes: int | None,
        read_timeout: float = ConnectionLimits.read_timeout,
    ) -> None:
        import cv2
        from threadpoolctl import threadpool_limits

        # One CPU per replica: as the plain server, one BLAS and one OpenCV thread (see app.serve).
        threadpool_limits(1, user_api="blas")
        cv2.setNumThreads(1)
        if files is None:
            self._predictor: Predictor = load_predictor(None)
        else:  # loaded into memory, so the folder goes at once: nothing is left on the node when Serve kills us
            with tempfile.TemporaryDirectory(prefix="mnistlab-model-") as folder:
                for name, data in files.items():
                    (Path(folder) / name).write_bytes(data)
                self._predictor = load_predictor(folder)
        self._settings: dict[str, Any] = {"max_upload_bytes": max_upload_bytes, "max_decodes": max_decodes}
        self._limits = ConnectionLimits(read_timeout=read_timeout)
        self._app: FastAPI | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The replica's application, built after the constructor; Serve runs its lifespan."""
        self._app = create_app(self._predictor, **self._settings)
        # Serve's proxy passes a body on as it comes, for as long as it takes: a stalled upload would hold one of
        # this replica's few request slots, so the body's pauses are bounded here, as the plain server's are.
        self._app.add_middleware(BodyPace, limits=self._limits)
        return self._app

    async def check_health(self) -> None:
        """Serve's health check: what ``/api/ready`` answers, raising its NotReadyError where that says 503."""
        if self._app is None:
            raise ClusterError("The replica's application is not built yet.")
        await ready(Request({"type": "http", "app": self._app}))


def ray_application(
    model_dir: str | Path | None,
    replicas: int,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_decodes: int | None = None,
    read_timeout: float = ConnectionLimits.read_timeout,
) -> Any:
    """The Serve application (``serve.Application``): ``replicas`` replicas of one CPU each serving
    ``model_dir`` (None: the shipped reader), a request body's pauses bounded by ``read_timeout`` seconds."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ParameterError("ray_replicas", f"{{param}} must be a whole number of at least 1, got {replicas!r}.")
    ConnectionLimits(read_timeout=read_timeout)  # a bad one: its one sentence, here rather than in each replica
    files = model_files(model_dir)
    from ray import serve  # seconds to import: only when a deployment is asked for

    deployment = serve.deployment(
        name="Mnistlab",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": 1},
        health_check_period_s=HEALTH_CHECK_PERIOD_S,
    )(serve.ingress()(MnistlabReplica))
    return deployment.bind(files, max_upload_bytes, max_decodes, read_timeout)


class _Stop(BaseException):
    """SIGTERM or Ctrl+C: stop serving (a BaseException, so no ``except Exception`` on the way swallows it)."""


class _Stopper:
    """The SIGTERM and Ctrl+C handler: the first signal raises ``_Stop``; any other, once the shutdown has begun
    (a second Ctrl+C, `timeout` signalling the command and its process group), is ignored, as it must not cut the
    shutdown short. ``SIG_IGN``, set in the shutdown's ``finally``, came too late alone for a signal on the heels
    of the first: its handler ran as ``signal.signal`` set it, and ``_Stop`` ended the command in a traceback, with
    Serve left running."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            raise _Stop


def run_on_ray(
    application: Any,
    host: str,
    port: int,
    *,
    on_ready: Callable[[str], None] | None = None,
    cpus: int | None = None,
) -> None:
    """Deploy ``application`` on the connected Ray cluster, its proxies on ``host:port``; block until SIGTERM or
    Ctrl+C, then shut Serve down (its replicas, proxies and controller). ``on_ready(url)`` runs once every
    replica answers. ``cpus``: the CPUs its replicas take, refused unless that many are free now (Serve would
    wait, silently and without end, for CPUs other work holds)."""
    import ray
    from ray import serve  # seconds to import: only when a deployment is asked for

    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_on_ray must run in the main thread: it waits for SIGTERM and Ctrl+C.")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its INFO lines ("Started Serve ...") are noise here
    already = serve.status()
    if already.applications or already.proxies:  # ours would replace its settings, and our shutdown end it
        raise ClusterError(
            f"Ray Serve already runs on this cluster (applications: {', '.join(already.applications) or 'none'}); "
            "stop it (`serve shutdown`) or use another cluster."
        )
    free = int(ray.available_resources().get("CPU", 0)) if cpus is not None else 0
    if cpus is not None and cpus > free:
        raise ClusterError(
            f"{cpus} replica(s) need {cpus} CPUs (one each), and {free} of the cluster's "
            f"{int(ray.cluster_resources().get('CPU', 0))} are free (other work holds the rest); ask for fewer "
            "replicas, add nodes, or wait for that work to end."
        )
    stop = _Stopper()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        try:
            serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
        except _Stop:
            raise
        except Exception as exc:  # a replica that failed to start, a port the proxy could not take
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ClusterError(
                f"The Serve deployment failed to start ({type(exc).__name__}: {first}); "
                "see the replicas' logs under the cluster's session folder."
            ) from None
        if on_ready is not None:
            on_ready(f"http://{host}:{port}")
        while True:  # until a signal raises _Stop in this thread, within SIGNAL_POLL_S
            time.sleep(SIGNAL_POLL_S)
    except _Stop:
        pass
    finally:
        # From here on a signal must not cut the shutdown short: one already pending runs ``stop``, which ignores
        # it, as ``signal.signal`` sets SIG_IGN; later ones never reach the process.
        stop.stopping = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _shutdown_quietly(serve)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _shutdown_quietly(serve: Any) -> None:
    """``serve.shutdown()``, its report kept off stdout. Serve ends its controller while the controller's own
    graceful_shutdown call waits (by design); the raylet reports that call to the driver, which printed it on
    stdout whatever log_to_driver says, in colour: "(raylet) Task ServeController.graceful_shutdown failed. ...
    The actor is dead because it was killed by `ray.kill`.", after a clean stop."""
    driver: Any = sys.modules["ray._private.worker"]  # its switch for printing what the cluster reports
    printing = getattr(driver, "_worker_logs_enabled", True)
    driver._worker_logs_enabled = False
    try:
        serve.shutdown()
        time.sleep(SHUTDOWN_REPORTS_S)  # the report comes through another thread, a moment later
    finally:
        driver._worker_logs_enabled = printing
