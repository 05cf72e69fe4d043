"""The array cache proves itself, and a data folder costs little before it is refused.

Each damaged cache is a copy of the real MNIST cache under a temp
``XDG_CACHE_HOME``, damaged on disk the way a disk, a careless edit or another
program would: it must be rebuilt from the verified sources with one line
saying so, never served and never a traceback.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mnistlab.data.cache as cache_module
from mnistlab import IDXFormatError, load_mnist, write_idx
from mnistlab._atomic import atomic_write_bytes
from mnistlab.cli import app
from mnistlab.data.cache import array_cache_dir, is_mapped
from mnistlab.data.sources import find_idx_files
from mnistlab.testing import random_idx_arrays, write_idx_folder
from mnistlab.testing.cli import run_cli

REBUILT = "failed their check"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(data)


def _replace(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert data.count(old) == 1
    path.write_bytes(data.replace(old, new))


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=1))  # its own checksum left as it was


DAMAGE = {
    "flipped image byte": lambda d: _flip(d / "images.npy", -400),  # a pixel of the last test image
    "flipped label byte": lambda d: _flip(d / "labels.npy", -1),
    "all labels replaced": lambda d: np.save(d / "labels.npy", np.zeros(70000, np.uint8)),
    "images as float32 zeros": lambda d: np.save(d / "images.npy", np.zeros((70000, 28, 28), np.float32)),
    "n_train edited": lambda d: _edit_manifest(d, lambda m: m.update(n_train=50000)),
    "0-byte images": lambda d: (d / "images.npy").write_bytes(b""),
    "edited npy header": lambda d: _replace(d / "images.npy", b"(70000, 28, 28)", b"(28, 70000, 28)"),
    "manifest checksum edited": lambda d: _edit_manifest(d, lambda m: m["checksums"].update(train_images="0" * 64)),
    "images missing": lambda d: (d / "images.npy").unlink(),
    "manifest not JSON": lambda d: (d / "manifest.json").write_bytes(b"\x00garbage{"),
    # json.loads raised RecursionError: a traceback, exit 1, until the cache was deleted by hand.
    "manifest nested too deep": lambda d: (d / "manifest.json").write_bytes(b"[" * 200_000),
}


@pytest.fixture()
def cache_copy(mnist_full, mnist_dir, tmp_path, monkeypatch) -> Path:
    """A copy of the session's MNIST array cache, under this test's own XDG_CACHE_HOME."""
    files = find_idx_files(mnist_dir)
    clean = array_cache_dir("mnist", files)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    copy = array_cache_dir("mnist", files)
    shutil.copytree(clean, copy)
    return copy


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_cache_is_rebuilt_with_one_line_never_served(case, cache_copy, mnist_full, caplog):
    DAMAGE[case](cache_copy)
    with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
        b = load_mnist("mnist")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and REBUILT in lines[0] and "rebuilt them" in lines[0], lines
    assert str(cache_copy) in lines[0]
    assert b.details["verified"] and (b.details["n_train"], b.details["n_test"]) == (60000, 10000)
    assert b.images.dtype == np.uint8 and np.array_equal(b.images, mnist_full.images)
    assert np.array_equal(b.target, mnist_full.target)
    # The rebuilt cache passes its own checks: the next load is silent and memory-mapped.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
        again = load_mnist("mnist")
    assert not caplog.records and is_mapped(again.images)
    assert np.array_equal(again.target, mnist_full.target)


def test_an_older_cache_without_checksums_is_replaced_silently(cache_copy, mnist_full, caplog):
    def as_format_1(m):
        for key in ("arrays", "manifest_sha256"):
            del m[key]
        m["format"] = 1

    _edit_manifest(cache_copy, as_format_1)
    with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
        b = load_mnist("mnist")
    assert not caplog.records and np.array_equal(b.target, mnist_full.target)
    assert json.loads((cache_copy / "manifest.json").read_text())["format"] == 2


@pytest.mark.parametrize("case", list(DAMAGE)[:8])  # the probed cases; the library test covers the rest
def test_data_commands_on_a_damaged_cache_exit_0_with_the_rebuild_line(case, cache_copy):
    DAMAGE[case](cache_copy)
    if case in ("flipped image byte", "edited npy header"):
        run = run_cli(["show", "--ascii", "--index", "0"])
        assert run.stdout.startswith("train[0]: label 5\n"), run.stdout
    else:
        run = run_cli(["data", "info", "--json"])
        info = json.loads(run.stdout)
        assert info["verified"] and (info["n_train"], info["n_test"]) == (60000, 10000)
        assert info["class_counts"]["test"][1] == 1135 and sum(info["class_counts"]["train"]) == 60000
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("\n") == 1 and REBUILT in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "Aborted" not in run.stderr


def test_a_source_changed_in_place_with_its_time_stamp_kept_is_noticed(mnist_dir, tmp_path, monkeypatch, caplog):
    # Raw copies of the sources; the cache is built from them, then both are damaged.
    folder = tmp_path / "raw"
    folder.mkdir()
    for path in find_idx_files(mnist_dir).values():
        (folder / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
        load_mnist(data_dir=folder)
    assert not caplog.records  # a first build says nothing
    files = find_idx_files(folder)
    _flip(array_cache_dir("mnist", files) / "labels.npy", -1)
    # The last label of the test set (a 6) changed in place, size and mtime kept: its ctime still tells.
    labels = files["test_labels"]
    st = labels.stat()
    data = bytearray(labels.read_bytes())
    assert data[-1] == 6
    data[-1] = 7
    labels.write_bytes(data)
    os.utime(labels, ns=(st.st_atime_ns, st.st_mtime_ns))
    run = run_cli(["data", "info", "--data-dir", str(folder), "--json"])
    assert run.returncode == 0 and run.stderr == "", run.stderr
    info = json.loads(run.stdout)
    assert not info["verified"]  # no longer MNIST's published files: loaded as a folder of its own
    assert info["class_counts"]["test"][6:8] == [957, 1029]


def _zero_bomb(mib: int = 1000) -> bytes:
    """One gzip member of about 1 MB that inflates to ``mib`` MiB of zeros (valid CRC and size)."""
    block = 1 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    # After a full flush the compressor starts afresh, so every MiB of zeros compresses to the same bytes.
    one = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(bytes(block), crc)
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return head + one * mib + tail + struct.pack("<II", crc, (mib * block) & 0xFFFFFFFF)


def _tiny_folder(folder: Path, train_labels=None, test_labels=None) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    train_labels = np.arange(20, dtype=np.uint8) % 10 if train_labels is None else train_labels
    test_labels = np.arange(10, dtype=np.uint8) if test_labels is None else test_labels
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_labels)
    return folder


_BOUNDED = """
import resource, sys
import sklearn.utils  # what load_mnist imports on its first call, counted in the baseline
from mnistlab import load_mnist
from mnistlab.errors import MnistlabError

vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 200 * 2**20, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    load_mnist(sys.argv[2] or None, data_dir=sys.argv[1])
except MnistlabError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("name", ["", "mnist"])
@pytest.mark.parametrize(
    "header, message",
    [
        (b"", "unknown dtype code 0x00"),  # zeros all the way
        (bytes([0, 0, 8, 3]) + np.asarray([20, 28, 28], ">u4").tobytes(), "holds more than 15,680"),
    ],
    ids=["zeros", "valid header"],
)
def test_gzip_bomb_is_refused_with_little_memory(tmp_path, name, header, message):
    folder = _tiny_folder(tmp_path / "bomb")
    bomb = folder / "train-images-idx3-ubyte.gz"
    # The header in its own gzip member, then 1 MB that inflates to 1000 MiB of zeros.
    bomb.write_bytes(gzip.compress(header) + _zero_bomb())
    assert bomb.stat().st_size < 1.1e6
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", _BOUNDED, str(folder), name], capture_output=True, text=True, timeout=120, env=env
    )
    # Over the 200 MiB allowed beyond start-up, the process dies with a MemoryError instead.
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    assert run.stdout.startswith(f"IDXFormatError {bomb}: ") and message in run.stdout, run.stdout


def test_label_outside_the_ten_digits_is_refused(tmp_path):
    labels = np.arange(20, dtype=np.uint8) % 10
    labels[3] = 200
    folder = _tiny_folder(tmp_path / "labels200", labels)
    with pytest.raises(IDXFormatError, match=r"label 200 \(at index 3\) is outside the 10 classes 0-9"):
        load_mnist(data_dir=folder)
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(folder)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {folder / 'train-labels-idx1-ubyte.gz'}: label 200")


