import copy
import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mnistlab import ChecksumError, DatasetError, InputError, load_mnist, load_split, write_idx
from mnistlab.data.bunch import Bunch
from mnistlab.data.cache import is_mapped
from mnistlab.data.registry import DATASETS, ROLES
from mnistlab.data.sources import sha256_decompressed

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_shapes_labels_and_checksums(mnist_full, mnist_dir):
    b = mnist_full
    assert b.data.shape == (70000, 784) and b.data.dtype == np.uint8
    assert b.images.shape == (70000, 28, 28)
    assert b.target.dtype == np.int64 and b.target[:5].tolist() == [5, 0, 4, 1, 9]
    assert b.feature_names[0] == "pixel1" and b.feature_names[-1] == "pixel784"
    assert b.target_names == [str(i) for i in range(10)]
    d = b.details
    assert d["verified"] and d["n_train"] == 60000 and d["n_test"] == 10000
    assert d["checksums"] == DATASETS["mnist"].sha256
    assert np.bincount(b.target[:60000]).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(b.target[60000:]).tolist() == MNIST_TEST_COUNTS
    # The published pixel mean of the training set (README of the shared copy).
    assert b.data[:60000].mean() == pytest.approx(33.3184, abs=1e-3)


def test_x0_is_the_first_image_not_a_keyerror(mnist_full):
    X = mnist_full.data
    assert X[0].shape == (784,) and X[0].reshape(28, 28).tolist() == mnist_full.images[0].tolist()


def test_as_frame_adds_a_frame_and_keeps_numpy_data():
    b = load_mnist("mnist", as_frame=True)
    assert isinstance(b.data, np.ndarray) and b.data[0].shape == (784,)
    assert b.frame.shape == (70000, 785)
    assert list(b.frame.columns[:2]) == ["pixel1", "pixel2"] and b.frame.columns[-1] == "class"
    assert b.frame["class"].iloc[0] == 5


def test_float_dtype_is_scaled_to_unit_range():
    b = load_mnist("mnist", dtype=np.float32)
    assert b.data.dtype == np.float32 and 0.0 <= b.data.min() and b.data.max() == 1.0
    assert b.data[:60000].mean() == pytest.approx(0.1307, abs=1e-4)
    with pytest.raises(InputError, match="dtype"):
        load_mnist("mnist", dtype=np.int16)


def test_warm_load_is_a_memory_map(mnist_full):
    b = load_mnist("mnist")
    assert is_mapped(b.images)
    assert np.shares_memory(b.data, b.images)


def test_mnist_loads_without_scikit_learn_as_a_dict_read_by_attributes(mnist_full):
    # scikit-learn's Bunch cost every `mnistlab data info` and `show` a second of importing scikit-learn
    code = "import sys; from mnistlab import load_mnist, load_split; load_mnist(); load_split(); print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split() == ["False"], done.stderr
    bunch = Bunch(**mnist_full)
    assert bunch.data is mnist_full["data"] and "target" in dir(bunch)
    bunch.frame = "added"
    assert bunch["frame"] == "added"
    del bunch.frame
    with pytest.raises(AttributeError, match="frame"):
        getattr(bunch, "frame")  # noqa: B009  (the attribute read is what is tested)
    again = pickle.loads(pickle.dumps(bunch))
    assert type(again) is Bunch and again.keys() == bunch.keys() and np.array_equal(again.target, bunch.target)
    assert copy.deepcopy(bunch).details == bunch.details


def test_official_split_sizes(mnist_full):
    X_tr, X_te, y_tr, y_te = load_split("mnist")
    assert X_tr.shape == (60000, 784) and X_te.shape == (10000, 784)
    assert y_tr[:3].tolist() == [5, 0, 4] and y_te[:3].tolist() == [7, 2, 1]


