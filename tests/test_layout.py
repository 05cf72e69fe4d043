"""The package's shape: the folder tree is the architecture, and imports flow one way."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import mnistlab

PACKAGE = Path(mnistlab.__file__).parent
# Wings from the bottom up; a module may import from its own rank or below, never above.
RANK = {
    "errors": 0,
    "_atomic": 0,
    "_cpus": 0,
    "_processes": 0,
    "_version": 0,
    "_text": 0,
    "data": 1,
    "models": 2,
    "reading": 2,
    "testing": 2,
    "trust": 3,
    "lab": 4,
    "web": 5,
    "cli": 5,
    "__init__": 6,
    "__main__": 6,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # lines of code, the docstring not counted
# Functions allowed to be longer, each for a reason written in its first line.
LONG_ALLOWED_MARK = "long:"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _wing(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_wings(path: Path) -> set[str]:
    wings = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mnistlab" and len(parts) > 1:
                wings.add(parts[1])
    return wings


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    own = _wing(path)
    above = {w for w in _imported_wings(path) if RANK[w] > RANK[own]}
    assert not above, f"{path.relative_to(PACKAGE)} ({own}) imports from wings above it: {sorted(above)}"


def test_every_wing_is_a_subpackage_and_every_module_is_ranked():
    for path in _modules():
        assert _wing(path) in RANK, f"{path.relative_to(PACKAGE)} is in no known wing"
    for wing in ("data", "models", "reading", "trust", "lab", "web", "testing"):
        assert (PACKAGE / wing / "__init__.py").is_file(), f"{wing}/ is not a subpackage"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    source = path.read_text()
    n_lines = len(source.splitlines())
    assert n_lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {n_lines} lines"
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            doc = node.body[0] if node.body and isinstance(node.body[0], ast.Expr) else None
            if doc is not None and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                length -= doc.end_lineno - doc.lineno + 1  # a docstring explains; it is not code to read
            first = lines[node.lineno - 1] + (lines[node.lineno] if node.lineno < len(lines) else "")
            if length > MAX_FUNCTION_LINES:
                assert LONG_ALLOWED_MARK in first, (
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} has {length} lines and no '# long: <reason>'"
                )


def test_every_public_name_imports():
    for name in mnistlab.__all__:
        assert getattr(mnistlab, name) is not None, name
    for module in ("mnistlab.data", "mnistlab.models", "mnistlab.reading", "mnistlab.trust", "mnistlab.lab"):
        importlib.import_module(module)


def test_the_version_lives_in_one_place():
    from mnistlab._version import __version__

    assert mnistlab.__version__ == __version__
    pyproject = (PACKAGE.parents[1] / "pyproject.toml").read_text()
    assert 'version = {attr = "mnistlab._version.__version__"}' in pyproject
    assert "\nversion =" not in pyproject.split("[tool.setuptools.dynamic]")[0]


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()


def test_importing_the_package_and_the_cli_stays_light():
    """`mnistlab --help` and `import mnistlab` must not pay for torch, matplotlib, MLflow, Ray or the web stack."""
    code = (
        "import sys, mnistlab, mnistlab.cli; "
        "heavy = [m for m in ('torch', 'matplotlib', 'fastapi', 'onnx', 'sklearn', 'mlflow', 'statsmodels', 'ray') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing mnistlab and its CLI loads {out}"


def test_the_help_is_printed_without_typers_rich_panels():
    # typer's rich help imports rich.markdown and rich.traceback: 0.1-0.5 s of a 0.3 s `mnistlab --help`.
    code = (
        "import sys, mnistlab.cli, contextlib, io; "
        "out = io.StringIO(); stop = contextlib.redirect_stdout(out); stop.__enter__(); "
        "mnistlab.cli.app(['--help'], standalone_mode=False); stop.__exit__(None, None, None); "
        "print('typer.rich_utils' in sys.modules, 'rich.markdown' in sys.modules, 'serve' in out.getvalue())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]


def test_all_lists_exactly_the_lazy_names_and_the_errors():
    from mnistlab import errors

    lazy = set(mnistlab._SOURCES)
    assert set(mnistlab.__all__) == {"__version__"} | lazy
    assert set(errors.__all__) <= lazy
    assert len(mnistlab.__all__) == len(set(mnistlab.__all__))


def test_readmes_layout_names_every_module():
    """README's Layout table is where a reader finds a module: each one is named there (testing/'s by what it does)."""
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    unnamed = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if path.stem not in ("__init__", "__main__")
        and _wing(path) != "testing"
        and f"`{path.stem}`" not in layout
        and f"`{path.name}`" not in layout
    ]
    assert unnamed == [], f"README's Layout names no {', '.join(unnamed)}"
