"""The public test helpers (``mnistlab.testing``) as a user's tests call them: wrong arguments are refused in a
sentence, and what they start they stop."""

from __future__ import annotations

import asyncio
import gc
import gzip
import hashlib
import os
import struct
import threading
import time
import urllib.request
import warnings

import numpy as np
import pytest

from mnistlab.data.idx import read_idx
from mnistlab.errors import ParameterError
from mnistlab.testing import (
    digit_samples,
    make_non_digit,
    make_number_photo,
    make_photo,
    make_pixel_bomb,
    non_digit_samples,
    number_samples,
    place_on_table,
    random_idx_arrays,
    run_cli,
    running_server,
    write_idx_folder,
)
from mnistlab.testing.fonts import font_text
from mnistlab.testing.surfaces import render
from mnistlab.testing.writer import random_writer, write

DIGIT = np.zeros((28, 28), np.uint8)
DIGIT[5:23, 12:16] = 255  # a 1
REF_PHOTO = "4862b3caea9dddcc"  # sha256 of make_photo(DIGIT, default_rng(2)), as before any check


async def _app(scope, receive, send):
    """A tiny ASGI app: lifespan accepted, every request answered "hi"."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            done = "startup" if message["type"] == "lifespan.startup" else "shutdown"
            await send({"type": f"lifespan.{done}.complete"})
            if done == "shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


async def _starts_slowly(scope, receive, send):
    if scope["type"] == "lifespan":
        await asyncio.sleep(0.5)
    await _app(scope, receive, send)


async def _fails_to_start(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "no model"})


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settle(threads: int) -> None:
    deadline = time.monotonic() + 2
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # uvicorn's SystemExit
@pytest.mark.parametrize(
    ("app", "options", "match"),
    [
        (_fails_to_start, {}, "did not start"),
        (_starts_slowly, {"start_timeout": 0.1}, "did not start"),
        (_app, {"port": 8000}, "port"),
    ],
    ids=["startup-fails", "start-timeout", "bad-option"],
)
def test_a_server_that_does_not_start_leaves_no_thread_nor_socket(app, options, match):
    with running_server(_app) as url:  # first, one that starts: uvicorn's one-off files are open before counting
        assert urllib.request.urlopen(url, timeout=10).read() == b"hi"
    threads, fds = threading.active_count(), _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises((RuntimeError, TypeError), match=match):
            with running_server(app, **options):
                pytest.fail("the block ran although the server did not start")
        _settle(threads)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert threading.active_count() == threads
    assert _open_fds() == fds


@pytest.mark.parametrize("rng", [0, np.random.RandomState(0), np.random], ids=["seed", "RandomState", "module"])
@pytest.mark.parametrize(
    "make",
    [
        lambda rng: digit_samples("pen", 1, rng),
        lambda rng: number_samples("optdigits", 1, rng),
        lambda rng: non_digit_samples("doodles", 1, rng),
        lambda rng: make_photo(DIGIT, rng),
        lambda rng: make_number_photo([DIGIT, DIGIT], rng),
        lambda rng: place_on_table(make_photo(DIGIT, np.random.default_rng(0)), rng),
        lambda rng: make_non_digit("blank", rng),
        lambda rng: random_idx_arrays(rng, 2, 1),
    ],
    ids=["digits", "numbers", "non-digits", "photo", "number-photo", "table", "non-digit", "idx"],
)
def test_an_rng_that_is_not_a_generator_is_refused_in_a_sentence(make, rng):
    with pytest.raises(ParameterError, match=r"^rng must be a numpy.random.Generator, not \w+; pass numpy"):
        make(rng)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda rng: digit_samples("pen", -3, rng), r"^n must be a whole number, 0 or more, not -3\."),
        (lambda rng: digit_samples("optdigits", 2.5, rng), r"^n must be a whole number, 0 or more, not 2\.5\."),
        (lambda rng: number_samples("pen", -1, rng), r"^n must be a whole number"),
        (lambda rng: non_digit_samples("doodles", -1, rng), r"^n must be a whole number"),
        (lambda rng: random_idx_arrays(rng, -2, 1), r"^n_train must be a whole number"),
        (lambda rng: number_samples("pen", 1, rng, lengths=(0, 0)), r"^lengths must be \(shortest, longest\)"),
        (lambda rng: number_samples("pen", 1, rng, lengths=(5, 3)), r"^lengths must be \(shortest, longest\)"),
        (lambda rng: number_samples("pen", 1, rng, lengths=4), r"^lengths must be \(shortest, longest\)"),
        (lambda rng: number_samples("pen", 1, rng, lengths=(2.5, 3)), r"^lengths must be \(shortest, longest\)"),
        (lambda rng: digit_samples("mnist", 0, rng), r"^unknown source 'mnist'"),
        (lambda rng: number_samples("optdigits", 0, rng, surface="wall"), r"^unknown surface 'wall'"),
        (lambda rng: non_digit_samples("doodles", 0, rng, surface="wall"), r"^unknown surface 'wall'"),
        (lambda rng: digit_samples("pen", 0, rng, style="crayon"), r"^unknown pen style 'crayon'"),
        (lambda rng: digit_samples("optdigits", 1, rng, style="marker"), r"^optdigits has no styles"),
    ],
    ids=[
        "negative-n",
        "fractional-n",
        "numbers-negative-n",
        "non-digits-negative-n",
        "idx-negative",
        "lengths-zero",
        "lengths-reversed",
        "lengths-one-number",
        "lengths-fractional",
        "source-n0",
        "surface-n0",
        "non-digit-surface-n0",
        "style-n0",
        "optdigits-style",
    ],
)
def test_a_count_or_name_a_generator_cannot_take_is_refused_not_ignored(make, match):
    with pytest.raises(ValueError, match=match):
        make(np.random.default_rng(0))


def test_zero_images_are_none():
    rng = np.random.default_rng(0)
    assert digit_samples("pen", 0, rng) == number_samples("pen", 0, rng) == non_digit_samples("words", 0, rng) == []


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda rng: make_photo(DIGIT / 255.0, rng), r"^digit has no ink: .* \(0-1 images: multiply by 255\)\.$"),
        (lambda rng: make_photo(np.zeros((28, 28), np.uint8), rng), r"^digit has no ink: pixels must be 0-255"),
        (lambda rng: make_photo(DIGIT[:27], rng), r"^digit must be a 28x28 MNIST digit, not uint8 of shape \(27, 28\)"),
        (lambda rng: make_photo(DIGIT.astype(str), rng), r"^digit must be a 28x28 MNIST digit"),
        (lambda rng: make_number_photo([], rng), r"^digits is empty; give at least one"),
        (lambda rng: make_number_photo([DIGIT, DIGIT / 255], rng), r"^digit has no ink"),
    ],
    ids=["float-0-1", "blank", "27-rows", "strings", "no-digits", "one-0-1"],
)
def test_a_digit_the_photo_makers_cannot_use_is_refused_in_a_sentence(make, match):
    with pytest.raises(ParameterError, match=match):
        make(np.random.default_rng(0))


def test_photos_of_a_valid_digit_are_what_they_were():
    # The same bytes as before the digit checks: a float 0-255 digit and a flat one read as the uint8 digit.
    ref = make_photo(DIGIT, np.random.default_rng(2))
    assert make_photo(DIGIT.astype(np.float64), np.random.default_rng(2)) == ref
    assert make_photo(DIGIT.ravel(), np.random.default_rng(2)) == ref
    assert hashlib.sha256(ref).hexdigest()[:16] == REF_PHOTO


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"train_labels": np.full(20, 300)}, r"^arrays\['train_labels'\] must hold whole numbers 0-255"),
        ({"test_labels": np.full(10, -1)}, r"^arrays\['test_labels'\] must hold whole numbers 0-255"),
        ({"train_labels": np.full(20, 2.7)}, r"^arrays\['train_labels'\] must hold whole numbers 0-255"),
        ({"test_labels": None}, r"^arrays lacks test_labels; give all four"),
    ],
    ids=["300", "negative", "fractional", "missing"],
)
def test_labels_an_idx_file_cannot_hold_are_refused_not_wrapped(tmp_path, change, match):
    arrays = {**random_idx_arrays(np.random.default_rng(0), 20, 10), **change}
    arrays = {role: array for role, array in arrays.items() if array is not None}
    with pytest.raises(ParameterError, match=match):
        write_idx_folder(tmp_path / "set", arrays)
    assert not (tmp_path / "set" / "train-labels-idx1-ubyte.gz").exists()


def test_an_unknown_data_set_name_is_refused(tmp_path):
    with pytest.raises(ParameterError, match=r"^dataset must be one of mnist, .*, not 'mnsit'\.$"):
        write_idx_folder(tmp_path, random_idx_arrays(np.random.default_rng(0), 2, 1), "mnsit")


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_idx_folders_read_back_by_the_format_and_by_mnistlab(tmp_path, gz):
    arrays = random_idx_arrays(np.random.default_rng(0), 3, 2)
    arrays["train_labels"] = np.array([0, 9, 10], np.int64)  # 10: a label mnistlab's reader refuses, written as is
    folder = write_idx_folder(tmp_path, arrays, gzip=gz)
    for role, name, code in [
        ("train_images", "train-images-idx3-ubyte", 3),
        ("train_labels", "train-labels-idx1-ubyte", 1),
    ]:
        raw = (gzip.decompress if gz else bytes)((folder / (name + ".gz" * gz)).read_bytes())
        assert raw[:4] == bytes([0, 0, 0x08, code])
        dims = struct.unpack(f">{code}I", raw[4 : 4 + 4 * code])
        assert dims == arrays[role].shape
        assert raw[4 + 4 * code :] == arrays[role].astype(np.uint8).tobytes()
        np.testing.assert_array_equal(read_idx(folder / (name + ".gz" * gz)), arrays[role])


def test_fewer_than_ten_digits_are_labelled_from_zero_up_as_documented():
    samples = digit_samples("optdigits", 5, np.random.default_rng(0), surface="canvas-black-on-white")
    assert sorted(s.label for s in samples) == [0, 1, 2, 3, 4]
    rows = number_samples("optdigits", 3, np.random.default_rng(0), surface="canvas-black-on-white", lengths=(2, 2))
    assert [len(s.label) for s in rows] == [2, 2, 2]


def test_run_cli_refuses_one_string_for_its_arguments():
    with pytest.raises(ParameterError, match=r"^args must be a list of arguments such as \['--version'\], not one"):
        run_cli("--version")
    result = run_cli(["--version"], env={"MNISTLAB_DATA": "/nonexistent"})
    assert (result.returncode, result.stdout.startswith("mnistlab ")) == (0, True)


async def _answers_late(scope, receive, send):
    if scope["type"] == "lifespan":
        await _app(scope, receive, send)
        return
    await asyncio.sleep(30)
    await _app(scope, receive, send)


def test_a_request_in_flight_does_not_keep_the_server_running_after_the_block():
    threads = threading.active_count()
    started = time.monotonic()
    with running_server(_answers_late, stop_timeout=0.5, log_level="critical") as url:
        client = threading.Thread(target=_ask, args=(url,), daemon=True)
        client.start()
        time.sleep(0.3)  # the request is in the app
    assert time.monotonic() - started < 2.5
    client.join(2)
    _settle(threads)
    assert threading.active_count() == threads


def _ask(url: str) -> None:
    try:
        urllib.request.urlopen(url, timeout=10).read()
    except OSError:
        pass  # the stopped server closed the connection


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: write("", random_writer(np.random.default_rng(0)), np.random.default_rng(0), 50), ValueError, "^text"),
        (
            lambda: write(" ", random_writer(np.random.default_rng(0)), np.random.default_rng(0), 50),
            ValueError,
            "^text",
        ),
        (lambda: write("1", random_writer(np.random.default_rng(0)), 0, 50), ParameterError, "^rng must be"),
        (lambda: random_writer(0), ParameterError, "^rng must be a numpy.random.Generator"),
        (lambda: font_text("", "dkg", np.random.default_rng(0), 50), ValueError, "^text must hold something"),
        (lambda: font_text("1", "comic", np.random.default_rng(0), 50), ValueError, "^unknown font 'comic'"),
        (lambda: font_text("1", "dkg", 0, 50), ParameterError, "^rng must be"),
    ],
    ids=["write-empty", "write-space", "write-seed", "writer-seed", "font-empty", "font-unknown", "font-seed"],
)
def test_the_pen_and_font_building_blocks_refuse_what_they_cannot_write(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda rng: render(np.full((40, 40), 255.0), rng, "canvas-black-on-white", 40),
            r"^ink must be coverage in \[0, 1\], not 255",
        ),
        (lambda rng: render(np.zeros((40, 40, 3)), rng, "paper-plain", 40), r"^ink must be coverage \(H, W\)"),
        (lambda rng: render(np.zeros((40, 40)), 0, "paper-plain", 40), r"^rng must be"),
        (lambda rng: place_on_table(b"not a photo", rng), r"^photo must be the bytes of an image file"),
        (lambda rng: make_pixel_bomb(-1, 10), r"^width and height must be whole numbers 0 to 2\*\*32 - 1"),
        (lambda rng: make_pixel_bomb(2**32, 10), r"^width and height must be whole numbers"),
    ],
    ids=["ink-0-255", "ink-rgb", "render-seed", "table-not-photo", "bomb-negative", "bomb-too-wide"],
)
def test_surfaces_and_photo_helpers_refuse_what_they_cannot_draw(make, match):
    with pytest.raises(ParameterError, match=match):
        make(np.random.default_rng(0))


def test_empty_pages_are_labelled_and_tagged_as_documented():
    (page,) = non_digit_samples("empty-pages", 1, np.random.default_rng(0), surface="canvas-black-on-white")
    assert (page.label, page.source, page.style) == ("empty", "none", "empty")


def test_a_server_told_to_wait_for_its_requests_still_stops_without_them():
    with running_server(_app, timeout_graceful_shutdown=None) as url:
        assert urllib.request.urlopen(url, timeout=10).read() == b"hi"


def test_write_idx_folder_refuses_a_gzip_flag_given_a_string(tmp_path):
    """write_idx_folder(..., gzip="no") wrote the compressed files under their .gz names: "no" is truthy."""
    arrays = random_idx_arrays(np.random.default_rng(0), 20, 10)
    with pytest.raises(ParameterError, match=r"^gzip must be True or False, got 'no'\.$"):
        write_idx_folder(tmp_path / "set", arrays, gzip="no")
    assert not (tmp_path / "set").exists()
