"""A scikit-learn model's weights file (``model.skops``): what it may hold, and what loading it may cost.

skops rebuilds only the types on an allow-list (``TRUSTED_TYPES``), so a
file from elsewhere cannot run code. What loading costs is held to the file's
size before skops reads it (``_check_cost``), where skops unpacks every entry a
node names, once per node, and a sparse matrix's own archive without a bound.
Loaded as they were, each of these raised a process's peak memory from 0.4 GB:
a 1.3 MB file whose schema was deflated from 1 GB of spaces to 2.4 GB (10 s), a
1.8 MB file pointing 10,000 times at one 160 KB array to 1.9 GB, a 1.5 MB file
holding a deflated 800 MB sparse matrix to 1.5 GB. The files mnistlab writes are
stored uncompressed (``skops.io.dumps``' default), read each entry once and hold
no sparse matrix, so none of these is one of them.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from mnistlab.errors import ModelFileError

__all__ = ["TRUSTED_TYPES", "canonical_skops", "load_skops", "skops_io"]

# A package that scikit-learn ships only to take torch tensors through its array API; importing it imports torch.
_SKLEARN_TORCH_SHIM = "sklearn.externals.array_api_compat.torch"


def skops_io():
    """``skops.io``, imported without importing torch.

    skops lists scikit-learn's estimators as it is imported (``sklearn.utils.all_estimators``), which walks every
    package of scikit-learn and so imports its torch shim, and torch with it: about 1 s of a ``train`` or ``predict``
    that holds no tensor. The shim is hidden for that walk (a package that cannot be imported is skipped; it holds
    no estimator) and importable again after.
    """
    hide = "skops.io" not in sys.modules and _SKLEARN_TORCH_SHIM not in sys.modules
    if hide:
        sys.modules[_SKLEARN_TORCH_SHIM] = None  # None: "cannot be imported"
    try:
        import skops.io as sio
    except ImportError:
        if not hide:
            raise
        # A scikit-learn or skops that imports the shim by name, not only through the walk: with torch, then.
        sys.modules.pop(_SKLEARN_TORCH_SHIM, None)
        hide = False
        import skops.io as sio
    finally:
        if hide and sys.modules.get(_SKLEARN_TORCH_SHIM, 0) is None:
            del sys.modules[_SKLEARN_TORCH_SHIM]
    return sio


# Types that skops does not trust by default but that our classic recipes
# contain: our own stateless transformers and scikit-learn's tree structure.
# Exactly what `skops.io.get_untrusted_types` reports for the registered
# recipes (tests/test_modelfiles.py keeps this list honest). Anything else in
# a .skops file is refused.
TRUSTED_TYPES = (
    "mnistlab.models.transforms.Deskew",
    "mnistlab.models.transforms.PixelScaler",
    "sklearn.tree._tree.Tree",
)
# Where our transformers lived before the package had wings: skops files record a
# type by its module path, so model directories saved then name these.
_LEGACY_MODULES = {"mnistlab._transforms": "mnistlab.models.transforms"}
_LEGACY_TYPES = tuple(
    name.replace(new, old, 1)
    for old, new in _LEGACY_MODULES.items()
    for name in TRUSTED_TYPES
    if name.startswith(new + ".")
)


# The time every entry of a saved file is stamped with: zip's earliest (1980), as reproducible builds use.
_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)


def canonical_skops(data: bytes) -> bytes:
    """``data`` (the bytes of ``skops.io.dumps``) with the same bytes for the same model, whenever and wherever saved.

    skops names every node (``__id__``), and every array's entry, by the object's ``id()``, its address in the
    saving process's memory, and stamps each entry with the time it was written: the same command with the same
    seed, in another folder or a second later, wrote another file (another ``weights_sha256``). Here the ids and
    the entries are numbered in the schema's order from 1 (skops memoises no node of id 0), the same id the same
    number, so nodes that shared an object still share it, and every entry is stamped 1980-01-01.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
        entries = {item.filename: archive.read(item) for item in archive.infolist()}
    ids: dict[object, int] = {}
    names: dict[str, str] = {}  # entry -> its new name, in the order the schema names them
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__id__"), int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            if isinstance(node.get("file"), str):
                node["file"] = names.setdefault(node["file"], f"{len(names) + 1}{Path(node['file']).suffix}")
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        renamed = [
            (new, _zero_padding(entries[old]) if new.endswith(".npy") else entries[old]) for old, new in names.items()
        ]
        for name, body in [*renamed, ("schema.json", json.dumps(schema, indent=2).encode())]:
            entry = zipfile.ZipInfo(name, date_time=_ENTRY_TIME)
            entry.external_attr = 0o600 << 16  # as skops's writestr sets it
            archive.writestr(entry, body)
    return out.getvalue()


