"""What every command shares: the error handler, the consoles, the step spinner.

Every user mistake surfaces as a ``MnistlabError``; ``Group.invoke`` turns it
into one line on stderr and exit code 2, so no command prints a traceback for
bad input. A ``ParameterError`` names a library parameter (``limit``); the
line names the flag that set it (``--limit``).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from mnistlab._text import json_safe
from mnistlab.data.home import home_path, tilde_path
from mnistlab.errors import MnistlabError, ParameterError
from mnistlab.lab.options import folder_meant

__all__ = [
    "writable_streams",
    "mlflow_ui",
    "Group",
    "error_text",
    "usage_text",
    "out",
    "err",
    "step_progress",
    "given_path",
    "at_home",
    "given_file",
]

if os.environ.get("COLUMNS", "").strip() == "0":  # a terminal of no known size (docker's): rich printed nothing,
    del os.environ["COLUMNS"]  # help pages and tables alike; unset, it asks the terminal, else takes 80
# emoji=False: a file name is text, and rich wrote ":cat:.png" as "🐱.png" (in tables, errors, "wrote ...")
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)

# click's exceptions, from whichever click typer runs on (its own copy in recent versions).
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
_NO_ARGS_IS_HELP = getattr(sys.modules[_CLICK_ERROR.__module__], "NoArgsIsHelpError", ())
_ABORT = tuple({typer.Abort, getattr(sys.modules[_CLICK_ERROR.__module__], "Abort", typer.Abort)})

# The flag that sets each library parameter, for error messages.
FLAGS = {
    "cv": "--cv",
    "split": "--split",
    "test_size": "--test-size",
    "seed": "--seed",
    "limit": "--limit",
    "n_jobs": "--n-jobs",
    "target": "--target",
    "out_dir": "--out",
    "seeds": "--seeds",
    "baseline": "--baseline",
    "datasets": "--dataset",
    "update_models": "--update-models",
    "out": "--out",
    "out_path": "--out",
    "onnx_file": "--onnx",
    "save_preprocessed": "--save-preprocessed",
    "param": "--param",
    "samples": "--samples",
    "max_concurrent": "--concurrent",
    "data_dir": "--data-dir",
    "tracking_uri": "--tracking-uri",
}


def _unencodable(exc: UnicodeError) -> tuple[str | bytes, int]:
    """What stdout and stderr write for a character their encoding lacks: a file name's undecodable byte
    (``surrogateescape``'s stand-in) as that byte, as ``ls`` writes it, anything else (``±``, ``✓``, ``é`` on an
    ASCII or Latin-1 stream) as a backslash escape."""
    if isinstance(exc, UnicodeEncodeError):  # one character at a time: a name may mix both kinds
        char = exc.object[exc.start]
        if "\udc80" <= char <= "\udcff":
            return bytes([ord(char) - 0xDC00]), exc.start + 1
        exc = UnicodeEncodeError(exc.encoding, exc.object, exc.start, exc.start + 1, exc.reason)
    return codecs.backslashreplace_errors(exc)


codecs.register_error("mnistlab", _unencodable)


class StdoutError(OSError):
    """Standard output could not be written: ``> file`` on a full disk, ``1< file``, an I/O error."""


class _Stdout(io.TextIOWrapper):
    """Standard output whose failures (a broken pipe aside, which click handles) are ``StdoutError``: the
    command line tells them from its own files' errors, and says them in one line instead of a traceback."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror) from None

    def flush(self) -> None:
        try:
            super().flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc.errno, exc.strerror) from None


def writable_streams() -> None:
    """Make stdout and stderr write any text: under ``PYTHONIOENCODING=ascii``, ``LC_ALL=C PYTHONUTF8=0`` or a
    UTF-8 locale's strict stdout, a ``±`` or a file name not in UTF-8 raised ``UnicodeEncodeError`` mid-table.
    Standard output's own failures become ``StdoutError``."""
    if isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(errors="mnistlab")
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        stream.flush()
        sys.stdout = _Stdout(
            stream.detach(), encoding=stream.encoding, errors="mnistlab", line_buffering=stream.line_buffering
        )


def given_path(value: str) -> Path:
    """A path option's value (typer's ``parser``): an empty one is refused as a usage error, where typer would
    take ``Path("")`` for the current folder, which no one means by giving nothing."""
    if value == "":
        raise typer.BadParameter("is empty, which would mean the current folder; give it a path")
    if value != "-" and Path(value) == Path("-"):  # ./-, a file named -: pathlib would make it -, standard input
        return Path(value).absolute()
    return Path(at_home(value))


