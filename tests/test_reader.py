"""The reader shipped in the package: its files match their card, and it answers with nothing else at hand."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mnistlab import ModelFileError
from mnistlab.models.cards import card_sha256
from mnistlab.testing import make_photo
from mnistlab.trust.reader import CARD_FILE, PRETRAINED_DIR, READER_FILES, load_reader, verified_bytes


def test_shipped_files_match_their_card():
    card = json.loads((PRETRAINED_DIR / CARD_FILE).read_text())
    assert set(card["files"]) == set(READER_FILES)
    for name in READER_FILES:
        verified_bytes(PRETRAINED_DIR, name, card["files"][name])  # raises on a mismatch
    size = sum((PRETRAINED_DIR / name).stat().st_size for name in READER_FILES)
    assert size < 4 * 2**20, f"the shipped reader is {size / 2**20:.1f} MiB; it should stay a few MB"
    for key in ("data_sha256", "plan", "versions", "metrics", "thresholds", "classifier"):
        assert key in card
    assert card["plan"]["seed"] == 0
    for name in ("classifier.onnx", "detector.onnx"):  # no stack of the machine that built it (`export_onnx`)
        assert b'File "' not in (PRETRAINED_DIR / name).read_bytes()


def test_shipped_classifier_scores_what_its_card_says(mnist_full):
    card = json.loads((PRETRAINED_DIR / CARD_FILE).read_text())
    assert card["data_sha256"] == mnist_full.details["data_sha256"]  # trained on this very MNIST
    n = mnist_full.details["n_train"]
    reader = load_reader()
    test, labels = np.asarray(mnist_full.images[n:]), np.asarray(mnist_full.target[n:])
    accuracy = float((reader.digit_proba(test).argmax(1) == labels).mean())
    assert accuracy == pytest.approx(card["metrics"]["classifier_test_accuracy"], abs=1e-4)
    assert accuracy >= 0.99


@pytest.mark.parametrize("name", READER_FILES)
def test_a_tampered_file_is_refused(tmp_path, name):
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        load_reader(folder)


def test_a_missing_or_foreign_card_is_refused(tmp_path):
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    (folder / CARD_FILE).write_text('{"format_version": 99}')
    with pytest.raises(ModelFileError, match="reader card"):
        load_reader(folder)
    (folder / CARD_FILE).unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_reader(folder)


def _refused_signed_again(folder: Path, card: dict, why: str) -> None:
    """``card`` signed again and written to ``folder``, whose reader must then be refused, the sentence's reason
    starting with ``why``."""
    card["card_sha256"] = card_sha256(card)
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelFileError) as refused:
        load_reader(folder)
    assert str(refused.value).startswith(f"{folder} holds a reader this mnistlab cannot use ({why}")
    assert str(refused.value).endswith("; rebuild it with `make pretrained`.")


@pytest.mark.parametrize(
    "where, key, value, why",
    [
        # A NaN cut or limit made every answer "sure" (nothing compares below NaN).
        ("cut", "min_probability", float("nan"), "min_probability must be a number from 0 to 1, not nan"),
        ("upper", "not_a_digit", float("nan"), "threshold limits must map scores"),
        # A limit for a score that does not exist was ignored, and checked nothing.
        ("upper", "blobz", 4.0, "threshold limits must map scores"),
        # A string loaded, then failed with a TypeError at the first answer.
        ("cut", "min_probability", "0.3", "min_probability must be a number from 0 to 1, not '0.3'"),
        ("upper", "blobs", "4", "threshold limits must map scores"),
        ("thresholds", "lower", [], "threshold limits must map scores"),
        ("thresholds", "detector_share", 7, "detector_share must be a number from 0 to 1, not 7"),
    ],
)
def test_a_reader_card_of_impossible_limits_is_refused_when_loaded(tmp_path, where, key, value, why):
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    card = json.loads((folder / CARD_FILE).read_text())
    part = {
        "cut": card["classifier"]["probability_cut"],
        "upper": card["thresholds"]["upper"],
        "thresholds": card["thresholds"],
    }[where]
    part[key] = value
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="does not match its card_sha256, so it was edited or corrupted"):
        load_reader(folder)  # a card edited by hand
    if value != value:  # NaN has no canonical JSON, so no checksum covers it: refused above, and only there
        return
    # A card signed again after the edit (made by hand, or by other code) is still held to the limits.
    _refused_signed_again(folder, card, why)


def _space(folder: Path, change) -> None:
    from safetensors.numpy import load, save

    (folder / "space.safetensors").write_bytes(save(change(load((folder / "space.safetensors").read_bytes()))))


@pytest.mark.parametrize(
    "change, why",
    [
        # Another net in a net's place: the classifier answered "10", the detector took every 9 for no digit.
        (lambda f: shutil.copy(f / "detector.onnx", f / "classifier.onnx"), "its classifier.onnx reads"),
        (lambda f: shutil.copy(f / "classifier.onnx", f / "detector.onnx"), "its detector.onnx reads"),
        # A NaN space scored every image as digit-shaped; one of float64 or int8 answered otherwise.
        (
            lambda f: _space(f, lambda t: {**t, "mean": np.full_like(t["mean"], np.nan)}),
            "its space.safetensors is no digit space",
        ),
        (
            lambda f: _space(f, lambda t: {k: v.astype(np.float64) for k, v in t.items()}),
            "its space.safetensors is no digit space",
        ),
        (
            lambda f: _space(f, lambda t: {k: v.astype(np.int8) for k, v in t.items()}),
            "its space.safetensors is no digit space",
        ),
        # Of other shapes it loaded, then failed at the first answer with numpy's ValueError (a traceback).
        (lambda f: _space(f, lambda t: {**t, "mean": t["mean"][:10]}), "its space.safetensors is no digit space"),
        (
            lambda f: _space(f, lambda t: {**t, "components": np.ascontiguousarray(t["components"].T)}),
            "its space.safetensors is no digit space",
        ),
    ],
)
def test_a_reader_file_swapped_and_signed_again_is_refused_when_loaded(tmp_path, change, why):
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    change(folder)
    card = json.loads((folder / CARD_FILE).read_text())
    card["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in READER_FILES}
    _refused_signed_again(folder, card, why)


@pytest.mark.parametrize(
    "name, data",
    [
        ("space.safetensors", struct.pack("<Q", 2**40) + b"x" * 100),  # SafetensorError: header too large
        ("space.safetensors", b""),
        ("classifier.onnx", b"\x08\x07garbage"),  # onnxruntime's InvalidProtobuf
        ("detector.onnx", b""),  # onnxruntime's InvalidArgument: no graph
    ],
)
def test_a_reader_file_damaged_and_signed_again_is_one_sentence(tmp_path, name, data):
    """Files whose checksums the card was signed again with, that safetensors or onnxruntime cannot read: their own
    exception types, which the load did not catch, were a traceback."""
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    (folder / name).write_bytes(data)
    card = json.loads((folder / CARD_FILE).read_text())
    card["files"][name] = hashlib.sha256(data).hexdigest()
    _refused_signed_again(folder, card, "")


def test_a_reader_card_edited_by_hand_is_refused(tmp_path):
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    card = json.loads((folder / CARD_FILE).read_text())
    assert card["card_sha256"] == card_sha256(card)
    card["classifier"]["probability_cut"]["min_probability"] = 0.0  # every answer "confident"
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelFileError) as refused:
        load_reader(folder)
    assert str(refused.value) == (
        f"{folder / CARD_FILE} does not match its card_sha256, so it was edited or corrupted; reinstall mnistlab or "
        "rebuild it with `make pretrained`."
    )


def test_a_reader_card_nested_at_any_depth_is_one_sentence(tmp_path):
    """json.loads' RecursionError (or card_sha256's, just within its reach) was a traceback."""
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    card = json.loads((folder / CARD_FILE).read_text())
    del card["card_sha256"]
    head = json.dumps(card)[:-1]
    limit = sys.getrecursionlimit()
    for depth in range(limit - 100, limit + 20):
        nested = "[" * depth + "]" * depth
        (folder / CARD_FILE).write_text(f'{head}, "extra": {nested}, "card_sha256": "{"0" * 64}"}}')
        with pytest.raises(ModelFileError, match="reinstall mnistlab or rebuild it"):
            load_reader(folder)


@pytest.mark.parametrize("name", [CARD_FILE, *READER_FILES])
def test_a_reader_file_that_is_a_named_pipe_is_refused_unread(tmp_path, name):
    """Read with read_bytes, a named pipe in a reader file's place blocked the load forever."""
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    (folder / name).unlink()
    os.mkfifo(folder / name)
    code = f"from mnistlab.trust.reader import load_reader\nload_reader({str(folder)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" in done.stderr  # ModelFileError raised, not a wait
    assert f"ModelFileError: {folder / name} is missing or no regular file" in done.stderr


