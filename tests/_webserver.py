"""A real uvicorn server on 127.0.0.1 for the web tests, with a quickly trained model.

Imported by test_server.py and test_browser.py: ``live_server`` starts one
server per test module, in a thread, on a port the OS picks.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from mnistlab._server import create_app

# Small enough to make the 413 tests cheap, large enough for any photo the tests send.
MAX_UPLOAD_BYTES = 2 * 2**20


@contextmanager
def running(app):
    """Serve ``app`` on 127.0.0.1 in a background thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# Each test module that imports the fixture gets its own copy of it; this keeps one model per session.
_saved_models: dict[Path, Path] = {}


@pytest.fixture(scope="session")
def web_model_dir(mnist_small, tmp_path_factory):
    """knn-deskew on 3000 digits (fits in ~2 s, ~95% accurate), saved as a real model directory.

    Its confidence is calibrated here, once (cached by weights sha256), so that
    each server's start-up only reads files.
    """
    from mnistlab._modelfiles import save_model
    from mnistlab._predict import load_predictor
    from mnistlab._recipes import get_recipe

    root = tmp_path_factory.getbasetemp()
    if root not in _saved_models:
        X_train, X_test, y_train, y_test = mnist_small
        model = get_recipe("knn-deskew").build(seed=0, n_jobs=1).fit(X_train, y_train)
        card = {"recipe": "knn-deskew", "seed": 0, "metrics": {"test_accuracy": float(model.score(X_test, y_test))}}
        _saved_models[root] = save_model(model, root / "web-model", card=card)
        load_predictor(_saved_models[root])
    return _saved_models[root]


@pytest.fixture(scope="module")
def live_server(web_model_dir):
    with running(create_app(web_model_dir, max_upload_bytes=MAX_UPLOAD_BYTES)) as url:
        yield url
