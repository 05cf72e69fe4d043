"""``predict`` and ``serve``: read digits in files, or serve the draw-a-digit page.

The predictor (numpy, onnxruntime, PIL, the web stack) is imported inside
the commands: ``mnistlab --help`` should not pay for it.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import sys
from collections import Counter
from os.path import realpath
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mnistlab._atomic import atomic_write_bytes
from mnistlab.cli.common import err, error_text, given_path, json_line, out, visible
from mnistlab.errors import ClusterError, InputError, MnistlabError, ParameterError
from mnistlab.lab.options import check_writable_dir

__all__ = ["app"]

app = typer.Typer()

# Rows a table holds before it is printed: a folder of 100,000 files kept every row (and showed nothing) till its end.
TABLE_ROWS = 1000
HOST_LOOKUP_S = 5.0  # a --host name whose lookup takes longer is taken as no name of this machine
STDIN = Path("-")  # standard input; a file named - is ./- (``given_path``)

MODEL_OPT = typer.Option(
    None,
    "--model",
    parser=given_path,
    metavar="DIR",
    help="A model folder written by `mnistlab train` (default: the reader shipped with mnistlab).",
)


@app.command()
def predict(
    files: list[Path] = typer.Argument(
        ...,
        parser=given_path,
        help="Images (PNG, JPEG, BMP, TIFF, WebP, GIF) or .npy/.csv files of 784 pixel values, or folders of "
        "them; - alone reads one image from standard input.",
    ),
    model: Path | None = MODEL_OPT,
    number: bool = typer.Option(
        False, "--number", help="Read a row of digits (a house number, a code) instead of one digit."
    ),
    top: int = typer.Option(3, "--top", min=1, max=10, help="How many ranked digits to show."),
    save_preprocessed: Path | None = typer.Option(
        None,
        "--save-preprocessed",
        parser=given_path,
        metavar="DIR",
        help="Folder to write the 28x28 images the model saw: <file stem>.png, with --number <file stem>-<i>.png "
        "for its digits, left to right (the file name for the stem where stems repeat).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        min=1,
        max=256,
        help="Processes reading files at once (default: one per CPU this process may use, a container's CPU quota counted).",
    ),
):
    """Which digit (or number, with --number) is in each file, and is the model sure?"""
    # Not at start-up: see the module docstring.
    from mnistlab.trust.predict import load_predictor, to_json

    paths, saved_as, piped = _inputs(files, save_preprocessed, number)  # before the model loads
    predictor = load_predictor(model)  # a missing or broken model stops everything: exit 2
    answers = _answers(paths, piped, predictor, top, number, jobs)
    table = _result_table(number)
    failed = answered = 0
    try:  # answers stream in the order given, from one worker process per CPU
        for path, result, exc in answers:
            if result is not None and save_preprocessed is not None:
                exc = _saved(save_preprocessed, saved_as[path], result)  # None, or why its image was not saved
                result = None if exc is not None else result
            if result is None:  # one unreadable file: say so, read the others, then exit 1 (or 2: none read)
                assert exc is not None  # predict_files gives a result or the error, never neither
                failed += 1
                _say_error(path, exc, as_json)
                continue
            answered += 1
            if as_json:
                typer.echo(json_line(to_json(result, str(path))))
            else:
                table = _with_row(table, str(path), result, number)
    finally:  # a run stopped early (a worker that died, Ctrl+C) still shows the answers it had, as --json does
        if not as_json and table.row_count:
            out.print(table)
    if failed:
        # Bad input and nothing read is exit 2, as for any other bad input; some files read is exit 1,
        # so a script can tell "some answers are missing" from "no answer at all".
        raise typer.Exit(1 if answered else 2)


def _inputs(files: list[Path], save_preprocessed: Path | None, number: bool) -> tuple[list[Path], dict, bytes | None]:
    """The files to read, the name each one's 28x28 image is saved under (with ``--save-preprocessed``), and
    the image piped in on standard input (``-``, given alone), read now; None where files are named."""
    from mnistlab.trust.many import expand_paths

    if STDIN in files and len(files) > 1:
        raise InputError(
            "- reads one image from standard input and is given alone; name the other files in a run of their own."
        )
    piped = _stdin_image() if STDIN in files else None
    paths = [STDIN] if piped is not None else expand_paths(files)
    if save_preprocessed is None:
        return paths, {}, piped
    check_writable_dir(save_preprocessed, "save_preprocessed")
    if piped is not None:
        return paths, {STDIN: "stdin"}, piped
    saved_as = _preprocessed_names(paths, save_preprocessed)
    _check_inputs_kept(paths, saved_as, save_preprocessed, number)
    return paths, saved_as, piped


def _stdin_image() -> bytes:
    """The image piped in on standard input (``-``), read up to the size any image file may have."""
    from mnistlab.reading.admission import MAX_IMAGE_FILE_BYTES

    if sys.stdin is None or sys.stdin.closed:  # started with standard input closed (<&-)
        raise InputError("Standard input is closed; pipe an image in: mnistlab predict - < photo.png")
    stdin = sys.stdin.buffer
    if stdin.isatty():  # waiting on a terminal for an image no one will type: say what - is for
        raise InputError(
            "- reads an image from standard input, which is a terminal; pipe one in: mnistlab predict - < photo.png"
        )
    data = stdin.read(MAX_IMAGE_FILE_BYTES + 1)
    if not data:
        raise InputError("Standard input was empty; pipe an image in: mnistlab predict - < photo.png")
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise InputError(
            f"Standard input holds more than {MAX_IMAGE_FILE_BYTES // 2**20} MiB, more than any image mnistlab "
            "reads; pipe in a smaller image."
        )
    return data


def _answers(paths: list[Path], piped: bytes | None, predictor, top: int, number: bool, jobs: int | None):
    """Each (path, answer, error) in the order given: the piped image's, or the files' from their workers."""
    from mnistlab.trust.many import predict_files

    if piped is not None:
        return [_piped_answer(piped, predictor, top, number)]
    return predict_files(paths, predictor, top=top, number=number, jobs=jobs)


def _piped_answer(data: bytes, predictor, top: int, number: bool) -> tuple[Path, dict | None, MnistlabError | None]:
    """The answer for an image given as bytes (standard input), as ``predict_files`` gives one for a file."""
    from mnistlab.trust.predict import predict_image, read_number

    try:
        result = read_number(data, predictor, top=top) if number else predict_image(data, predictor, top=top)
        return STDIN, result, None
    except MnistlabError as exc:
        return STDIN, None, exc


def _say_error(path: Path, exc: MnistlabError, as_json: bool) -> None:
    """One file's error: its JSON line, or an ``Error:`` line on stderr that names the file."""
    if as_json:
        typer.echo(json_line({"file": str(path), "error": error_text(exc)}))
        return
    message = error_text(exc) if str(path) in str(exc) else f"{path}: {error_text(exc)}"
    err.print(f"Error: {visible(message)}", markup=False, highlight=False, soft_wrap=True)


