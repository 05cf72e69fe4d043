"""What a user installs: the wheel built from this tree, not the editable checkout the other tests import.

The wheel must hold every file of the package (the shipped reader and the
page are data files, which a build leaves out unless ``package-data`` names
them), and the package installed from it must read a photo with nothing else
at hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnistlab.testing import make_photo

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mnistlab"
_BUILT_FROM = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in")
# What a source release holds beside them: the test suite, and the files the README sends its reader to.
_RELEASED = ("Makefile", ".ci", "tests", "benchmarks")
_LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tree (a build writes ``build/`` and ``*.egg-info`` beside its sources)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in _BUILT_FROM:
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=_LEFT_OUT)
    return _build_wheel(tree, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The source release built from a copy of the checkout, as ``python -m build --sdist`` builds it."""
    tree = tmp_path_factory.mktemp("checkout")
    for name in _BUILT_FROM + _RELEASED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, tree / name, ignore=_LEFT_OUT)
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=_LEFT_OUT)
    out = tmp_path_factory.mktemp("sdist")
    build = f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"
    _run([sys.executable, "-c", build], cwd=tree)
    (path,) = out.glob("mnistlab-*.tar.gz")
    return path


def _left_out(path: Path) -> bool:
    """Whether ``path`` is a file a run leaves in the checkout (bytecode, test caches), which no release holds."""
    return path.suffix == ".pyc" or bool({"__pycache__", ".pytest_cache", ".hypothesis"} & set(path.parts))


def _build_wheel(tree: Path, out: Path) -> Path:
    """The wheel pip builds from the source tree ``tree``, written into ``out``."""
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(tree)]
    )
    (path,) = out.glob("mnistlab-*.whl")
    return path


def _run(args: list[str], **kwargs) -> str:
    """Run ``args`` to success; its standard output."""
    run = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _package_files() -> set[str]:
    """Every file of the package in the tree, as the wheel names it (``mnistlab/...``)."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_the_wheel_holds_every_file_of_the_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        shipped = {name for name in z.namelist() if name.startswith("mnistlab/")}
    expected = _package_files()
    assert {"mnistlab/pretrained/card.json", "mnistlab/web/pages/index.html"} <= expected
    assert expected - shipped == set(), "files of the package missing from the wheel (see package-data)"
    assert shipped - expected == set(), "files in the wheel that the tree does not have"


def test_the_sdist_holds_the_test_suite_and_the_files_the_readme_names(sdist):
    with tarfile.open(sdist) as tar:
        released = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    paths = [p for name in _RELEASED for p in ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))]
    expected = {p.relative_to(ROOT).as_posix() for p in paths if p.is_file() and not _left_out(p.relative_to(ROOT))}
    assert {"tests/conftest.py", "benchmarks/RESULTS.md", "Makefile"} <= expected
    assert expected - released == set(), "files of the checkout missing from the sdist (see MANIFEST.in)"
    assert not [name for name in released if "__pycache__" in name or name.endswith(".pyc")]


def test_a_wheel_built_from_the_sdist_holds_the_wheels_files(sdist, wheel, tmp_path):
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (tree,) = (tmp_path / "unpacked").iterdir()
    again = _build_wheel(tree, tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as first, zipfile.ZipFile(again) as second:
        assert sorted(second.namelist()) == sorted(first.namelist())


def test_the_installed_wheel_reads_a_photo_with_its_shipped_reader(wheel, tmp_path, mnist_full):
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)])
    n = mnist_full.details["n_train"]
    seven = n + int(np.flatnonzero(np.asarray(mnist_full.target[n:]) == 7)[0])
    photo = tmp_path / "seven.jpg"
    photo.write_bytes(make_photo(mnist_full.images[seven], np.random.default_rng(0), style="paper"))
    for name in ("home", "data", "cache"):
        (tmp_path / name).mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "MNISTLAB_", "PYTHON"))}
    env.update(
        PYTHONPATH=str(site),  # ahead of the checkout's editable install
        HOME=str(tmp_path / "home"),
        MNISTLAB_DATA=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    where = _run([sys.executable, "-c", "import mnistlab; print(mnistlab.__file__)"], env=env, cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(site), where
    answer = json.loads(
        _run([sys.executable, "-m", "mnistlab.cli", "predict", str(photo), "--json"], env=env, cwd=tmp_path)
    )
    assert answer["digit"] == 7 and answer["confident"] is True
