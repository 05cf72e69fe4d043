"""The command line's output where users run it: other encodings, file names not in UTF-8, odd terminals."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw


def _photo(path: Path) -> Path:
    """A one on white paper, written under ``path`` (a name of any bytes)."""
    image = Image.new("L", (80, 80), 255)
    ImageDraw.Draw(image).line([(40, 12), (40, 68)], fill=0, width=8)
    with open(os.fsencode(path), "wb") as file:
        image.save(file, format="PNG")
    return path


def _mnistlab(*args: str, env: dict[str, str] | None = None, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """``python -m mnistlab ARGS`` in a fresh process; output kept as bytes, as it reaches a pipe. 400 columns
    unless ``env`` says otherwise: a table folds a long file name (pytest's folders under xdist are long) over
    lines at 80, and the name looked for was not found whole."""
    return subprocess.run(
        [sys.executable, "-m", "mnistlab", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        timeout=60,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
    )


@pytest.mark.parametrize(
    ("env", "name", "shown"),
    [
        ({"PYTHONIOENCODING": "ascii"}, "été—✓.png", rb"\xe9t\xe9\u2014\u2713.png"),
        ({"PYTHONIOENCODING": "latin-1"}, "été—✓.png", b"\xe9t\xe9\\u2014\\u2713.png"),
        ({"PYTHONIOENCODING": "utf-8"}, os.fsdecode(b"\xff.png"), b"\xff.png"),
        ({"PYTHONIOENCODING": "ascii"}, os.fsdecode(b"\xff") + "é.png", b"\xff\\xe9.png"),
    ],
)
def test_predict_prints_any_file_name_on_any_encoding(tmp_path, env, name, shown):
    """A file name the output's encoding cannot write (``é`` on ASCII, ``—`` on Latin-1, a byte not in UTF-8
    on a UTF-8 locale's strict stdout) ended ``predict``'s table in a ``UnicodeEncodeError`` traceback; the
    name is written escaped, and a byte not in UTF-8 as that byte, as ``ls`` writes it."""
    photo = _photo(tmp_path / name)
    done = _mnistlab("predict", str(photo), env=env)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    assert shown in done.stdout, done.stdout


@pytest.mark.parametrize("env", [{}, {"LC_ALL": "C", "PYTHONUTF8": "0"}], ids=["utf-8", "ascii-locale"])
def test_predict_json_names_a_file_not_in_utf8_in_valid_utf8(tmp_path, env):
    """``predict --json`` wrote the name b"caf\\xe9/\\xff.png" as lone surrogates ("caf\\udce9"), which jq and
    JavaScript read as U+FFFD (two such files, one name) and strict readers refuse; under LC_ALL=C with UTF-8
    mode off, "é.png" itself came out so. Now UTF-8 stays itself and any other byte is written \\xe9."""
    folder = os.fsdecode(bytes(tmp_path) + b"/caf\xe9")
    os.mkdir(folder)
    for name in (b"\xff.png", "é.png".encode()):
        _photo(Path(folder) / os.fsdecode(name))
    done = _mnistlab("predict", folder, str(Path(folder) / "gone.png"), "--json", env=env)
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    lines = [json.loads(line.decode("utf-8")) for line in done.stdout.splitlines()]  # UTF-8 JSON, one per line
    where = f"{tmp_path}/caf\\xe9"
    assert sorted(line["file"] for line in lines[:2]) == [f"{where}/\\xff.png", f"{where}/é.png"]
    assert [line["digit"] for line in lines[:2]] == [1, 1]
    assert lines[2]["file"] == f"{where}/gone.png" and lines[2]["error"].startswith(f"{where}/gone.png ")
    assert not any("\\ud" in line.decode() for line in done.stdout.splitlines())  # no escaped surrogate


def test_control_characters_in_file_names_are_shown_escaped_not_sent_to_the_terminal(tmp_path):
    """A file named "x\\x1b[2J.png" cleared the terminal when `predict` printed its table (the name's ESC
    sequence went out raw), "a\\nb.png" broke its row in two and "\\u202egnp.exe" showed as "exe.png"; its error
    line did the same. Each such character is now shown as its escape."""
    names = ["x\x1b[2J.png", "a\nb.png", "rtl\u202egnp.exe"]
    for name in names:
        _photo(tmp_path / name)
    done = _mnistlab("predict", *(str(tmp_path / n) for n in names), str(tmp_path / "gone\x1b]0;pwned\x07.png"))
    assert done.returncode == 1, done.stderr.decode(errors="replace")
    for shown in (rb"x\x1b[2J.png", rb"a\nb.png", rb"rtl\u202egnp.exe"):
        assert shown in done.stdout, done.stdout
    assert rb"gone\x1b]0;pwned\x07.png does not exist" in done.stderr, done.stderr
    assert not any(byte in done.stdout + done.stderr for byte in (b"\x1b", b"\x07", "\u202e".encode()))
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "says"), [(["--help"], b"recipes"), (["recipes"], b"sgd-hinge"), (["predict", "--help"], b"--top")]
)
def test_a_terminal_width_of_0_still_gets_the_output(args, says):
    """``COLUMNS=0`` (a terminal of no known size, as in a container) made every help page and table empty,
    with exit 0: rich took it for a width of 0 columns."""
    done = _mnistlab(*args, env={"COLUMNS": "0"})
    assert done.returncode == 0 and says in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("target", "mode", "why"), [("/dev/full", "w", "No space left"), (os.devnull, "r", "Bad file")]
)
@pytest.mark.parametrize("args", [["recipes"], ["--help"], ["data", "info", "digits", "--json"]])
def test_output_that_cannot_be_written_is_one_error_line(args, target, mode, why):
    """``mnistlab recipes > out.txt`` on a full disk (``/dev/full``), or with standard output open for reading
    only (``1< file``), ended in an ``OSError`` traceback, exit 1."""
    with open(target, mode) as stdout:
        done = _mnistlab(*args, stdout=stdout)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("Error: cannot write to standard output (") and why in lines[0], lines


@pytest.mark.parametrize("args", [["recipes"], ["data", "info", "digits", "--json"]])
def test_a_closed_standard_output_is_one_error_line(args):
    """``mnistlab recipes >&-`` (standard output closed) printed nothing and exited 0, as if it had answered."""
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab", *args],
        preexec_fn=lambda: os.close(1),  # as the shell's >&-: Python then starts without sys.stdout
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.decode().splitlines() == [
        "Error: Standard output is closed; send it to a file, or to /dev/null to drop it."
    ], done.stderr


def test_file_names_are_printed_as_they_are_not_as_emoji(tmp_path):
    """rich turned ``:cat:`` in a file name into an emoji: ``predict :cat:.png`` listed "🐱.png", and the
    error for a missing ``:cat:.png`` named "🐱.png", a file that is not there."""
    photo = _photo(tmp_path / ":cat:.png")
    done = _mnistlab("predict", str(photo))
    assert done.returncode == 0 and b":cat:.png" in done.stdout and "🐱".encode() not in done.stdout, done.stdout
    missing = _mnistlab("predict", str(tmp_path / "gone" / ":thumbs_up:.png"))
    assert missing.returncode == 2 and b":thumbs_up:.png" in missing.stderr, missing.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """``mnistlab predict DIR --json | head -1``: standard output's broken pipe was raised with itself as its
    cause, a cycle that left the files' generator to the garbage collector, which closed it in the worker pool's
    own thread: "Exception ignored ... RuntimeError: cannot join current thread" on stderr, 13 lines."""
    folder = tmp_path / "many"
    folder.mkdir()
    photo = _photo(tmp_path / "one.png")
    for i in range(400):  # enough for the workers to be busy when the reader goes
        os.link(photo, folder / f"{i:03d}.png")
    command = [sys.executable, "-m", "mnistlab", "predict", str(folder), "--json", "--jobs", "2"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert run.stdout.readline().startswith(b'{"file": ')
        run.stdout.close()  # as `head -1` does once it has its line
        stderr = run.stderr.read()
        run.wait(timeout=60)
    finally:
        run.kill()
    assert stderr == b""
    assert run.returncode == 1  # click's exit for a closed pipe, as before


def _on_a_terminal(args: list[str], env: dict[str, str], until: bytes | None = None, timeout: float = 120) -> bytes:
    """What ``python -m mnistlab ARGS`` writes on a terminal (a pseudo-terminal as its stdout and stderr, an xterm
    unless ``env`` says otherwise) until it ends, or, given ``until``, up to the line holding it, when the command
    is stopped with SIGTERM and its last lines read too."""
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "mnistlab", *args]
    plain = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    run = subprocess.Popen(command, stdout=terminal, stderr=terminal, env={**plain, "TERM": "xterm", **env})
    os.close(terminal)
    seen, deadline = b"", time.monotonic() + timeout
    try:
        while until is None or until not in seen:
            assert time.monotonic() < deadline, seen
            if select.select([controller], [], [], 0.5)[0]:
                try:
                    more = os.read(controller, 65536)
                except OSError:  # the terminal's other end closed: the command ended
                    more = b""
                if not more:
                    break
                seen += more
        assert until is None or until in seen, seen
        if until is not None:
            run.send_signal(signal.SIGTERM)
            while select.select([controller], [], [], 30)[0]:
                try:
                    more = os.read(controller, 65536)
                except OSError:
                    break
                if not more:
                    break
                seen += more
        run.wait(timeout=30)
    finally:
        run.kill()
        os.close(controller)
    return seen


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_serve_logs_without_colour_where_the_terminal_says_so(env):
    """``NO_COLOR=1 mnistlab serve`` (https://no-color.org), and ``serve`` in a dumb terminal (Emacs' shell), wrote
    uvicorn's log lines in colour on a terminal ("\\x1b[32mINFO\\x1b[0m:"), where every other command's output
    honours both."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    coloured = _on_a_terminal(["serve", "--port", str(port)], {}, b"Uvicorn running")
    assert b"\x1b[32mINFO" in coloured, coloured  # a terminal that takes colours gets them
    plain = _on_a_terminal(["serve", "--port", str(port)], env, b"Uvicorn running")
    assert b"\x1b[" not in plain and b"INFO:     Uvicorn running on" in plain, plain


def test_a_dumb_terminal_gets_the_steps_without_a_blank_line(tmp_path):
    """``mnistlab train`` in a dumb terminal (Emacs' shell, ``TERM=dumb``), which cannot draw a spinner, left the
    spinner's blank line between its steps and its result, as a pipe once did."""
    args = ["train", "logreg", "--limit", "300", "--cv", "0", "--out", str(tmp_path / "model")]
    seen = _on_a_terminal(args, {"TERM": "dumb"}).replace(b"\r\n", b"\n")
    assert b"\x1b[" not in seen and b"\r" not in seen, seen
    assert b"\n\n" not in seen and b"saving to" in seen, seen


def test_sigterm_caught_by_a_library_and_raised_as_its_own_error_still_exits_143_without_a_traceback():
    # Tune parses each trial's arguments inside `except SystemExit` (argparse's way to fail) and raises a TuneError:
    # a sweep sent SIGTERM at that moment printed two tracebacks and exited 1, not 143.
    script = (
        "import os, signal, time\n"
        "import mnistlab.cli as cli\n"
        "def command():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(10)\n"
        "    except SystemExit:\n"
        "        raise RuntimeError('a library error made of the SystemExit')\n"
        "cli.app = command\n"
        "cli.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_ctrl_c_made_into_a_library_error_still_exits_130_without_a_traceback():
    script = (
        "import os, signal, time\n"
        "import mnistlab.cli as cli\n"
        "def command():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(10)\n"
        "    except KeyboardInterrupt:\n"
        "        raise ImportError('initialization failed')\n"
        "cli.app = command\n"
        "cli.main()\n"
    )
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731  # not ignored, as in a background job
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, preexec_fn=restore
    )
    assert done.returncode == 128 + signal.SIGINT, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_ctrl_c_while_predict_imports_onnxruntime_exits_130_without_a_traceback(tmp_path):
    # pybind11 turns a KeyboardInterrupt raised while onnxruntime's extension initialises into "ImportError:
    # initialization failed": a Ctrl+C in predict's first half second was 40 lines of traceback, exit 1 (3 in 6).
    photo = _photo(tmp_path / "one.png")
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    for _ in range(6):
        run = subprocess.Popen(
            [sys.executable, "-m", "mnistlab", "predict", str(photo)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=restore,
        )
        deadline = time.monotonic() + 60
        while run.poll() is None and time.monotonic() < deadline:  # Ctrl+C once the extension is mapped
            with contextlib.suppress(OSError):
                if "onnxruntime_pybind11_state" in Path(f"/proc/{run.pid}/maps").read_text():
                    run.send_signal(signal.SIGINT)
                    break
            time.sleep(0.001)
        stderr = run.communicate(timeout=60)[1].decode(errors="replace")
        assert run.returncode in (0, 128 + signal.SIGINT), stderr
        assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_that_lands_in_a_finalizer_still_stops_the_command(sig):
    # Python drops an exception raised in a __del__ or a weakref's callback ("Exception ignored in ..."): a Ctrl+C
    # or SIGTERM whose handler ran in one (SQLAlchemy's, as compare opened its store) was a traceback, and the
    # command went on to the end, exit 0.
    script = (
        "import os, signal, sys, time\n"
        "import mnistlab.cli as cli\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        f"        os.kill(os.getpid(), {int(sig)})\n"
        "        for _ in range(10000):  # the handler runs here, inside the finalizer\n"
        "            pass\n"
        "def command():\n"
        "    Finalized()\n"
        "    time.sleep(10)\n"
        "    print('went on as if not stopped')\n"
        "cli.app = command\n"
        "cli.main()\n"
    )
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, preexec_fn=restore
    )
    assert done.returncode == 128 + sig and done.stdout == "", (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "ignored" not in done.stderr, done.stderr