def test_a_set_of_letters_is_refused_as_more_classes_than_mnistlab_reads_not_as_a_typo(tmp_path):
    # EMNIST's letters are labelled 1-26: "label 10 ... correct or remove it" blamed a file that holds no mistake.
    letters = (np.arange(30) % 26 + 1).astype(np.uint8)
    folder = _tiny_folder(tmp_path / "letters", letters[:20], letters[20:])
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(folder)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr == (
        f"Error: {folder / 'train-labels-idx1-ubyte.gz'}: label 10 (at index 9) is outside the 10 classes 0-9, the "
        "only classes mnistlab reads; correct the label if it is a mistake, or give a set of digits labelled 0-9 "
        "(sets of other or more classes, such as EMNIST's letters, are not supported).\n"
    )


def test_custom_folder_names_the_ten_digits_whichever_occur(tmp_path):
    two = np.where(np.arange(30) % 2, 7, 2).astype(np.uint8)  # only 2s and 7s
    folder = _tiny_folder(tmp_path / "some", two[:20], two[20:])
    b = load_mnist(data_dir=folder)
    assert b.target_names == [str(i) for i in range(10)]
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(folder), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["class_counts"]["train"][7] == 10
    result = CliRunner().invoke(app, ["show", "--ascii", "--index", "1", "--data-dir", str(folder)])
    assert result.exit_code == 0 and result.stdout.startswith("train[1]: label 7\n"), result.output