def test_random_split_is_stratified_and_seeded():
    a = load_split("mnist", split="random", test_size=0.2, seed=3)
    b = load_split("mnist", split="random", test_size=0.2, seed=3)
    c = load_split("mnist", split="random", test_size=0.2, seed=4)
    X_tr, X_te, y_tr, y_te = a
    assert len(y_te) == 14000 and len(y_tr) == 56000
    np.testing.assert_array_equal(a[3], b[3])
    assert not np.array_equal(a[3], c[3])
    overall = np.bincount(np.concatenate([y_tr, y_te])) / 70000
    np.testing.assert_allclose(np.bincount(y_te) / len(y_te), overall, atol=2e-4)
    with pytest.raises(InputError, match="split"):
        load_split("mnist", split="nope")


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"seed": -1}, "seed must be a whole number from 0 to 4294967295, got -1"),
        ({"seed": "a"}, "seed must be a whole number"),
        ({"test_size": np.int64(5)}, "test_size must leave 10 images or more on each side"),
        ({"test_size": 0.00001}, "a count between 10 and 1787, or a fraction that gives one, got 1e-05"),
        ({"test_size": 0.99999}, "test_size must leave 10 images or more on each side"),
        ({"test_size": "0.2"}, "test_size must be a count of images or a fraction, got '0.2'"),
        ({"test_size": 1.5}, "test_size as a fraction must be between 0 and 1"),
    ],
)
def test_a_random_split_checks_its_seed_and_test_size(kwargs, says):
    with pytest.raises(InputError, match=re.escape(says)):
        load_split("digits", split="random", **kwargs)
    assert len(load_split("digits", split="random", test_size=np.int64(100))[3]) == 100  # numpy counts are counts


def test_a_dataset_name_or_dtype_that_cannot_be_is_one_sentence():
    with pytest.raises(DatasetError, match="A dataset is named by a string, got list; expected one of mnist"):
        load_mnist(["mnist"])
    with pytest.raises(InputError, match="dtype must be uint8 or a float dtype, got 'bogus'"):
        load_mnist("digits", dtype="bogus")


def test_digits_smoke_set_is_offline_and_instant():
    b = load_mnist("digits")
    assert b.data.shape == (1797, 64) and b.images.shape == (1797, 8, 8)
    assert b.details["n_train"] + b.details["n_test"] == 1797


def test_unknown_dataset_names_known_ones():
    with pytest.raises(DatasetError, match="expected one of mnist, fashion-mnist, digits"):
        load_mnist("emnist")


def _tiny_idx_folder(folder, n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(n_test) % 10).astype(np.uint8))
    return folder


def test_a_random_split_names_a_class_with_a_single_image(tmp_path):
    folder = _tiny_idx_folder(tmp_path / "lonely", n_train=30, n_test=10)
    labels = np.arange(1, 31) % 10
    labels[labels == 0] = 1
    labels[7] = 0  # the only 0: none in the test set either
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", (np.arange(10) % 9 + 1).astype(np.uint8))
    with pytest.raises(InputError) as info:
        load_split(data_dir=folder, split="random", test_size=10)
    assert str(info.value) == (
        "split='random' keeps every class on both sides, so it needs two images or more of each, but class 0 has "
        "only one; add images of class 0, or use split='official'."
    )
    assert len(load_split(data_dir=folder)[3]) == 10  # the official split does not care


def test_a_random_split_of_a_folder_with_a_tiny_test_set_says_what_test_size_to_give(tmp_path):
    folder = _tiny_idx_folder(tmp_path / "small", n_train=40, n_test=5)  # the default test size: 5, for 10 classes
    with pytest.raises(InputError) as info:
        load_split(data_dir=folder, split="random")
    assert str(info.value) == (
        "test_size is 5, too few or too many to put an image of each of the 10 classes on both sides; give a "
        "test_size between 10 and 35."
    )
    assert len(load_split(data_dir=folder, split="random", test_size=10)[3]) == 10