def at_home(value: str | os.PathLike, param: str | None = None) -> str | os.PathLike:
    """``Path(value)``, a leading ``~`` (``~user/...``) taken for the home folder (that user's), as a shell takes
    it where it expands one: left to mnistlab (``--out=~/models/knn``, which bash passes on as it is; a quoted path,
    a Makefile's), it made a folder named ``~`` in the current one, where ``--data-dir``, ``--tracking-uri`` and an
    image's path took it for home. A ``~user/...`` of no user is a usage error of the option being parsed, or of
    ``param`` (a ``ParameterError``) where one is named. Any other value is returned as it is ("" too: refused
    later as empty, not made the current folder; ``~draft.png`` alone, a file's name). The Python API's
    ``home_path``, which it is."""
    if param is None:
        return tilde_path(value, lambda why: typer.BadParameter(f"{value} {why}; give its full path"))
    return home_path(value, param)


def given_file(value: str) -> Path:
    """A file option's value: ``given_path``, and one ending in ``/`` refused, which names a folder where
    ``Path`` would drop the ``/`` and the file be written under the folder's name."""
    meant = folder_meant(value)
    if meant is not None:
        raise typer.BadParameter(meant)
    return given_path(value)


# Characters that move a terminal's cursor, recolour or clear it, or turn the text after them around (ESC, CR,
# newline, C1, bidirectional overrides): a file named "x\x1b[2J.png" cleared the screen in predict's table.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` (a file name, a message naming one) with each control character written as its escape (``\\x1b``,
    ``\\n``, ``\\u202e``), so that a name prints as one line of the characters it holds."""
    return _HIDDEN.sub(lambda m: m[0].encode("unicode_escape").decode(), text)


def json_line(value: Any) -> str:
    """``value`` as one line of JSON for ``--json``: a file name that is not UTF-8 (b"caf\\xe9") as ``caf\\xe9``,
    where ``json.dumps`` wrote a lone surrogate (``\\udce9``) that jq and JavaScript read as U+FFFD."""
    return json.dumps(json_safe(value))


def error_text(exc: MnistlabError) -> str:
    """The error's sentence, with a library parameter renamed to its flag."""
    if isinstance(exc, ParameterError):
        return exc.named(FLAGS.get(exc.param, exc.param))
    return str(exc)


def name_too_long(exc: OSError) -> str:
    """The sentence for a path the system refused as too long (``ENAMETOOLONG``), which Python raised as an
    ``OSError`` and a traceback from wherever the path was first looked at."""
    path = exc.filename if exc.filename is not None else "given"
    return (
        f"The path {os.fsdecode(path)} is too long: a name in it is longer than the file system allows (255 bytes, "
        "or 4,096 for the whole path); choose a shorter name."
    )


class Group(TyperGroup):
    """A command group that prints a ``MnistlabError`` or a usage error as one line and exits 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MnistlabError as exc:
            typer.echo(f"Error: {visible(error_text(exc))}", err=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a name of a path given over 255 bytes: refused wherever the path is first used
            if exc.errno != errno.ENAMETOOLONG:
                raise
            typer.echo(f"Error: {name_too_long(exc)}", err=True)
            raise typer.Exit(2) from None
        except (MemoryError, BrokenProcessPool) as exc:  # numpy's "Unable to allocate 1.00 GiB ...", a worker
            text = out_of_memory(self, ctx, exc)  # the system killed (joblib's TerminatedWorkerError): a sentence
            del exc  # its traceback's frames hold the arrays that filled memory
            typer.echo(f"Error: {text}", err=True)
            raise typer.Exit(2) from None

    def format_commands(self, ctx, formatter):
        """Each command's first sentence whole, wrapped under its name: click cut it at the line's end ("...")."""
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        rows = [
            (name, command.get_short_help_str(limit=1000))
            for name, command in commands
            if command and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command line; a usage error (unknown option, bad value, missing argument) is one line too.

        click's own handling prints a usage block and a boxed panel; here it is
        the one ``Error:`` line every other mistake gets, with exit code 2.
        """
        plain_flags(self)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # `mnistlab` alone: the help, and click's exit code 2, as before
            typer.echo(exc.ctx.get_help())
            code = exc.exit_code
        except _CLICK_ERROR as exc:
            typer.echo(f"Error: {usage_text(exc)}", err=True)
            code = exc.exit_code
        except _ABORT:  # Ctrl+C at a prompt, or end of input
            typer.echo("Aborted.", err=True)
            code = 1
        except StdoutError as exc:
            stdout_lost()
            typer.echo(
                f"Error: cannot write to standard output ({exc.strerror}); send it to a file or a pipe that can take it.",
                err=True,
            )
            code = 2
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def out_of_memory(group: TyperGroup, ctx, exc: MemoryError | BrokenProcessPool) -> str:
    """What running out of memory in a command says: the command, what could not be allocated (or that a worker
    process was killed, as the system's out-of-memory killer does), and the options of that command that ask for
    less."""
    name = ctx.invoked_subcommand
    command = group.get_command(ctx, name) if name else None
    opts = {o for p in (command.params if command else []) for o in getattr(p, "opts", [])}
    asks_for_less = {"--limit": "a smaller --limit", "--n-jobs": "--n-jobs 1", "--jobs": "--jobs 1"}
    less = [hint for option, hint in asks_for_less.items() if option in opts]
    words = [name] if name else []
    while ctx.parent is not None:  # `mnistlab data info`, however the program was started (python -m ...)
        words.insert(0, ctx.info_name)
        ctx = ctx.parent
    command_line, what = " ".join(["mnistlab", *words]), str(exc).strip()
    advice = f"{'try ' + ' or '.join(less) + ', or ' if less else ''}close other programs and run it again."
    if isinstance(exc, BrokenProcessPool):  # loky's says which signal: "exit codes of the workers are {SIGKILL(-9)}"
        codes = re.search(r"exit codes of the workers are (\{[^}]*\})", what)
        killed = f" ({codes[1]})" if codes else ""
        return f"a worker process of `{command_line}` was killed{killed}, most likely for lack of memory; {advice}"
    return f"not enough memory for `{command_line}`{f' ({what})' if what else ''}; {advice}"


