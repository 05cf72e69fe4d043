"""The public Python API against the command line and the web API: one input, one answer, one kind of error."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from mnistlab import NotAnImageError, predict_image, read_number
from mnistlab.testing import make_number_photo, running_server
from mnistlab.trust.predict import to_json
from mnistlab.web import create_app

NOT_IMAGES = {"empty": b"", "text": b"hello, this is text\n", "svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>'}


@pytest.fixture(scope="module")
def shipped_server():
    """The shipped reader, served as `mnistlab serve` serves it with no --model."""
    with running_server(create_app()) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("kind", NOT_IMAGES)
def test_a_non_image_is_the_same_error_in_python_as_on_the_web(kind, shipped_server, tmp_path):
    """The web API answered a non-image (or an empty upload) 415, as ``NotAnImageError`` says, but
    ``predict_image`` and ``read_number`` raised a plain ``ImageError`` (http_status 422) for the same bytes, so
    ``except NotAnImageError`` missed it and a service built on ``exc.http_status`` answered 422."""
    data = NOT_IMAGES[kind]
    path = tmp_path / "notes.png"
    path.write_bytes(data)
    web = shipped_server.post("/api/predict", files={"file": ("notes.png", data, "image/png")})
    assert web.status_code == 415, web.text
    for source in (data, path):
        for read in (predict_image, read_number):
            with pytest.raises(NotAnImageError) as raised:
                read(source)
            assert raised.value.http_status == web.status_code


def test_read_number_on_the_web_takes_top_as_python_and_the_cli_do(shipped_server, mnist_small):
    """``read_number(top=5)`` and ``mnistlab predict --number --top 5`` rank five digits for each digit of a row,
    but /api/read-number ignored ``?top=5`` (and ``?top=11``) and always ranked three."""
    _, X_test, _, _ = mnist_small
    photo = make_number_photo(X_test[:2], np.random.default_rng(0), style="canvas-black-on-white")
    web = shipped_server.post("/api/read-number?top=5", files={"file": ("n.png", photo, "image/png")})
    assert web.status_code == 200, web.text
    assert [len(d["top"]) for d in web.json()["digits"]] == [5, 5]
    here = to_json(read_number(photo, top=5), "n.png")
    assert [d["top"] for d in web.json()["digits"]] == [d["top"] for d in here["digits"]]
    too_many = shipped_server.post("/api/read-number?top=11", files={"file": ("n.png", photo, "image/png")})
    assert too_many.status_code == 422, too_many.text