def test_a_reader_card_with_an_integer_of_thousands_of_digits_is_one_sentence(tmp_path):
    folder = tmp_path / "pretrained"
    shutil.copytree(PRETRAINED_DIR, folder)
    card = (folder / CARD_FILE).read_text()
    (folder / CARD_FILE).write_text(card.replace('"format_version": 2', '"format_version": ' + "1" * 5000))
    with pytest.raises(ModelFileError, match="holds an integer of thousands of digits, so it is no reader card"):
        load_reader(folder)


# Runs in a fresh interpreter with empty HOME, XDG folders and MNISTLAB_DATA. An audit hook
# (sys.addaudithook: the interpreter's own event stream, not a mock) records every socket
# connection and every file opened under the MNIST folder or the user's folders; and whether
# scipy was imported, there or by the modules of the CLI and the server.
_EMPTY_MACHINE = textwrap.dedent(
    """
    import json, os, sys
    watched = [os.environ["MNISTLAB_DATA"], os.environ["HOME"]]
    touched = []
    def hook(event, args):
        if event == "socket.connect":
            touched.append(f"network: {args[1]!r}")
        elif event == "open" and isinstance(args[0], str) and any(args[0].startswith(w) for w in watched):
            touched.append(f"file: {args[0]}")
    sys.addaudithook(hook)
    import mnistlab.cli, mnistlab.web.app  # what `mnistlab predict` and `mnistlab serve` import
    from mnistlab import predict_image
    result = predict_image(sys.argv[1])
    if "scipy" in sys.modules:  # 0.2 s of start-up that answering does not need
        touched.append("scipy imported")
    print(json.dumps({"digit": result["digit"], "confident": result["confident"], "touched": touched}))
    """
)