def _idx_folder(folder: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """Four IDX files of the given shapes (images uint8 of a counting pattern, labels 0-9 in turn)."""
    folder.mkdir(parents=True)
    for role, stem in ROLE_FILES.items():
        n = int(np.prod(shapes[role]))
        write_idx(
            folder / stem, (np.arange(n) % (10 if "labels" in role else 256)).astype(np.uint8).reshape(shapes[role])
        )
    return folder


ROLE_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@pytest.mark.parametrize(
    "shapes, says",
    [
        (
            {"train_images": (0, 28, 28), "train_labels": (0,), "test_images": (0, 28, 28), "test_labels": (0,)},
            "train-images-idx3-ubyte holds no images; give train and test files that hold at least one image each",
        ),
        (
            {"train_images": (20, 28, 28), "train_labels": (20,), "test_images": (0, 28, 28), "test_labels": (0,)},
            "t10k-images-idx3-ubyte holds no images; give train and test files",
        ),
        (
            {"train_images": (20, 28, 0), "train_labels": (20,), "test_images": (10, 28, 0), "test_labels": (10,)},
            "train-images-idx3-ubyte holds images of 28x0 pixels; give train and test files",
        ),
    ],
    ids=["all empty", "test empty", "zero width"],
)
def test_a_data_set_with_nothing_in_it_is_one_sentence(tmp_path, shapes, says):
    folder = _idx_folder(tmp_path / "empty", shapes)
    with pytest.raises(IDXFormatError, match=re.escape(says)):
        load_mnist(data_dir=folder)
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {folder}/") and says in result.stderr and result.stderr.count("\n") == 1


def _bad_magic(folder: Path) -> None:
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00\x01\x08\x01" + (20).to_bytes(4, "big") + bytes(20))


def _too_big(folder: Path) -> None:
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\xff" * 12)


def _rewrite(stem: str, array: np.ndarray):
    return lambda folder: write_idx(folder / stem, array)


MALFORMED = {
    "bad magic": (
        _bad_magic,
        "train-labels-idx1-ubyte: bad magic number 00010801, expected 0000 followed by a dtype code and rank; the "
        "file is not IDX or is damaged, so replace it with a good copy.",
    ),
    "label count": (
        _rewrite("train-labels-idx1-ubyte", np.zeros(19, np.uint8)),
        "train-labels-idx1-ubyte holds 19 labels but {folder}/train-images-idx3-ubyte holds 20 images; the two "
        "files do not belong together, so give the labels of these images.",
    ),
    "labels of rank 2": (
        _rewrite("train-labels-idx1-ubyte", np.zeros((20, 1), np.uint8)),
        "train-labels-idx1-ubyte: expected one label per image, of shape (20,), got shape (20, 1); write the labels "
        "as a flat list, e.g. write_idx(path, labels.ravel()).",
    ),
    "int32 images": (
        _rewrite("train-images-idx3-ubyte", np.zeros((20, 28, 28), np.int32)),
        "train-images-idx3-ubyte: expected uint8 images of rank 3, got int32 of shape (20, 28, 28); give images as "
        "uint8 pixels (0-255) of shape (count, height, width), as MNIST's files hold them.",
    ),
    "mixed sizes": (
        _rewrite("t10k-images-idx3-ubyte", np.zeros((10, 20, 20), np.uint8)),
        "The training images are 28x28 ({folder}/train-images-idx3-ubyte) but the test images are 20x20 "
        "({folder}/t10k-images-idx3-ubyte); the four files do not belong together, so give the train and test "
        "files of one data set.",
    ),
    "too big": (
        _too_big,
        "more than the 4,294,967,296-byte limit mnistlab reads; the file is not IDX or is damaged, so replace it "
        "with a good copy.",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_folder_says_what_is_wrong_and_what_to_do(tmp_path, case):
    shapes = {"train_images": (20, 28, 28), "train_labels": (20,), "test_images": (10, 28, 28), "test_labels": (10,)}
    folder = _idx_folder(tmp_path / "bad", shapes)
    damage, says = MALFORMED[case]
    damage(folder)
    result = CliRunner().invoke(app, ["data", "info", "--data-dir", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.endswith(says.format(folder=folder) + "\n"), result.stderr


def _two_of_four(folder: Path) -> Path:
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((20, 28, 28), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(20, np.uint8))
    return folder


FOLDERS_WITHOUT_FOUR = {
    "missing": (lambda folder: folder, "{folder} does not exist; give the folder that holds the four IDX files"),
    "a file": (
        lambda folder: _two_of_four(folder) / "train-labels-idx1-ubyte",
        "{folder}/train-labels-idx1-ubyte is a file, not a folder; give the folder that holds the four IDX files",
    ),
    "two of four": (
        _two_of_four,
        "{folder} holds train-images-idx3-ubyte and train-labels-idx1-ubyte but no t10k-images or t10k-labels file; "
        "add them, or give the folder that holds all four.",
    ),
    "name too long": (
        lambda folder: _two_of_four(folder) / ("a" * 300),  # as a folder that cannot be read: is_dir fails
        "{folder}/" + "a" * 300 + " cannot be read (File name too long); give a folder mnistlab can read.",
    ),
}


@pytest.mark.parametrize("name", [None, "mnist"])
@pytest.mark.parametrize("case", FOLDERS_WITHOUT_FOUR)
def test_a_folder_without_the_four_files_says_which_are_missing_or_why(tmp_path, case, name):
    # Every such folder was 'does not hold the four IDX files', whether it was not there, a file or held two of
    # them; one that could not be looked into (permission denied, a name too long) was a traceback.
    make, says = FOLDERS_WITHOUT_FOUR[case]
    given = make(tmp_path / "given")
    args = ["data", "info", *([name] if name else []), "--data-dir", str(given)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: " + says.format(folder=tmp_path / "given")), result.stderr


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    """A cache write killed by SIGKILL (the OOM killer, a power cut) left its .tmp file (55 MB for MNIST's
    images) for ever; the next write of the same file removes it, and leaves a live writer's alone."""
    target = tmp_path / "images.npy"
    code = (
        "import sys, time; from pathlib import Path; from mnistlab._atomic import atomic_writer\n"
        "with atomic_writer(Path(sys.argv[1])) as f:\n"
        "    f.write(b'x' * 100000); f.flush(); print('writing', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    finally:
        proc.kill()  # SIGKILL: no clean-up runs
        proc.wait()
    (dead,) = tmp_path.glob(".images.npy.*.tmp")
    live = tmp_path / ".images.npy.running.tmp"  # another process writing it now: locked, left alone
    with open(live, "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        atomic_write_bytes(target, b"new")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "images.npy"])
    assert not dead.exists() and target.read_bytes() == b"new"


def test_a_cache_that_cannot_be_written_is_said_once_a_load(mnist_full, mnist_dir, tmp_path, monkeypatch, caplog):
    """A cache folder that cannot be written made every load read the source files again, seconds each time,
    without a word (behind a link to a drive not mounted), or said its cache "failed their check" (a file in its
    way), though there was none."""
    (tmp_path / "blocker").write_text("a file where the cache folder would be\n")
    (tmp_path / "unmounted").symlink_to(tmp_path / "usb-drive" / "cache")
    for name in ("blocker", "unmounted"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / name))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
            b = load_mnist(data_dir=mnist_dir)
        (line,) = [r.getMessage() for r in caplog.records]
        assert line.startswith(f"mnistlab: cannot cache the arrays in {tmp_path / name}/"), line
        assert "each load reads the source files again" in line and "XDG_CACHE_HOME" in line, line
        assert np.array_equal(b.target, mnist_full.target)


def test_files_written_together_clear_a_killed_writes_leftovers_and_keep_a_live_ones(tmp_path):
    """compare's copy of a model (atomic_write_together) left a killed copy's temporary files and second links
    for good; and a live writer's second link, which is not its temporary file, must not be taken for one."""
    from mnistlab._atomic import atomic_write_together

    dead = [".model.onnx.k1ll3d.tmp", ".model.json.k1ll3d.tmp", ".model.json.k1ll3d.old.tmp"]
    for name in dead:
        (tmp_path / name).write_bytes(b"what a killed copy left")
    (tmp_path / "model.json").write_bytes(b"the card in place")
    live = tmp_path / ".model.json.running.old.tmp"  # a writer at work now holds its second link share-locked
    os.link(tmp_path / "model.json", live)
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_SH)
        atomic_write_together(tmp_path, {"model.onnx": b"graph", "model.json": b"card"})
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "model.json", "model.onnx"])
    assert (tmp_path / "model.json").read_bytes() == b"card" and live.read_bytes() == b"the card in place"


def test_a_swollen_manifest_costs_little_memory_before_the_cache_is_rebuilt(tmp_path, monkeypatch, caplog):
    # manifest.json was read whole: a damaged one of 1 GiB (a sparse file) cost 2.2 GB of memory to refuse.
    import tracemalloc

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = _tiny_folder(tmp_path / "tiny")
    load_mnist(data_dir=folder)
    manifest = array_cache_dir("tiny", find_idx_files(folder)) / "manifest.json"
    os.truncate(manifest, 256 * 2**20)
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
            b = load_mnist(data_dir=folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak:,} bytes"
    assert [r.getMessage() for r in caplog.records][0].endswith(
        "failed their check (manifest.json holds more than 1,048,576 bytes, far more than a manifest); rebuilt "
        "them from the verified source files."
    )
    assert b.details["n_train"] == 20 and manifest.stat().st_size < 2**20


def test_a_dataset_named_in_long_characters_has_a_cache_folder_a_file_system_takes(tmp_path):
    """The name was cut at 64 characters: 63 emoji (252 bytes, a valid folder name) made a cache folder of 270
    bytes, "File name too long", and each load read the source files again."""
    name = "\N{GRINNING FACE}" * 63
    files = {"train_images": tmp_path / name / "train-images-idx3-ubyte"}
    folder = array_cache_dir(name, files).name
    assert len(folder.encode()) <= 100 and folder.startswith("\N{GRINNING FACE}" * 16 + "-")


@pytest.mark.parametrize("env", [{}, {"LC_ALL": "C", "PYTHONUTF8": "0"}], ids=["utf-8", "ascii-locale"])
def test_a_data_folder_whose_name_is_not_utf8_loads_and_its_cache_is_kept(env, tmp_path):
    """A folder named b"caf\\xe9" (Latin-1), or "café" under LC_ALL=C with UTF-8 mode off, where Python names
    it in surrogates: the cache's key hashed the path as UTF-8, and every load (load_mnist, data info, compare
    --dataset) ended in "UnicodeEncodeError: surrogates not allowed", a traceback."""
    latin1 = write_idx_folder(
        os.fsdecode(bytes(tmp_path) + b"/caf\xe9"), random_idx_arrays(np.random.default_rng(0), 40, 20)
    )
    utf8 = write_idx_folder(tmp_path / "café", random_idx_arrays(np.random.default_rng(1), 40, 20))
    env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    for folder in (latin1, utf8, latin1):  # the third load maps the cache the first made
        done = subprocess.run(
            [sys.executable, "-c", _LOAD_AND_SAY, os.fsencode(folder)], capture_output=True, env={**os.environ, **env}
        )
        assert done.returncode == 0 and done.stderr == b"", done.stderr.decode(errors="replace")
    assert len(list((tmp_path / "cache" / "mnistlab" / "arrays").iterdir())) == 2


def test_a_warm_load_is_as_writable_as_the_first_and_never_changes_the_cache(tmp_path, monkeypatch, caplog):
    # The first load gave writable arrays and every later one a read-only map of the cache: code that binarised
    # mnist.data in place (X[X < 128] = 0) ran once, then failed each time after with numpy's "assignment
    # destination is read-only".
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = write_idx_folder(tmp_path / "data", random_idx_arrays(np.random.default_rng(0), 40, 20))
    first = load_mnist(data_dir=folder)
    original = first.data.copy()
    for _ in range(2):  # two warm loads: the second sees no change the first made
        b = load_mnist(data_dir=folder)
        assert is_mapped(b.images), "a warm load maps the cache"
        assert b.data.flags.writeable and b.images.flags.writeable and b.target.flags.writeable
        b.data[b.data < 128] = 0
        b.target[:] = 9
        assert b.images[0].max() == b.data[0].max()  # images and data are still one memory
    with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
        again = load_mnist(data_dir=folder)
    assert is_mapped(again.images) and caplog.records == []  # the cache passed its check, unchanged
    np.testing.assert_array_equal(again.data, original)
    assert again.target[0] == 0


_LOAD_AND_SAY = """
import logging, sys
logging.basicConfig(format="%(message)s")
from mnistlab import load_mnist
b = load_mnist(data_dir=sys.argv[1])
print(b.images.sum(), b.target.sum(), type(b.images).__name__)
"""


@pytest.mark.parametrize("name", ["manifest.json", "images.npy"])
def test_a_named_pipe_in_the_cache_is_rebuilt_not_waited_on_for_ever(name, tmp_path, monkeypatch):
    """A named pipe in place of a cache file (mkfifo, a careless script) blocked every load for ever: the open
    waited for a writer that never came. It is not a cache file: rebuilt, with one line."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = write_idx_folder(tmp_path / "data", random_idx_arrays(np.random.default_rng(0), 40, 20))
    first = load_mnist(data_dir=folder)
    cache = array_cache_dir("data", find_idx_files(folder))
    (cache / name).unlink()
    os.mkfifo(cache / name)
    run = subprocess.run([sys.executable, "-c", _LOAD_AND_SAY, str(folder)], capture_output=True, text=True, timeout=15)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:2] == [str(first.images.sum()), str(first.target.sum())]
    assert run.stderr.count("\n") == 1 and f"{name} is not a regular file); rebuilt them" in run.stderr, run.stderr
    assert (cache / name).is_file()  # the pipe replaced by the cache file
    again = load_mnist(data_dir=folder)
    assert is_mapped(again.images) and np.array_equal(again.target, first.target)


def test_a_source_replaced_while_the_cache_is_built_is_read_again_next_time(tmp_path, monkeypatch):
    """The stamp of the source files was taken after they were read: a file saved anew while the first load read
    the old one was stamped as the new one, and every later load served the old images from the cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    folder = write_idx_folder(tmp_path / "data", random_idx_arrays(rng, 40, 20))
    (images,) = folder.glob("train-images*")
    newer = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    read = cache_module.read_idx_sha256

    def read_then_save_anew(path):  # the real read, then the user's program saves the file again
        out = read(path)
        if path == images:
            write_idx(tmp_path / f"new{images.suffix}", newer)
            os.replace(tmp_path / f"new{images.suffix}", images)
        return out

    monkeypatch.setattr(cache_module, "read_idx_sha256", read_then_save_anew)
    first = load_mnist(data_dir=folder)
    monkeypatch.setattr(cache_module, "read_idx_sha256", read)
    assert not np.array_equal(first.images[:40], newer)  # read before it was replaced
    np.testing.assert_array_equal(load_mnist(data_dir=folder).images[:40], newer)


@pytest.mark.parametrize("case", ["name too long", "loop of links"])
def test_a_cache_folder_that_cannot_be_reached_is_said_as_one_not_as_a_failed_check(
    case, tmp_path, monkeypatch, caplog
):
    """A cache folder that cannot be reached (a name past the file system's 255 bytes, links that point at each
    other) said its cached arrays "failed their check", though there never was a cache: not that it cannot cache."""
    if case == "loop of links":
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cache = tmp_path / ("a" * 300 if case == "name too long" else "loop")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    folder = write_idx_folder(tmp_path / "data", random_idx_arrays(np.random.default_rng(0), 40, 20))
    with caplog.at_level(logging.WARNING, logger="mnistlab.data"):
        b = load_mnist(data_dir=folder)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"mnistlab: cannot cache the arrays in {cache}/"), line
    assert REBUILT not in line and "XDG_CACHE_HOME" in line, line
    assert b.images.shape == (60, 28, 28) and not is_mapped(b.images)


def test_a_named_pipe_named_as_a_leftover_temp_file_is_removed_not_waited_on(tmp_path):
    """The next write opened each leftover temp file to test its lock: a named pipe of such a name (mkfifo) blocked
    that open, and so every write of the file (a cache, a model), for ever."""
    os.mkfifo(tmp_path / ".images.npy.dead.tmp")
    code = "import sys; from mnistlab._atomic import atomic_write_bytes; atomic_write_bytes(sys.argv[1], b'new')"
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "images.npy")], capture_output=True, timeout=15)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy"]
    assert (tmp_path / "images.npy").read_bytes() == b"new"