def _result_table(number: bool) -> Table:
    table = Table()
    table.add_column("File", overflow="fold")
    for title in ("Number", "Digits") if number else ("Digit", "Probability", "Top"):
        table.add_column(title, overflow="fold" if title == "Number" else "ellipsis")  # a number is never cut to "…"
    table.add_column("Confident")
    return table


def _with_row(table: Table, file: str, result: dict, number: bool) -> Table:
    """``table`` with the row of ``file``'s answer, or, once it holds ``TABLE_ROWS`` rows, printed and a new one."""
    table.add_row(escape(visible(file)), *_result_cells(result, number))  # "a[/b].png" is no markup, ESC no colour
    if table.row_count < TABLE_ROWS:
        return table
    out.print(table)
    return _result_table(number)


def _result_cells(result: dict, number: bool) -> list[str]:
    """The table cells after the file name for one file's answer."""
    if number:
        digits = " ".join(f"{d['digit']}:{_percent(d['probability'])}" for d in result["digits"])
        return [result["number"] or "-", digits, _number_verdict(result)]
    ranked = ", ".join(f"{d} {_percent(p)}" for d, p in result["top"])
    verdict = "yes" if result["confident"] else f"no: {result['reason']}"
    return [str(result["digit"]), _percent(result["probability"]), ranked, verdict]


def _percent(p: float) -> str:
    """``p`` as the web page shows it: cut down to a tenth of a percent, never rounded up (0.9996 rounded read
    "100.0%" of a model that is not certain; ``--json`` says 0.9996), so that only a probability of 1 is 100%."""
    tenths = math.floor(1000 * p + 1e-6)  # the 1e-6: 0.57 * 1000 is 569.99999...
    return f"{min(tenths, 999 if p < 1 else 1000) / 10:.1f}%"


