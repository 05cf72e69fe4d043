"""Shared test set-up: real MNIST from ../shared/data/mnist, isolated caches, a real web server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
if "MNISTLAB_DATA" not in os.environ and (_SHARED / "train-images-idx3-ubyte.gz").exists():
    os.environ["MNISTLAB_DATA"] = str(_SHARED)

# Ray starts its workers at nice 15 (its worker_niceness). Beside the suite's other xdist worker, at nice 0, such a
# worker got 2-4% of a core on the 2-core CI machine: a Ray test ran 3-4 minutes instead of seconds, and a cancelled
# task's CPU was still held past a test's 60 s wait. Every runtime the tests start (the fixture below, `ray start`,
# `--cluster local` in a command under test) inherits this, so its workers share the cores fairly.
os.environ.setdefault("RAY_worker_niceness", "0")


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_dirs(tmp_path_factory):
    """Keep caches and saved models of the test run out of the user's home."""
    root = tmp_path_factory.getbasetemp()
    old = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "XDG_DATA_HOME")}
    os.environ["XDG_CACHE_HOME"] = str(root / "xdg-cache")
    os.environ["XDG_DATA_HOME"] = str(root / "xdg-data")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ["MNISTLAB_DATA"])
    assert (path / "train-images-idx3-ubyte.gz").exists(), f"MNIST not found in {path}"
    return path


@pytest.fixture(scope="session")
def mnist_full():
    from mnistlab import load_mnist

    return load_mnist("mnist")


@pytest.fixture(scope="session")
def mnist_small(mnist_full):
    """3000 train / 1000 test digits, stratified from the official split."""
    from sklearn.model_selection import train_test_split

    X, y = mnist_full.data, mnist_full.target
    n = mnist_full.details["n_train"]
    X_tr, _, y_tr, _ = train_test_split(X[:n], y[:n], train_size=3000, stratify=y[:n], random_state=0)
    X_te, _, y_te, _ = train_test_split(X[n:], y[n:], train_size=1000, stratify=y[n:], random_state=0)
    return np.ascontiguousarray(X_tr), np.ascontiguousarray(X_te), y_tr, y_te


@pytest.fixture()
def one_blas_thread():
    """Fit as train_recipe does for classic recipes: one BLAS thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def max_upload_bytes() -> int:
    """The live server's upload limit: small enough to make the 413 tests cheap, large enough for any photo."""
    return 2 * 2**20


@pytest.fixture(scope="session")
def web_model_dir(mnist_small, tmp_path_factory):
    """knn-deskew on 3000 digits (fits in ~2 s, ~95% accurate), saved as a real model directory.

    Its confidence is calibrated here, once (cached by weights sha256), so that
    each server's start-up only reads files.
    """
    from mnistlab.models.files import save_model
    from mnistlab.models.recipes import get_recipe
    from mnistlab.trust.predict import load_predictor

    X_train, X_test, y_train, y_test = mnist_small
    model = get_recipe("knn-deskew").build(seed=0, n_jobs=1).fit(X_train, y_train)
    card = {"recipe": "knn-deskew", "seed": 0, "metrics": {"test_accuracy": float(model.score(X_test, y_test))}}
    model_dir = save_model(model, tmp_path_factory.mktemp("web") / "web-model", card=card)
    load_predictor(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def live_server(web_model_dir, max_upload_bytes):
    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app
    from mnistlab.web.protocol import ConnectionLimits, protocol_for

    app = create_app(web_model_dir, max_upload_bytes=max_upload_bytes)
    with running_server(app, http=protocol_for(ConnectionLimits())) as url:  # as `mnistlab serve` serves it
        yield url


@pytest.fixture(scope="module")
def runtime():
    """A local Ray runtime with two CPUs for the module that asks for it; its address, for other processes
    (a command under test) to join. Started anew ("local"): with no address, ``ray.init`` joins the cluster
    last started on the machine (``ray start``, /tmp/ray/ray_current_cluster), and refuses ``num_cpus`` there."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """One new, empty MLflow SQLite store, made as ``mnistlab.lab.tracking._made_whole`` makes one: MLflow's
    migrations cost 1-5 s a store on a 2-core machine, a copy of the made file 0.03 s."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


def _process_running(pid: int | str) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture()
def process_running():
    """``process_running(pid)``: whether process ``pid`` runs (a zombie its parent has not reaped has ended)."""
    return _process_running


@pytest.fixture()
def made_store(tmp_path, _empty_store):
    """``made_store(path=tmp_path / "mlflow.db")``: a copy of an empty, already-made tracking store at ``path``,
    and its ``sqlite:///`` URI. Only for tests that need a working store, not for those about making one."""

    def make(path: Path | None = None) -> str:
        path = tmp_path / "mlflow.db" if path is None else path
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store, path)
        return f"sqlite:///{path}"

    return make


@pytest.fixture(scope="module")
def reader():
    """The shipped reader (``predict_image(..., model=None)``'s), or the test skipped where it cannot load."""
    from mnistlab import ModelFileError, predict_array

    try:
        predict_array(np.zeros((28, 28), np.uint8))
    except ModelFileError as exc:
        pytest.skip(f"no default reader: {exc}")