def _zero_padding(entry: bytes) -> bytes:
    """An array's ``.npy`` entry with the padding between its fields zeroed. A tree's nodes (scikit-learn's
    ``Tree``) are records of 57 bytes padded to 64, and the 7 bytes were never written: the saved file held
    whatever the process's memory held there, so the same trees, saved again (or after other work), were other
    bytes. An entry of an array without such padding is kept as it is."""
    stream = io.BytesIO(entry)
    if np.lib.format.read_magic(stream) == (1, 0):  # the header alone: most arrays (a k-NN's 47 MB) have no fields
        dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=2**20)[2]
    else:
        dtype = np.load(io.BytesIO(entry), allow_pickle=False).dtype
    fields = dtype.fields
    if fields is None or sum(field[0].itemsize for field in fields.values()) == dtype.itemsize:
        return entry
    array = np.load(io.BytesIO(entry), allow_pickle=False)
    clean = np.zeros(array.shape, dtype=array.dtype)
    for name in fields:
        clean[name] = array[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def load_skops(data: bytes, weights_path: Path):
    """The estimator in the skops file ``data`` (the bytes of ``weights_path``), its cost and types checked first."""
    sio = skops_io()
    _check_cost(data, weights_path)
    try:
        found = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises assorted errors on a damaged archive
        raise ModelFileError(f"{weights_path} is not a readable skops file ({exc}); retrain the model.") from None
    unknown = sorted(found - set(TRUSTED_TYPES) - set(_LEGACY_TYPES))
    if unknown:
        raise ModelFileError(
            f"{weights_path} contains types mnistlab does not trust ({', '.join(unknown)}); only load models written by mnistlab."
        )
    if found & set(_LEGACY_TYPES):
        # skops imports each type by its recorded module path: point the old paths at the new modules.
        for old, new in _LEGACY_MODULES.items():
            sys.modules.setdefault(old, importlib.import_module(new))
    try:
        estimator = sio.loads(data, trusted=list(TRUSTED_TYPES + _LEGACY_TYPES))
    except Exception as exc:
        raise ModelFileError(
            f"{weights_path} could not be rebuilt ({type(exc).__name__}: {exc}); retrain the model."
        ) from None
    _check_answers(estimator, weights_path)
    return estimator


# Pixels a model may read per image: a 1024 x 1024 one (a CNN's largest side, models.cnn.config.MAX_SIDE).
_MAX_PIXELS = 2**20


def _check_answers(estimator, weights_path: Path) -> None:
    """Refuse a rebuilt model that answers nothing a fit gives: its classes out of order (a fit sorts them; the
    answers were each other's digits), or, asked about a blank and a full image, an error (weights of another
    shape than the pixels it says it reads, an unfitted step) or no finite probabilities (NaN weights). Every type
    in it is on the allow-list, but the values are the file's: such a model loaded and answered wrong, "sure" of
    it, or failed at its first answer with scikit-learn's or numpy's traceback."""
    from mnistlab.models.proba import class_probabilities, classic_limits, pixels_read

    try:
        classes = getattr(estimator, "classes_", None)
        if classes is not None and not _increasing(np.asarray(classes)):
            raise ValueError("its classes_ are not distinct and in increasing order, as a fit sorts them")
        _check_trees(estimator)  # before any answer: a child out of bounds crashed the process (a segfault)
        jobs = next((v for v in _jobs(estimator) if not _few(v)), None)
        if jobs is not None:  # 100,000 tried as many threads: 30 s, then 'has neither predict_proba nor ...'
            raise ValueError(f"it runs {jobs!r} jobs at once, where a fit on any machine runs at most {_MAX_JOBS}")
        n = pixels_read(estimator) or 784
        if not 1 <= n <= _MAX_PIXELS:
            raise ValueError(f"it says it reads {n:,} pixels an image")
        probe = np.zeros((2, n), np.uint8)
        probe[1] = 255
        with classic_limits(), np.errstate(all="ignore"):  # NaN weights: said below, not warned of
            proba = class_probabilities(estimator, probe)
        if proba.ndim != 2 or len(proba) != 2 or not np.isfinite(proba).all():
            raise ValueError("it answers no finite probabilities")
    except ModelFileError:
        raise
    except Exception as exc:  # scikit-learn's and numpy's own, on values no fit sets
        raise ModelFileError(
            f"{weights_path} holds a model that cannot answer as a fitted one does ({type(exc).__name__}: "
            f"{str(exc)[:200]}); retrain the model."
        ) from None


_MAX_OBJECTS = 1_000_000  # objects walked for trees: a forest of 100 trees is some 400


def _check_trees(estimator) -> None:
    """Refuse a scikit-learn ``Tree`` (an allow-listed type) whose nodes no fit makes: a child outside the tree, or
    not after its parent (a loop), or a split on a feature past those the tree, or the estimator holding it, reads.
    Its Cython code follows the nodes unchecked: such a tree crashed the process at its first answer (a segfault)
    or never answered."""
    from sklearn.tree._tree import Tree  # on demand: scikit-learn's import is seconds

    stack: list = [(estimator, None)]
    for _ in range(_MAX_OBJECTS):
        if not stack:
            return
        node, reads = stack.pop()
        if isinstance(node, Tree):
            _check_tree(node, reads)
        elif isinstance(node, dict | list | tuple) or (isinstance(node, np.ndarray) and node.dtype == object):
            items = (
                node.values() if isinstance(node, dict) else (node.ravel() if isinstance(node, np.ndarray) else node)
            )
            stack.extend((item, reads) for item in items)
        elif hasattr(node, "get_params") and hasattr(node, "__dict__"):  # an estimator: what it reads bounds its trees
            own = getattr(node, "__dict__", {}).get("n_features_in_")
            if type(node).__name__ == "Pipeline":
                own, reads = None, None  # its steps read what the step before gives
            if isinstance(own, int | np.integer):
                reads = int(own) if reads is None else min(reads, int(own))
            if "_dual_coef_" in vars(node) and "classes_" in vars(node):
                _check_libsvm(node)
            if "_fit_X" in vars(node) and "_y" in vars(node) and isinstance(vars(node).get("classes_"), np.ndarray):
                _check_neighbours(node)
            stack.extend((value, reads) for value in vars(node).values())
    raise ValueError(f"it holds more than {_MAX_OBJECTS:,} objects")


def _check_libsvm(svm) -> None:
    """Refuse a libsvm classifier (SVC) whose arrays do not fit its classes and support vectors: libsvm reads one
    intercept and probability pair per pair of classes, one dual coefficient per other class and support vector,
    unchecked (scikit-learn checks only the support vectors and their counts). With 2 intercepts for 45 pairs of
    classes, it read past them and answered otherwise."""
    k, n_sv = len(svm.classes_), len(svm.support_vectors_)
    pairs = (k * (k - 1) // 2,)
    probability = [np.shape(getattr(svm, name, ())) for name in ("_probA", "_probB")]
    if (
        np.shape(svm._intercept_) != pairs
        or np.shape(svm._dual_coef_) != (max(k - 1, 1), n_sv)
        or any(shape not in ((0,), pairs) for shape in probability)
    ):
        raise ValueError("its support vector machine's intercepts or coefficients do not fit its classes")


def _check_neighbours(knn) -> None:
    """Refuse a k-NN classifier whose neighbours' labels (``_y``, places in ``classes_``) are not one per training
    image within its classes: one of 12 among 10 classes loaded, then failed with numpy's IndexError at the first
    answer that met it (a negative one wrapped round to another class)."""
    labels, n = np.asarray(knn._y), np.shape(knn._fit_X)[:1]
    if (
        labels.ndim != 1
        or labels.dtype.kind not in "iu"
        or labels.shape != n
        or (len(labels) and not 0 <= labels.min() <= labels.max() < len(knn.classes_))
    ):
        raise ValueError("its nearest neighbours' labels are not one per training image among its classes")


def _check_tree(tree, reads: int | None) -> None:
    state = tree.__getstate__()
    nodes, count = state["nodes"], state["node_count"]
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    index = np.arange(len(nodes))
    inner = left != -1
    width = tree.n_features if reads is None else min(tree.n_features, reads)
    if not (
        count == len(nodes) >= 1
        and np.all(right[~inner] == -1)
        and np.all((left[inner] > index[inner]) & (left[inner] < count))
        and np.all((right[inner] > index[inner]) & (right[inner] < count))
        and np.all((feature[inner] >= 0) & (feature[inner] < width))
    ):
        raise ValueError(
            "it holds a tree whose nodes no fit makes (a child outside it or before it, or a feature past its input)"
        )


_MAX_JOBS = 256  # a model's n_jobs: one per CPU of the machine it was fitted on, or -1 (every CPU)


def _jobs(estimator) -> list:
    """The ``n_jobs`` of ``estimator`` and of its steps, None left out."""
    params = estimator.get_params(deep=True) if callable(getattr(estimator, "get_params", None)) else {}
    return [v for k, v in params.items() if k.split("__")[-1] == "n_jobs" and v is not None]


def _few(jobs) -> bool:
    return isinstance(jobs, int | np.integer) and not isinstance(jobs, bool) and bool(-_MAX_JOBS <= jobs <= _MAX_JOBS)


def _increasing(classes: np.ndarray) -> bool:
    """Whether ``classes`` is one row of distinct labels in increasing order, as ``np.unique`` gives them."""
    return classes.ndim == 1 and len(classes) >= 1 and bool(np.all(classes[1:] > classes[:-1]))


def _check_cost(data: bytes, weights_path: Path) -> None:
    """Refuse an archive whose entries unpack to more bytes than it holds, or whose schema reads one entry twice.

    The zip's directory gives each entry's size, and reading one stops there, so
    the schema read here costs no more than the file; it is parsed once more than
    skops would, in bounded time.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(entry.file_size for entry in archive.infolist())
            if unpacked > len(data):
                raise ModelFileError(
                    f"{weights_path} unpacks to {unpacked:,} bytes, more than its own {len(data):,}, and the skops "
                    "files mnistlab writes are stored uncompressed; retrain the model."
                )
            schema = json.loads(archive.read("schema.json"))
    # KeyError: no schema.json; RuntimeError: an encrypted entry; NotImplementedError: an unknown compression.
    except (
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        RecursionError,
        EOFError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise ModelFileError(f"{weights_path} is not a readable skops file ({exc}); retrain the model.") from None
    nodes = list(_nodes(schema))
    repeated = [(name, n) for name, n in Counter(name for name, _ in _reads(nodes)).items() if n > 1]
    if repeated:
        name, count = repeated[0]
        raise ModelFileError(
            f"{weights_path} reads its entry {name} {count:,} times, each time another copy in memory, where the "
            "skops files mnistlab writes read each entry once; retrain the model."
        )
    if any(node["__loader__"] == "SparseMatrixNode" for node in nodes):
        # skops trusts a node that calls itself scipy's spmatrix, and unpacks its entry, an archive of its own,
        # without a bound. A real sparse matrix names its class (csr_matrix), which is not on the allow-list, so
        # no model mnistlab saves holds one.
        raise ModelFileError(
            f"{weights_path} holds a sparse matrix, which no model mnistlab saves holds; only load models written "
            "by mnistlab."
        )


def _nodes(schema):
    """Each node of the schema (an object with a ``__loader__``), walked without recursion."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _reads(nodes: list[dict]) -> set[tuple[str, object]]:
    """(entry, reader) for each read of an archive entry by the ``nodes``: skops builds one node per ``__id__``
    (a node of an id it has built is that node again: an array two attributes share is read once), and one for
    each node without an id."""
    reads: set[tuple[str, object]] = set()
    for node in nodes:
        if isinstance(node.get("file"), str):
            saved_id = node.get("__id__")
            shared = saved_id and isinstance(saved_id, (int, float, str))
            reads.add((node["file"], saved_id if shared else object()))
    return reads