def _number_verdict(result: dict) -> str:
    """Whether a number's answer is sure, and if not, why: its doubted digits, no digits, or the row as a whole."""
    if result["confident"]:
        return "yes"
    unsure = [f"{i + 1}: {d['reason']}" for i, d in enumerate(result["digits"]) if not d["confident"]]
    if unsure:
        return f"no ({'; '.join(unsure)})"
    if not result["digits"]:
        return "no: no digits found"
    # A photo read again (``trust.predict.surer_row``) can keep the second reading's digits and doubt the row.
    return "no: each digit looks clear on its own, but the first look at the photo doubted the number"


def _preprocessed_names(paths: list[Path], folder: Path) -> dict[Path, str]:
    """The name each file's 28x28 image is saved under (before ``.png``): its stem, or its whole name where
    files share a stem (``7.jpg``, ``7.png``), so that no image overwrites another's."""
    # realpath, not Path.resolve: a link in a loop is that file's error when read, not a RuntimeError here
    stems = Counter(p.stem for p in {realpath(p): p for p in paths}.values())  # a file named twice counts once
    names = {p: p.stem if stems[p.stem] == 1 else p.name for p in paths}
    first: dict[str, Path] = {}
    for path, name in names.items():
        other = first.setdefault(name, path)
        if realpath(other) != realpath(path):  # one name in two folders
            raise InputError(
                f"{other} and {path} would both be saved as {name}.png in {folder}; "
                "rename one, or save them in separate runs."
            )
    return names


def _check_inputs_kept(paths: list[Path], names: dict[Path, str], folder: Path, number: bool) -> None:
    """Refuse a ``--save-preprocessed`` folder where an image would be saved over a file being read (a
    folder of PNGs saved into itself: each photo replaced by its 28x28 image)."""
    where, stems = Path(realpath(folder)), set(names.values())
    saved_as = re.compile(r"(.+)-\d+\.png" if number else r"(.+)\.png")  # what a saved image is called
    for path in paths:
        for entry in (Path(realpath(path.absolute().parent), path.name), Path(realpath(path))):  # its name, its target
            match = saved_as.fullmatch(entry.name)
            if entry.parent == where and match and match[1] in stems:
                raise InputError(
                    f"--save-preprocessed {folder} would save a 28x28 image as {entry.name} over {path}, which is "
                    "being read; choose another folder."
                )


def _saved(folder: Path, name: str, result: dict) -> MnistlabError | None:
    """Save the file's 28x28 image(s) (``_save_preprocessed``); None, or the error that stopped it (a full disk,
    a folder where the image goes, the folder removed meanwhile) for that file alone."""
    try:
        _save_preprocessed(folder, name, result)
    except OSError as exc:
        where = exc.filename2 or exc.filename or folder / f"{name}.png"
        return ParameterError(
            "save_preprocessed",
            f"The 28x28 image could not be saved as {where} ({exc.strerror or exc}); free space in {{param}} "
            f"{folder}, or move what is in the way.",
        )
    return None


def _save_preprocessed(folder: Path, name: str, result: dict) -> None:
    """Write the 28x28 image(s) the model saw as PNG: <name>.png, or <name>-<i>.png per digit of a number."""
    from mnistlab.reading.decode import encode_png  # PIL: not at start-up

    if "digits" in result:
        for i, digit in enumerate(result["digits"]):
            atomic_write_bytes(folder / f"{name}-{i}.png", encode_png(digit["mnist_image"]))
    else:
        atomic_write_bytes(folder / f"{name}.png", encode_png(result["mnist_image"]))


