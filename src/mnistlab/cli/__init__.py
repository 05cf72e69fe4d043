"""The ``mnistlab`` command line: one module per group of commands.

``data`` finds and draws datasets, ``lab`` trains, evaluates, compares and
exports models, ``sweep`` searches a recipe's parameters with Ray Tune, ``predict`` reads digits in files and serves the web page.
Their commands are merged into one ``app``; ``common.Group`` turns every
``MnistlabError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

import typer

from mnistlab._version import __version__
from mnistlab.cli import data, lab, predict, sweep
from mnistlab.cli.common import Group, writable_streams

__all__ = ["app", "main"]

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: typer's rich panels import rich.markdown, half of `--help`'s time
    help="Classify handwritten digits: data, models, photos and a web page.",
)
app.add_typer(data.data_app, name="data")
for commands in (data.app, lab.app, predict.app, sweep.app):
    app.add_typer(commands)  # no name: the commands join the top level


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnistlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
):
    """mnistlab: verified MNIST data, classic and CNN models, photos of digits, a draw-a-digit page."""


def main() -> None:
    # SIGTERM (kill, a job scheduler, a container stopping) ends a command as Ctrl+C
    # does: `finally` blocks run, temporary files go, worker processes are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    # So does SIGHUP (the terminal closed, an ssh session dropped), where it is not ignored (nohup): it ended the
    # command outright, a comparison's run left RUNNING in the store for ever, temporary files left behind.
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
        signal.signal(signal.SIGHUP, _terminate)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where it is ignored (a background job)
        signal.signal(signal.SIGINT, _interrupt)
    sys.unraisablehook = _unraisable
    if sys.stdout is None:  # started with standard output closed (>&-): every line would vanish, exit 0
        typer.echo("Error: Standard output is closed; send it to a file, or to /dev/null to drop it.", err=True)
        sys.exit(2)
    writable_streams()
    try:
        app()
    except BaseException as exc:
        # What a library made of our SystemExit keeps our code, without a traceback: Ray's wait made it "exit code
        # 1", Tune's parsing of a trial's arguments (which catches argparse's SystemExit) a TuneError.
        if _stopped_by:
            raise SystemExit(128 + _stopped_by[0]) from None
        # So does what a library made of a Ctrl+C's KeyboardInterrupt (onnxruntime's import, interrupted, raised
        # "ImportError: initialization failed"): 130, as any Ctrl+C; a command's own exit code is kept.
        if _interrupted and not isinstance(exc, SystemExit):
            raise SystemExit(128 + signal.SIGINT) from None
        raise


_stopped_by: list[int] = []  # the signal that ended the command
_interrupted: list[int] = []  # Ctrl+C was pressed


def _terminate(signum: int, frame) -> None:
    _stopped_by.append(signum)
    raise SystemExit(128 + signum)  # the shell's code for "killed by this signal"


def _interrupt(signum: int, frame) -> None:
    _interrupted.append(signum)
    raise KeyboardInterrupt


def _unraisable(unraisable) -> None:
    """A stop that a handler raised inside a finalizer (a ``__del__``, a garbage-collected weakref's callback, as
    SQLAlchemy's while compare opens its store) is dropped by Python: "Exception ignored in ..." and its traceback,
    and the command went on to the end, exit 0. Its signal is sent again, a moment later from a thread: made
    pending here, its handler would run, and its exception be dropped, here (within another finalizer: again)."""
    if unraisable.exc_type is KeyboardInterrupt and _interrupted:
        _signal_again(signal.SIGINT)
    elif unraisable.exc_type is SystemExit and _stopped_by:
        _signal_again(_stopped_by[-1])
    else:
        sys.__unraisablehook__(unraisable)


def _signal_again(signum: int) -> None:
    main = threading.main_thread().ident or 0

    def later() -> None:
        time.sleep(0.05)  # the finalizer left
        signal.pthread_kill(main, signum)

    threading.Thread(target=later, name="mnistlab-signal-again", daemon=True).start()