@pytest.mark.parametrize("name", ["mnist", None])
def test_an_empty_data_dir_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, name):
    # data_dir="" (an unset $DATA in a script) loaded whatever IDX files the current folder held; the CLI refused it.
    monkeypatch.chdir(_tiny_idx_folder(tmp_path / "here"))
    with pytest.raises(InputError, match="^data_dir is empty, which would mean the current folder; give it a path.$"):
        load_mnist(name, data_dir="")


def test_any_folder_of_idx_files_loads_unverified(tmp_path):
    folder = _tiny_idx_folder(tmp_path / "mine")
    b = load_mnist(data_dir=folder)
    assert b.data.shape == (30, 784) and not b.details["verified"]
    assert b.details["n_train"] == 20 and b.target[:3].tolist() == [0, 1, 2]


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion-mnist"])
def test_a_folder_named_as_a_registered_dataset_is_read_as_the_folder_it_is(tmp_path, name):
    # A folder named digits was taken for scikit-learn's 0-16 digits: its 0-255 pixels, as floats, went up to 15.9,
    # and compare stretched them by 255/16 past white.
    from mnistlab.lab.fitting import open_dataset, split_for
    from mnistlab.lab.options import RunOptions

    folder = _tiny_idx_folder(tmp_path / name)
    pixels = load_mnist(data_dir=folder).data
    assert load_mnist(data_dir=folder, dtype="float32").data.max() == pixels.max() / 255
    recorded, bunch = open_dataset(str(folder))
    cut = split_for(recorded, bunch, RunOptions(seed=0))
    assert (recorded, cut.data_dir, cut.stretched_from) == (name, str(folder), 255)
    assert np.array_equal(np.sort(cut.X_train, axis=None), np.sort(pixels[:20], axis=None))


def test_cache_notices_when_its_source_changed(tmp_path):
    folder = _tiny_idx_folder(tmp_path / "mine")
    first = load_mnist(data_dir=folder).target.copy()
    write_idx(folder / "t10k-labels-idx1-ubyte", np.full(10, 7, np.uint8))
    second = load_mnist(data_dir=folder)
    assert second.target[20:].tolist() == [7] * 10 and first[20:].tolist() != [7] * 10


def test_cache_notices_a_source_copied_over_with_its_size_and_mtime_kept(tmp_path):
    folder = _tiny_idx_folder(tmp_path / "mine")
    assert load_mnist(data_dir=folder).target[20:].tolist() == list(range(10))
    corrected = tmp_path / "corrected" / "t10k-labels-idx1-ubyte"
    corrected.parent.mkdir()
    write_idx(corrected, np.full(10, 7, np.uint8))  # the same size as the file it replaces
    target = folder / "t10k-labels-idx1-ubyte"
    before = target.stat()
    os.utime(corrected, ns=(before.st_atime_ns, before.st_mtime_ns))
    shutil.copy2(corrected, target)  # as cp -p or rsync -a do: same size, same mtime
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert load_mnist(data_dir=folder).target[20:].tolist() == [7] * 10


def test_registered_name_with_another_data_set_says_so_without_advising_deletion(tmp_path):
    folder = _tiny_idx_folder(tmp_path / "fake")
    with pytest.raises(ChecksumError) as info:
        load_mnist("mnist", data_dir=folder)
    assert str(info.value) == (
        f"None of the four IDX files in {folder} matches the published sha256 of mnist's, so it holds another data "
        "set; leave out the name mnist to load the folder as it is, or give the folder that holds mnist."
    )


def test_a_good_mnist_folder_given_for_fashion_mnist_is_named_as_mnist(mnist_dir, tmp_path):
    with pytest.raises(ChecksumError) as info:
        load_mnist("fashion-mnist", data_dir=mnist_dir)
    assert str(info.value) == (
        f"{mnist_dir} holds mnist's files, not fashion-mnist's; load it as mnist, or give the folder that holds "
        "fashion-mnist."
    )
    # One file of four wrong is a damaged copy, and that one file is to be replaced.
    folder = tmp_path / "copy"
    shutil.copytree(mnist_dir, folder)
    os.chmod(folder / "t10k-labels-idx1-ubyte.gz", 0o644)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, np.uint8))
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz does not match .* delete or replace the file"):
        load_mnist("mnist", data_dir=folder)