@app.command()
def serve(
    model: Path | None = MODEL_OPT,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 exposes the page to your network."
    ),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    read_timeout: float = typer.Option(
        10.0, "--read-timeout", min=0.1, max=3600, help="Seconds a request head may take, and a body may pause."
    ),
    max_connections: int = typer.Option(
        100, "--max-connections", min=1, help="Open connections at once; a request on one more gets 503."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, max=256, help="Server processes on the one port (one per CPU core uses them all)."
    ),
    ray_replicas: int | None = typer.Option(
        None,
        "--ray-replicas",
        min=1,
        max=1024,
        help="Serve as a Ray Serve deployment of N replicas (one CPU each) behind Serve's proxy on --host/--port "
        "(--read-timeout bounds a body's pauses there too; --max-connections and --access-log are the plain server's).",
    ),
    access_log: bool = typer.Option(
        False,
        "--access-log",
        help="Log one line per request (off by default, as in gunicorn: hundreds of lines a second cost the "
        "server CPU, and a proxy or load balancer in front usually logs them).",
    ),
    cluster: str | None = typer.Option(
        None,
        "--cluster",
        metavar="ADDRESS",
        help="With --ray-replicas: the Ray cluster (host:port of its head, ray://host:port, auto) or local "
        "(this machine; the default, or $RAY_ADDRESS).",
    ),
):
    """Serve the draw-a-digit page and its JSON API (docs at /docs) until Ctrl+C or SIGTERM."""
    if ray_replicas is not None:
        if workers != 1:
            raise InputError("--workers and --ray-replicas exclude each other; Ray Serve's replicas are the workers.")
        _serve_on_ray(model, host, port, ray_replicas, cluster, read_timeout)
        return
    if cluster is not None:
        raise InputError("--cluster needs --ray-replicas N: the plain server runs on this machine only.")
    from mnistlab.web.app import serve as run_server  # FastAPI and uvicorn: not at start-up
    from mnistlab.web.protocol import ConnectionLimits

    check_free_port(host, port)  # before the model loads, not after
    limits = ConnectionLimits(read_timeout=read_timeout, max_connections=max_connections)
    run_server(model, host=host, port=port, limits=limits, workers=workers, access_log=access_log)


def _serve_on_ray(
    model: Path | None, host: str, port: int, replicas: int, cluster: str | None, read_timeout: float
) -> None:
    """``serve --ray-replicas``: check the port (on this machine), the model and the cluster's CPUs, then deploy."""
    # Ray, FastAPI and the model: only when a deployment is asked for.
    from mnistlab.lab.cluster import cluster_address, connect
    from mnistlab.web.rayserve import ray_application, run_on_ray

    address = cluster_address(cluster) or "local"
    if address == "local":
        check_free_port(host, port)  # a remote cluster's proxies listen on its nodes, not here
    # A missing or broken model stops here, before Ray starts.
    application = ray_application(model, replicas, read_timeout=read_timeout)
    with connect(address) as resources:
        cpus = int(resources.get("CPU", 0))
        if replicas > cpus:  # Serve would wait for the missing CPUs forever
            raise ClusterError(
                f"--ray-replicas {replicas} needs {replicas} CPUs (one per replica); the cluster at {address} "
                f"has {cpus}; ask for fewer or add nodes."
            )

        def ready(url: str) -> None:
            where = url if address == "local" else f"{url} on each of the cluster's nodes that holds one"
            err.print(f"Serving {replicas} replica(s) at {where} (Ctrl+C to stop)", markup=False, highlight=False)

        run_on_ray(application, host, port, on_ready=ready, cpus=replicas)


def check_free_port(host: str, port: int) -> None:
    """Refuse a --host that does not resolve or a --port another program holds, by binding it for a moment."""
    from mnistlab.data.connect import ConnectTimeout, resolve_within  # http.client and ssl: not for every command

    try:  # the lookup bounded too: a DNS server that never answers held `serve` for the resolver's minutes
        infos = resolve_within(host, port, HOST_LOOKUP_S)
    except ConnectTimeout:
        raise InputError(
            f"--host {host!r} was not resolved within {HOST_LOOKUP_S:g} s (no DNS answer); give one of this "
            "machine's addresses, e.g. 127.0.0.1 or 0.0.0.0."
        ) from None
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(
            f"--host {host!r} is not an address of this machine ({exc}); use 127.0.0.1 or 0.0.0.0."
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no obstacle
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:  # an address of another machine, not a port in use
                raise InputError(
                    f"--host {host!r} is not an address of this machine ({exc.strerror}); use 127.0.0.1 or 0.0.0.0."
                ) from None
            fix = {  # only a port in use is another program's doing
                errno.EADDRINUSE: "stop the program using it or pick another --port",
                errno.EACCES: "a port below 1024 needs root (or CAP_NET_BIND_SERVICE); pick a --port from 1024 up",
            }.get(
                exc.errno or 0,
                "give --host one of this machine's addresses (a link-local one with its interface: fe80::1%eth0)",
            )
            raise InputError(f"Cannot listen on {host} port {port} ({exc.strerror}); {fix}.") from None
