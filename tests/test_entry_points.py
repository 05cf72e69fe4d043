"""The public Python API against the command line and the web API: one input, one answer, one kind of error."""

from __future__ import annotations

import httpx
import pytest

from mnistlab import NotAnImageError, predict_image, read_number
from mnistlab.testing import running_server
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