def test_corrupt_copy_in_data_env_is_reported(tmp_path, mnist_dir, monkeypatch):
    folder = tmp_path / "env"
    shutil.copytree(mnist_dir, folder)
    os.chmod(folder / "t10k-labels-idx1-ubyte.gz", 0o644)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(10000, np.uint8))
    monkeypatch.setenv("MNISTLAB_DATA", str(folder))
    with pytest.raises(ChecksumError, match="t10k-labels"):
        load_mnist("mnist")


def test_flat_data_env_with_another_dataset_is_skipped(tmp_path, mnist_dir, monkeypatch):
    # MNIST files in MNISTLAB_DATA must not be taken for Fashion-MNIST (same file names).
    monkeypatch.setenv("MNISTLAB_DATA", str(mnist_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MNISTLAB_MIRRORS", "http://127.0.0.1:9/")
    if os.path.isdir("/usr/share/datasets/fashion-mnist"):
        assert load_mnist("fashion-mnist").target_names[0] == "T-shirt/top"
    else:
        with pytest.raises(DatasetError, match="fashion-mnist was not found"):
            load_mnist("fashion-mnist", download=False)


def test_a_data_env_of_another_dataset_is_named_in_the_not_found_sentence(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 20)):
        write_idx(folder / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{part}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    monkeypatch.setenv("MNISTLAB_DATA", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=re.escape(f"{folder} [four IDX files, not mnist's];")):
        load_mnist("mnist", download=False)


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)",
)
def test_fashion_mnist_from_debian_package():
    b = load_mnist("fashion-mnist")
    assert b.details["verified"] and b.details["path"] == "/usr/share/datasets/fashion-mnist"
    assert b.data.shape == (70000, 784) and np.bincount(b.target).tolist() == [7000] * 10