def stdout_lost() -> None:
    """Send what standard output still holds to /dev/null, which Python's flush at exit would try again."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


_PLACEHOLDERS = {"int": "N", "float": "NUMBER", "str": "TEXT", "Path": "PATH"}


def plain_flags(command: Any, help_names: tuple[str, ...] = ("--help",)) -> None:
    """Help pages that show a flag (``--json``, ``--help``) bare and a value by a word, for ``command`` and every
    command below it: typer writes a parameter's Python type where it has no metavar, ``--json <bool>`` (as if it
    took a value), ``--seed <int>``, ``files... <list[Path]>`` (as if it took a list)."""
    help_option = command.get_help_option(command.context_class(command, help_option_names=list(help_names)))
    for param in [*command.params, help_option]:  # click makes --help once and keeps it (None: no --help)
        if param is None or param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = None if param.count else ""
        elif param.param_type_name == "argument":  # its name says what it takes: "files...", "recipe"
            param.display_type_rich = lambda ctx: None
        else:
            param.metavar = _PLACEHOLDERS.get(param.bare_type(), None)
    for sub in getattr(command, "commands", {}).values():
        plain_flags(sub, help_names)


def usage_text(exc: Any) -> str:
    """A usage error as one sentence that says where the help is."""
    message = exc.format_message().strip().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    where = f"`{ctx.command_path} --help`" if ctx is not None else "`mnistlab --help`"
    return f"{message}; see {where}."


@contextmanager
def step_progress(enabled: bool = True) -> Iterator:
    """Yield ``progress(message)``: a live spinner with elapsed time on stderr, and one
    finished line per step (also when stderr is not a terminal, e.g. in a log).

    While the work runs, whatever a library prints to stdout goes to stderr (Ray's
    driver prints its workers' system errors there): the command's own output,
    ``--json`` above all, is printed after the block and stays alone on stdout.
    """
    with contextlib.redirect_stdout(sys.stderr):
        yield from _steps(enabled)


def _steps(enabled: bool) -> Iterator:
    if not enabled:
        yield None
        return
    bar = None
    # A log, a pipe or a dumb terminal (TERM=dumb, which draws no spinner) gets the finished lines alone:
    # stopping a spinner there left a blank line.
    if err.is_terminal and not err.is_dumb_terminal:
        # rich.progress is only needed once a long command runs, not for --help.
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
        )
    task, message, start = None, None, 0.0
    with bar if bar is not None else contextlib.nullcontext():

        def finish_step():
            if message is not None:
                seconds = time.perf_counter() - start
                err.print(f"[green]✓[/green] {escape(message)} [dim]({seconds:.1f} s)[/dim]", soft_wrap=True)

        def update(text: str):
            nonlocal task, message, start
            finish_step()
            message, start = text, time.perf_counter()
            if bar is not None:
                if task is not None:
                    bar.remove_task(task)
                task = bar.add_task(escape(text), total=None)

        yield update
        finish_step()


def mlflow_ui(uri: str, *, quoted: bool = False) -> str:
    """What shows the runs of the tracking store ``uri`` in MLflow's web page: ``mlflow ui`` opened on that store
    (a bare `mlflow ui` opens an empty one in the current folder), or, for a tracking server, its own page
    (``mlflow ui --backend-store-uri http://...`` stops with a traceback). ``quoted``: a command in backticks."""
    if uri.lower().startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    return f"`{command}`" if quoted else command