def test_a_warm_loads_arrays_go_to_joblibs_worker_processes_as_they_are_here(tmp_path, monkeypatch):
    """cross_val_score(..., n_jobs=2) on a warm load's arrays died in BrokenProcessPool: joblib sent an np.memmap
    to its workers by its file name, which an array mapped through a descriptor has not."""
    from joblib import Parallel, delayed
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import cross_val_score

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = write_idx_folder(tmp_path / "data", random_idx_arrays(np.random.default_rng(0), 3000, 20))
    load_mnist(data_dir=folder)
    warm = load_mnist(data_dir=folder)
    assert is_mapped(warm.data)
    X, y = warm.data, warm.target  # 2.4 MB: joblib passes it through a file of its own (above 1 MB)
    X[0, :] = 255  # changed here, copy-on-write: the workers see the change, the cache never does
    sums = Parallel(n_jobs=2)(delayed(np.sum)(a) for a in (X, X[:10], y))
    assert sums == [X.sum(), X[:10].sum(), y.sum()]
    scores = cross_val_score(SGDClassifier(max_iter=5, tol=None, random_state=0), X, y, cv=2, n_jobs=2)
    assert len(scores) == 2
    assert not np.all(load_mnist(data_dir=folder).data[0] == 255)


_LOAD_ON_A_FULL_DISK = """
import resource, sys
from mnistlab import load_mnist

resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # a disk that fills: a larger write fails (EFBIG)
print(len(load_mnist(data_dir=sys.argv[1]).target))
"""