def test_decompressed_checksum_is_independent_of_compression(tmp_path, mnist_dir):
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    import gzip

    raw.write_bytes(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    assert sha256_decompressed(raw) == DATASETS["mnist"].sha256["test_labels"]
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == sha256_decompressed(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert set(ROLES) == set(DATASETS["mnist"].sha256)


def test_load_split_splits_a_given_bunch_and_refuses_anything_else():
    digits = load_mnist("digits")
    X_tr, X_te, y_tr, y_te = load_split(bunch=digits)
    assert len(X_tr) == digits.details["n_train"] and len(X_te) + len(X_tr) == len(digits.data)
    # bunch was read as a load_mnist result unchecked: an AttributeError for anything else
    for wrong in (5, {"data": digits.data}):
        with pytest.raises(InputError, match="^bunch must be what load_mnist returned"):
            load_split(bunch=wrong)
    # What a cluster's worker gets: the arrays and details, no names (it was refused, and every cluster run with it).
    lean = Bunch(data=digits.data, target=digits.target, details=digits.details)
    assert len(load_split(bunch=lean, split="random", test_size=100, seed=1)[1]) == 100


def test_a_folder_given_with_a_tilde_is_looked_for_in_the_home_folder(mnist_dir, tmp_path, monkeypatch):
    # ~/mnist was looked for as a folder named "~" in the current folder: a shell leaves the ~ of
    # --data-dir=~/mnist as it is, and so does a quoted path or MNISTLAB_DATA=~/mnist in a .env file.
    from typer.testing import CliRunner

    from mnistlab.cli import app

    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist").symlink_to(mnist_dir)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    where = str(mnist_dir.resolve())
    assert load_mnist(data_dir="~/mnist").details["path"] == where
    result = CliRunner().invoke(app, ["data", "info", "--data-dir=~/mnist", "--json"])
    assert result.exit_code == 0, result.output
    assert f'"path": "{where}"' in result.stdout
    monkeypatch.setenv("MNISTLAB_DATA", "~/mnist")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing there: only ~/mnist holds mnist
    assert load_mnist("mnist", download=False).details["path"] == where
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize("emnist_set", ["digits", "mnist"])
def test_an_emnist_digits_folder_loads_with_its_images_turned_the_way_mnist_holds_them(tmp_path, emnist_set):
    # EMNIST's own file names (emnist-digits-train-images-idx3-ubyte.gz, ...) were 'does not hold the four IDX
    # files'; and EMNIST stores each image transposed, so renamed files loaded digits lying on their side.
    # EMNIST's other set of the ten digits, emnist-mnist-*, was still 'does not hold the four IDX files'.
    rng = np.random.default_rng(3)
    images = {"train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), "test": rng.integers(0, 256, (10, 28, 28))}
    folder = tmp_path / "gzip"
    folder.mkdir()
    for split, upright in images.items():
        stored = np.ascontiguousarray(upright.astype(np.uint8).transpose(0, 2, 1))  # as EMNIST publishes them
        write_idx(folder / f"emnist-{emnist_set}-{split}-images-idx3-ubyte.gz", stored)
        write_idx(
            folder / f"emnist-{emnist_set}-{split}-labels-idx1-ubyte.gz",
            (np.arange(len(upright)) % 10).astype(np.uint8),
        )
    b = load_mnist(data_dir=folder)
    assert (b.details["n_train"], b.details["n_test"]) == (20, 10) and not b.details["verified"]
    assert np.array_equal(b.images[:20], images["train"]) and np.array_equal(b.images[20:], images["test"])
    assert np.array_equal(load_mnist(data_dir=folder).images, b.images)  # the same from the cache


@pytest.mark.parametrize("emnist_set", ["letters", "balanced"])
def test_a_folder_of_emnists_letters_says_they_are_not_read_not_that_files_are_missing(tmp_path, emnist_set):
    # Such a folder (its four files as NIST publishes them) was 'does not hold the four IDX files (train-images,
    # ...); give the folder that holds them', as if a file were missing; renamed, they are refused by their labels.
    folder = tmp_path / "gzip"
    folder.mkdir()
    for split in ("train", "test"):
        write_idx(folder / f"emnist-{emnist_set}-{split}-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
        write_idx(folder / f"emnist-{emnist_set}-{split}-labels-idx1-ubyte.gz", np.array([1, 2, 26], np.uint8))
    with pytest.raises(DatasetError) as said:
        load_mnist(data_dir=folder)
    assert str(said.value) == (
        f"{folder} holds emnist-{emnist_set}-test-images-idx3-ubyte.gz, of EMNIST's {emnist_set} set, whose classes "
        "are not the ten digits, and mnistlab reads sets of the ten digits only; give a folder of EMNIST's digits "
        "(its emnist-digits or emnist-mnist files) or of other digits labelled 0-9."
    )


def test_a_folder_of_links_is_recorded_as_the_folder_given_not_where_the_links_point(tmp_path):
    # details["path"] was the folder the train-images link points to: a model compared on the folder recorded
    # that one as its data_dir, and evaluate then said it "no longer holds them" (the files there have other names).
    from mnistlab.lab.fitting import open_dataset, split_for
    from mnistlab.lab.options import RunOptions

    blobs = _tiny_idx_folder(tmp_path / "blobs")
    given = tmp_path / "given"
    given.mkdir()
    for i, held in enumerate(sorted(blobs.iterdir())):
        held.rename(blobs / f"{i}.bin")
        (given / held.name).symlink_to(blobs / f"{i}.bin")
    b = load_mnist(data_dir=given)
    assert b.details["path"] == str(given)
    recorded, bunch = open_dataset(str(given))
    assert split_for(recorded, bunch, RunOptions(seed=0)).data_dir == str(given)
    np.testing.assert_array_equal(load_mnist(data_dir=b.details["path"]).target, b.target)
