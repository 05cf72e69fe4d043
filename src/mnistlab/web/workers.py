"""``mnistlab serve --workers N``: N server processes on one port, for machines with more cores.

The parent loads and verifies the model (so a broken one stops everything
with one line, before any worker starts), then forks the workers: each
inherits the loaded model (its memory shared until written) and listens on
its own socket bound with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers. The app keeps no state between requests, so
any worker may answer any request, and N such servers may as well sit
behind a load balancer.

SIGTERM (or Ctrl+C) to the parent is passed to every worker; each stops
accepting, finishes the requests it has (``GRACEFUL_SHUTDOWN`` seconds at
most), and exits; the parent exits after the last. A worker that dies on
its own is replaced; one whose parent dies (``kill -9``) gets SIGTERM and
stops as above.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time
from types import FrameType

import uvicorn
from threadpoolctl import threadpool_limits

from mnistlab._processes import end_with_parent
from mnistlab.errors import MnistlabError, ParameterError

__all__ = ["GRACEFUL_SHUTDOWN", "MAX_WORKERS", "reuseport_socket", "run_workers"]

# Server processes at most (``serve --workers``'s bound): more than any machine mnistlab runs on has cores.
MAX_WORKERS = 256

# Seconds a stopping server gives the requests in flight before it closes their connections.
GRACEFUL_SHUTDOWN = 30.0
# A worker that dies sooner than this after its start is replaced only after this long: no fork storm.
RESTART_PAUSE = 1.0

log = logging.getLogger("uvicorn.error")


def reuseport_socket(host: str, port: int, backlog: int = 2048, *, shared: bool = True) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes may bind too (``SO_REUSEPORT``); not
    ``shared``: one that fails where anything listens already, ``SO_REUSEPORT`` sockets of this user included."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:  # not the port's doing
            raise ParameterError(
                "host",
                f"{{param}} {host!r} is not an address of this machine ({exc.strerror}); use 127.0.0.1 or 0.0.0.0.",
            ) from None
        raise ParameterError(
            "port", f"Cannot listen on {host}:{port} ({exc.strerror}); choose another port, or stop what holds it."
        ) from None
    sock.listen(backlog)
    return sock


def _worker(config: uvicorn.Config, parent: int) -> None:
    """One worker process: serve on its own reuse-port socket until SIGTERM, then exit.

    One OpenMP thread: GNU OpenMP's threads, started in the parent before the fork (scikit-learn's k-NN
    calibrating a model saved without its cut), do not exist here, and a parallel loop on more than one thread
    waits for them forever (every worker hung before it was ready). The workers are the parallelism.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # uvicorn installs its own once it runs
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threadpool_limits(1, user_api="openmp")
    end_with_parent(parent)
    code = 1
    try:
        sock = reuseport_socket(config.host, config.port, config.backlog)
        uvicorn.Server(config).run(sockets=[sock])
        code = 0
    except MnistlabError as exc:  # said, or the parent's "exited with code 1" is all the log would tell
        log.error("Worker %d: %s", os.getpid(), exc)
    except Exception:
        log.exception("Worker %d failed", os.getpid())
    finally:
        os._exit(code)  # never return into the parent's code


def _how_it_ended(status: int) -> str:
    """A wait status in words: ``os.wait``'s 9 is a SIGKILL, its 256 an exit code of 1."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name of its own
        return f"was killed by signal {-code}"


def run_workers(config: uvicorn.Config, workers: int) -> None:
    """Serve ``config`` from ``workers`` forked processes until SIGTERM or SIGINT; replace any that dies."""
    config.timeout_graceful_shutdown = int(GRACEFUL_SHUTDOWN)
    # A port taken by another program: one line, exit 2. Not shared: another `serve --workers` (started while
    # this one loaded its model) listens with SO_REUSEPORT too, and both served, the kernel splitting the clients.
    reuseport_socket(config.host, config.port, shared=False).close()
    children: dict[int, float] = {}  # pid -> when it started
    stopping = False

    def start() -> None:
        if stopping:  # SIGTERM came while a dead worker waited to be replaced (RESTART_PAUSE): none is
            return
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _worker(config, parent)
        children[pid] = time.monotonic()
        if stopping:  # ... or came as it forked, before ``stop`` could see it
            os.kill(pid, signal.SIGTERM)

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:  # already gone: reaped below
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        start()
    url = f"http://[{config.host}]:{config.port}" if ":" in config.host else f"http://{config.host}:{config.port}"
    pids = " ".join(map(str, children))
    log.info("Serving on %s from %d worker processes: %s (Press CTRL+C to quit)", url, workers, pids)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if stopping or started is None:
            continue
        log.warning("Worker %d %s; starting another.", pid, _how_it_ended(status))
        if time.monotonic() - started < RESTART_PAUSE:
            time.sleep(RESTART_PAUSE)
        start()