def test_a_cache_that_a_full_disk_cut_short_leaves_no_array_behind(tmp_path):
    """The arrays are written one after another, the manifest last: a disk that filled after the images kept
    their file, without a manifest that vouched for it, for ever (55 MB for MNIST, on a full disk), as each later
    load failed to write a new one beside it. Here the labels (int32: 4 bytes each) outgrow the images (1 pixel)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    for split, n in (("train", 4000), ("t10k", 1000)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 1, 1), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.int32))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_ON_A_FULL_DISK, str(folder)], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and run.stdout == "5000\n", run.stderr[-2000:]
    assert "cannot cache the arrays" in run.stderr and "(File too large)" in run.stderr, run.stderr
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


_WRITE_ON_A_FULL_DISK = """
import resource, sys
from pathlib import Path
from mnistlab._atomic import atomic_write_bytes, atomic_write_together

resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a disk that fills: a larger write fails (EFBIG)
for write in (lambda: atomic_write_bytes(Path(sys.argv[1]) / "new" / "dir" / "a.png", bytes(10_000)),
              lambda: atomic_write_together(Path(sys.argv[1]) / "other", {"a": b"", "b": bytes(10_000)})):
    try:
        write()
    except OSError as exc:
        print(exc.strerror)
"""


def test_a_write_that_fails_removes_the_folders_it_made(tmp_path):
    """``show --out new/dir/a.png``, ``export --onnx new/m.onnx`` on a full disk: the write was refused in one
    sentence, but the folders made for it stayed behind, empty."""
    run = subprocess.run([sys.executable, "-c", _WRITE_ON_A_FULL_DISK, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "File too large\n" * 2, run.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