@pytest.fixture()
def empty_machine(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "MNISTLAB_"))}
    for name in ("home", "data", "cache", "share"):
        (tmp_path / name).mkdir()
    env.update(
        HOME=str(tmp_path / "home"),
        MNISTLAB_DATA=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        XDG_DATA_HOME=str(tmp_path / "share"),
    )
    return env


@pytest.fixture(scope="module")
def photo_of_a_seven(mnist_full, tmp_path_factory):
    n = mnist_full.details["n_train"]
    sevens = np.flatnonzero(np.asarray(mnist_full.target[n:]) == 7)
    path = tmp_path_factory.mktemp("photo") / "seven.jpg"
    path.write_bytes(make_photo(mnist_full.images[n + sevens[0]], np.random.default_rng(0), style="paper"))
    return path


MNISTLAB = shutil.which("mnistlab", path=os.path.dirname(sys.executable))


def _answer(args: list[str], env: dict) -> dict:
    """Run ``args`` in ``env``; its JSON answer."""
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _left_behind(env: dict) -> list[str]:
    """What a command left in the user's folders. onnxruntime wrote a device id and a store of usage events into
    the cache folder, to be sent to Microsoft from processes that ran long enough (outside Python's audit hook)."""
    folders = [Path(env[name]) for name in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME")]
    return [str(path) for folder in folders for path in folder.rglob("*")]


def test_python_api_answers_on_an_empty_machine_without_network_or_mnist(empty_machine, photo_of_a_seven):
    answer = _answer([sys.executable, "-c", _EMPTY_MACHINE, str(photo_of_a_seven)], empty_machine)
    assert answer == {"digit": 7, "confident": True, "touched": []}
    assert _left_behind(empty_machine) == []


def test_cli_answers_on_an_empty_machine(empty_machine, photo_of_a_seven):
    line = _answer([MNISTLAB, "predict", str(photo_of_a_seven), "--json"], empty_machine)
    assert line["digit"] == 7 and line["confident"] is True
    assert set(line) == {"file", "digit", "probability", "top", "confident", "reason"}
    assert not os.path.exists(os.path.join(empty_machine["XDG_CACHE_HOME"], "mnistlab"))  # no data was read
    assert _left_behind(empty_machine) == []


def test_web_api_answers_on_an_empty_machine(empty_machine, photo_of_a_seven):
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [MNISTLAB, "serve", "--port", str(port)],
        env=empty_machine,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.1)
        with open(photo_of_a_seven, "rb") as f:
            r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("seven.jpg", f, "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["digit"] == 7 and r.json()["confident"] is True
        card = httpx.get(f"http://127.0.0.1:{port}/api/model").json()  # the shipped card, as the file holds it
        assert card == json.loads((PRETRAINED_DIR / CARD_FILE).read_text())
    finally:
        server.terminate()
        server.wait(10)
    assert _left_behind(empty_machine) == []
