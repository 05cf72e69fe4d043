"""The JSON API against a real uvicorn server on 127.0.0.1 (no test client, no mocks)."""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mnistlab.errors import ImageTooLargeError
from mnistlab.reading.admission import MAX_PIXELS
from mnistlab.testing import make_dashes_strip, make_number_photo, make_photo, make_pixel_bomb
from mnistlab.trust.thresholds import NO_INK, SMALL_INK
from mnistlab.web.limits import check_image_header


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def canvas_png(digit: np.ndarray) -> bytes:
    """An MNIST digit as a 280x280 black-on-white canvas export."""
    big = Image.fromarray(255 - digit.reshape(28, 28)).resize((280, 280), Image.BILINEAR)
    return png_bytes(np.asarray(big))


@pytest.fixture(scope="module")
def client(live_server):
    with httpx.Client(base_url=live_server, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def easy_digits(mnist_small):
    """Ten test digits, one per class, the first of each class in the test split."""
    _, X_test, _, y_test = mnist_small
    idx = [int(np.flatnonzero(y_test == d)[0]) for d in range(10)]
    return X_test[idx], y_test[idx]


def test_health_and_model_card(client, web_model_dir):
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["model"] == "knn-deskew"
    card = client.get("/api/model").json()
    assert card["recipe"] == "knn-deskew"
    assert card["seed"] == 0
    # The card as saved (a card from save_model holds only what it was given): no key added, none left out.
    assert card == json.loads((web_model_dir / "model.json").read_text()) and "split" not in card
    schema = client.get("/openapi.json").json()["paths"]["/api/model"]["get"]["responses"]["200"]["content"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in schema["application/json"]["schema"]["anyOf"]} == {
        "TrainedCard",
        "ReaderCard",
        "EstimatorCard",
    }


def test_the_card_of_a_model_trained_on_a_folder_whose_name_is_not_utf8_is_served(web_model_dir, tmp_path):
    """A model compare trained on a folder named b"r\\xfe" records it (data_dir, dataset) in its card, and
    /api/model answered it 500 "this is a bug in mnistlab": UTF-8, which the JSON answer is, cannot encode it."""
    import os

    from mnistlab.models.files import load_model, save_model
    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app

    model, card = load_model(web_model_dir)
    odd = os.fsdecode(b"/data/r\xfe")
    kept = {k: card[k] for k in ("recipe", "seed", "metrics")}
    model_dir = save_model(model, tmp_path / "odd", card={**kept, "dataset": odd[6:], "data_dir": odd})
    with running_server(create_app(model_dir)) as url:
        answer = httpx.get(f"{url}/api/model", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data_dir"] == "/data/r\\xfe" and answer.json()["dataset"] == "r\\xfe"


def test_a_model_folder_whose_name_is_not_utf8_that_fails_to_load_is_a_503_that_names_it(tmp_path):
    """create_app(b"caf\\xe9/no-model"): /api/ready, /api/model and the predictions answered 500 "this is a bug in
    mnistlab" instead of the 503 saying the folder does not exist: the sentence naming it held a byte that UTF-8,
    which the JSON answer is, cannot encode."""
    import os

    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app

    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9/no-model")
    with running_server(create_app(odd)) as url, httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(100):  # the load fails in the background
            answers = [c.get("/api/ready"), c.get("/api/model"), c.post("/api/predict", json={"pixels": [0] * 784})]
            if all("retry-after" not in a.headers for a in answers):
                break
            time.sleep(0.1)
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.json()["detail"].startswith(f"Model directory {tmp_path}/caf\\xe9/no-model does not exist;")


def test_predict_multipart_png_of_real_digits(client, easy_digits):
    X, y = easy_digits
    right = 0
    for digit, label in zip(X, y):
        r = client.post("/api/predict", files={"file": ("digit.png", canvas_png(digit), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"file", "digit", "probability", "top", "confident", "reason", "mnist_image_png"}
        assert body["file"] == "digit.png"
        assert len(body["top"]) == 3 and body["top"][0][0] == body["digit"]
        assert body["mnist_image_png"].startswith("data:image/png;base64,")
        right += body["digit"] == label
    assert right >= 9, f"{right}/10 digits right"


def test_predict_photo_and_top(client, mnist_small):
    _, X_test, _, y_test = mnist_small
    photo = make_photo(X_test[3], np.random.default_rng(0), style="paper")
    r = client.post("/api/predict", params={"top": 10}, files={"file": ("photo.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(d for d, _ in body["top"]) == list(range(10))
    assert body["digit"] == y_test[3]
    assert sum(p for _, p in body["top"]) == pytest.approx(1, abs=1e-3)


def test_predict_json_pixels(client, easy_digits):
    X, y = easy_digits
    right = 0
    for digit, label in zip(X, y):
        r = client.post("/api/predict", json={"pixels": digit.tolist(), "top": 5})
        assert r.status_code == 200, r.text
        assert r.json()["file"] is None and len(r.json()["top"]) == 5
        right += r.json()["digit"] == label
    assert right >= 9, f"{right}/10 digits right"


def test_read_number(client, mnist_small):
    _, X_test, _, y_test = mnist_small
    idx = [int(np.flatnonzero(y_test == d)[1]) for d in (4, 0, 7)]
    photo = make_number_photo(X_test[idx], np.random.default_rng(1), style="canvas-black-on-white")
    r = client.post("/api/read-number", files={"file": ("number.png", photo, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["number"] == "407"
    assert len(body["digits"]) == 3
    assert all(d["mnist_image_png"].startswith("data:image/png") for d in body["digits"])


def test_answers_carry_exactly_the_published_keys(client, easy_digits, mnist_small):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    digit = client.post("/api/predict", json={"pixels": easy_digits[0][0].tolist()}).json()
    assert list(digit) == list(schemas["DigitOut"]["properties"])  # file first, as in predict --json
    _, X_test, _, _ = mnist_small
    photo = make_number_photo(X_test[:2], np.random.default_rng(2), style="canvas-black-on-white")
    number = client.post("/api/read-number", files={"file": ("n.png", photo, "image/png")}).json()
    assert list(number) == list(schemas["NumberOut"]["properties"])
    assert all(list(d) == list(schemas["DigitSeen"]["properties"]) for d in number["digits"])
    assert list(client.get("/api/health").json()) == list(schemas["Health"]["properties"])


def test_a_client_can_go_on_after_a_413(client, max_upload_bytes):
    assert client.post("/api/predict", content=b"\0" * (max_upload_bytes + 1)).status_code == 413
    assert client.get("/api/health").status_code == 200


def test_blank_page_is_not_confident(client):
    r = client.post(
        "/api/predict", files={"file": ("blank.png", png_bytes(np.full((200, 200), 255, np.uint8)), "image/png")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["confident"] is False
    assert r.json()["reason"] == NO_INK
    blank = client.post("/api/predict", json={"pixels": [0] * 784})
    assert blank.status_code == 200 and blank.json()["reason"] == NO_INK  # no advice to crop what is not there


def test_a_digit_too_small_in_the_photo_is_said_with_what_to_do(client):
    """Ink 16 px tall in a 400 x 300 photo (4% of its longer side: no digit, under the 6% a digit spans) and a
    blank page were both "no digit-sized ink found; crop a small digit out of a big photo"; now only the first."""
    photo = np.full((300, 400), 240, np.uint8)
    photo[140:156, 200:210] = 40  # ink, but not digit-sized
    r = client.post("/api/predict", files={"file": ("far.png", png_bytes(photo), "image/png")})
    assert r.status_code == 200 and r.json()["reason"] == SMALL_INK, r.text


def test_oversize_upload_declared_length_is_413(client, max_upload_bytes):
    r = client.post("/api/predict", files={"file": ("big.png", b"\0" * (max_upload_bytes + 1), "image/png")})
    assert r.status_code == 413
    assert "MiB" in r.json()["detail"]


def test_oversize_upload_without_length_is_413(client, max_upload_bytes):
    def chunks():  # no Content-Length: the server must count the bytes itself
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        for _ in range(max_upload_bytes // 2**16 + 2):
            yield b"\0" * 2**16

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


@pytest.mark.parametrize("payload", [b"hello, this is text\n", b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_non_images_are_refused_with_a_message(client, payload):
    r = client.post("/api/predict", files={"file": ("notes.txt", payload, "text/plain")})
    assert r.status_code in (415, 422)
    assert r.json()["detail"].endswith(".")


@pytest.mark.parametrize(
    "width, height, words",
    [(100_000, 100_000, "pixels"), (1, 49_990_000, "strip"), (5_000, 5_000, "JPEG")],
)
def test_huge_declared_image_is_refused_before_decoding(client, width, height, words):
    r = client.post("/api/predict", files={"file": ("bomb.png", make_pixel_bomb(width, height), "image/png")})
    assert r.status_code == 413
    assert words in r.json()["detail"]


def _scan_bomb(repeats: int) -> bytes:
    """A progressive JPEG whose last scan is repeated: each repeat a decode pass over every pixel."""
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, "JPEG", quality=50, progressive=True)
    data = buf.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    return data[:-2] + data[last_scan:-2] * repeats + data[-2:]


def test_a_jpeg_of_repeated_scans_is_refused_before_decoding(client):
    r = client.post("/api/predict", files={"file": ("scans.jpg", _scan_bomb(300), "image/jpeg")})
    assert r.status_code == 413 and "is a JPEG of 3" in r.json()["detail"] and "scans" in r.json()["detail"]
    ordinary = client.post("/api/predict", files={"file": ("fine.jpg", _scan_bomb(0), "image/jpeg")})
    assert ordinary.status_code == 200  # a progressive JPEG as encoders write it


def test_the_upload_check_counts_a_headers_blocks_and_an_mpos_scans_before_opening_it():
    """The server's header check opened a PNG of 100,000 empty chunks (Pillow reads them one by one, in Python,
    1 s of a worker), and passed an MPO (a JPEG holding more pictures) of 200 repeated scans unchecked; each is
    now refused there, from what it declares."""

    def chunk(kind: bytes, data: bytes = b"") -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0))
    chunks = header + chunk(b"abCd") * 100_000 + chunk(b"IDAT", zlib.compress(b"\0" * 110)) + chunk(b"IEND")
    with pytest.raises(ImageTooLargeError, match="is a PNG of more than 65,536 chunks"):
        check_image_header(chunks, MAX_PIXELS)
    more = io.BytesIO()
    Image.new("L", (1000, 1000)).save(
        more, "MPO", progressive=True, save_all=True, append_images=[Image.new("L", (6, 4))]
    )
    data = more.getvalue()
    first = data[: data.index(b"\xff\xd8", 2)]  # the first picture, up to the second's start-of-image
    last_scan = first.rindex(b"\xff\xda")
    with pytest.raises(ImageTooLargeError, match="is a JPEG of 2[0-9][0-9] scans"):
        check_image_header(first[:-2] + first[last_scan:-2] * 200 + data[len(first) - 2 :], MAX_PIXELS)
    check_image_header(data, MAX_PIXELS)  # an MPO as a camera writes it


def test_an_upload_of_a_format_read_that_cannot_be_decoded_is_said_to_be_one(client):
    """A float RGB TIFF (as OpenCV writes one), or a PNG cut after its signature, was "not a PNG, JPEG, BMP, TIFF,
    WebP or GIF image" on the web, where ``predict_image`` said which it was and what to do."""
    tiff = cv2.imencode(".tiff", np.zeros((28, 28, 3), np.float32))[1].tobytes()
    for name, data, kind in (("f.tif", tiff, "TIFF"), ("cut.png", b"\x89PNG\r\n\x1a\n", "PNG")):
        r = client.post("/api/predict", files={"file": (name, data, "image/x")})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith(f"The upload is a {kind} file that cannot be decoded (cut short,")


def test_formats_beyond_the_documented_ones_are_not_opened(client):
    """Pillow would open EPS (through Ghostscript, where installed), PPM, TGA, ICO...: 415 before any plugin runs."""
    for fmt in ("EPS", "PPM", "TGA", "ICO"):
        buf = io.BytesIO()
        Image.new("L", (64, 64), 255).save(buf, fmt)
        r = client.post("/api/predict", files={"file": (f"x.{fmt.lower()}", buf.getvalue(), "image/x")})
        assert r.status_code == 415 and "PNG, JPEG, BMP, TIFF, WebP or GIF" in r.json()["detail"], fmt


def test_media_types_are_read_without_regard_to_case(client, easy_digits):
    X, y = easy_digits
    body = json.dumps({"pixels": X[3].tolist()})
    r = client.post("/api/predict", content=body, headers={"content-type": "Application/JSON; charset=utf-8"})
    assert r.status_code == 200 and r.json()["digit"] == y[3]
    odd = client.post("/api/predict", content=body, headers={"content-type": "application/jsonfoo"})
    assert odd.status_code == 415 and 'JSON {"pixels"' in odd.json()["detail"]


def test_a_long_unknown_path_is_not_echoed_whole(client):
    r = client.get("/nothing/" + "x" * 5000)
    assert r.status_code == 404 and len(r.json()["detail"]) < 400


def test_a_long_unknown_method_is_not_echoed_whole(client):
    """A path is cut at 200 characters in a 404's sentence; a method was echoed whole in a 405's (15 KB of it)."""
    r = client.request("X" * 15_000, "/api/predict")
    assert r.status_code == 405 and len(r.json()["detail"]) < 400, len(r.json()["detail"])
    assert r.json()["detail"].endswith("is not allowed on /api/predict; use POST.")


def test_no_redirect_takes_its_host_from_the_request_and_allow_names_head(client):
    r = client.get("/api/health/", headers={"host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers and "/api" in r.json()["detail"]
    refused = client.post("/api/health")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["detail"].endswith("use GET, HEAD.")


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b'{"pixels": [1, 2, 3', "application/json"),
        (b'{"pixels": [1, 2, 3]}', "application/json"),
        (b'{"pixels": [' + b"300, " * 783 + b"0]}", "application/json"),
        (b'{"pictures": []}', "application/json"),
        (b'{"pixels": [NaN' + b", 0" * 783 + b"]}", "application/json"),
        (b"[]", "application/json"),
        (b"pixels=1", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_requests_are_4xx_with_one_sentence(client, body, content_type):
    r = client.post("/api/predict", content=body, headers={"content-type": content_type})
    assert 400 <= r.status_code < 500
    assert isinstance(r.json()["detail"], str)


def odd_images(digit: np.ndarray) -> dict[str, bytes]:
    """Valid but unusual images, and broken ones: none may crash the server."""
    png = canvas_png(digit)
    out = {"truncated png": png[: len(png) // 2], "png with zeroed data": png[:60] + b"\0" * (len(png) - 60)}
    for name, mode, fmt in (
        ("1x1 gif", "P", "GIF"),
        ("rgba webp", "RGBA", "WEBP"),
        ("16-bit png", "I;16", "PNG"),
        ("cmyk jpeg", "CMYK", "JPEG"),
        ("1-bit bmp", "1", "BMP"),
        ("float tiff", "F", "TIFF"),
    ):
        size = (1, 1) if name.startswith("1x1") else (64, 48)
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, format=fmt)
        out[name] = buf.getvalue()
    jpeg = io.BytesIO()
    Image.fromarray(255 - digit.reshape(28, 28)).resize((200, 200)).save(jpeg, format="JPEG")
    out["truncated jpeg"] = jpeg.getvalue()[:-300]
    return out


def test_odd_and_broken_images_never_give_a_500(client, easy_digits):
    for name, data in odd_images(easy_digits[0][3]).items():
        for route in ("/api/predict", "/api/read-number"):
            r = client.post(route, files={"file": ("x", data, "application/octet-stream")})
            assert r.status_code in (200, 415, 422), (name, route, r.status_code, r.text)
            if r.status_code != 200:
                assert r.json()["detail"].endswith("."), (name, r.text)


def test_a_wide_photo_of_fine_stripes_is_read_not_a_500(client):
    """A 5200 x 260 PNG of 1-px lines 4 px apart (2 KB) is, at the work size, one grey with its paper level far below
    zero: ``binarise`` took Otsu's threshold of no values and raised ValueError, so /api/read-number answered 500
    and dropped the connection. It is read as a row like any other now (no ink: no digits)."""
    stripes = np.full((260, 5200), 255, np.uint8)
    stripes[:, ::4] = 0
    for route in ("/api/read-number", "/api/predict"):
        r = client.post(route, files={"file": ("stripes.png", png_bytes(stripes), "image/png")})
        assert r.status_code == 200, (route, r.text)
        assert r.json()["confident"] is False


def test_a_row_of_more_marks_than_a_number_makes_is_a_422_in_one_sentence(client):
    """A 679-byte strip of dashes cost /api/read-number 19 s of CPU (525 marks, each read, many re-read); it is
    refused before any mark is read."""
    r = client.post("/api/read-number", files={"file": ("dashes.png", make_dashes_strip(), "image/png")})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("The image holds ") and "separate marks in one row" in r.json()["detail"]


def test_a_compressed_body_is_refused_as_such(client, easy_digits):
    """A gzipped body (Content-Encoding: gzip) was read as it came: valid JSON was told "not valid JSON" (422) and
    a multipart form "Invalid multipart data" (400). The server reads no content coding; it says so (415)."""
    pixels = json.dumps({"pixels": easy_digits[0][0].tolist()}).encode()
    form = httpx.Request("POST", "/", files={"file": ("d.png", canvas_png(easy_digits[0][0]), "image/png")})
    for route, body, content_type in (
        ("/api/predict", pixels, "application/json"),
        ("/api/predict", form.read(), form.headers["content-type"]),
        ("/api/read-number", form.read(), form.headers["content-type"]),
    ):
        for coding in ("gzip", "br", "deflate, gzip"):
            headers = {"content-type": content_type, "content-encoding": coding}
            r = client.post(route, content=zlib.compress(body), headers=headers)
            assert r.status_code == 415, (route, coding, r.text)
            assert f"Content-Encoding: {coding}" in r.json()["detail"] and "uncompressed" in r.json()["detail"]
        r = client.post(route, content=body, headers={"content-type": content_type, "content-encoding": "Identity"})
        assert r.status_code == 200, r.text


def test_json_with_a_byte_order_mark_or_in_utf_16_is_told_to_be_sent_as_utf_8(client, easy_digits):
    """Valid JSON behind a byte-order mark (as Windows tools write it), or in UTF-16, was told "The request body
    is not valid JSON": the sender sees valid JSON and no reason. Now the sentence says what is wrong with it."""
    text = json.dumps({"pixels": easy_digits[0][0].tolist()})
    for body, said in (
        (b"\xef\xbb\xbf" + text.encode(), "byte-order mark"),
        (text.encode("utf-16"), "UTF-16"),
        (text.encode("utf-16-le"), "UTF-16"),
        (text.encode("utf-16-be"), "UTF-16"),
    ):
        r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert said in detail and "send the JSON as UTF-8" in detail and detail.endswith("."), detail
    r = client.post("/api/predict", content=b"{[}", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("The request body is not valid JSON")


# EXIF that is not EXIF; cut short after its first 4 bytes; and EXIF that reads (turn it upside down) but holds an
# XResolution of type UNDEFINED, which Pillow cannot write back when it takes the orientation out.
CORRUPT_EXIF = {
    "not EXIF": b"\x1dZ\xa4\xa9\t=\xcd\x95" * 4,
    "cut short": b"MM\x00*",
    "a tag of the wrong type": b"II*\x00\x08\x00\x00\x00\x02\x00"
    + b"\x12\x01\x03\x00\x01\x00\x00\x00\x03\x00\x00\x00"  # Orientation, SHORT: 3
    + b"\x1a\x01\x07\x00\x01\x00\x00\x00A\x00\x00\x00"  # XResolution, UNDEFINED: "A"
    + b"\x00\x00\x00\x00",
}


@pytest.mark.parametrize("exif", CORRUPT_EXIF.values(), ids=CORRUPT_EXIF.keys())
def test_a_png_whose_exif_is_corrupt_is_refused_for_that(client, easy_digits, exif):
    """A whole PNG whose pixels read well but whose eXIf chunk (its EXIF metadata) is not EXIF was refused with
    "the image data is truncated or corrupt (not a TIFF file (header b'...' not valid)); send the complete file
    again", which sending it again does not mend; one whose EXIF stops after 4 bytes got a 500 (struct.error) and
    its connection dropped. Both are refused now with a sentence that says what is wrong, and what to do."""
    png = canvas_png(easy_digits[0][0])
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    with_exif = png[:33] + chunk + png[33:]  # right after the header chunk
    for route in ("/api/predict", "/api/read-number"):
        r = client.post(route, files={"file": ("d.png", with_exif, "image/png")})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "EXIF" in detail and "without its metadata" in detail, detail
        assert "truncated" not in detail and "complete file" not in detail and "\\x" not in detail, detail


def test_a_tiff_whose_xmp_tag_holds_numbers_is_refused_not_a_500(client, easy_digits):
    """A TIFF whose XMP tag (700) holds a number instead of text made Pillow raise TypeError as it read the tags
    after the pixels (its EXIF and XMP, for the orientation): /api/predict answered 500 and dropped the connection.
    It is refused now, with what to do."""
    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[700] = (1000,)
    tags.tagtype[700] = 3  # SHORT, not BYTE
    tiff = io.BytesIO()
    Image.fromarray(255 - easy_digits[0][0].reshape(28, 28)).save(tiff, format="TIFF", tiffinfo=tags)
    for route in ("/api/predict", "/api/read-number"):
        r = client.post(route, files={"file": ("d.tif", tiff.getvalue(), "image/tiff")})
        assert r.status_code == 422, (route, r.text)
        assert "metadata" in r.json()["detail"] and "save the image again" in r.json()["detail"], r.text


def test_wrong_pixel_count_says_what_it_needs(client):
    r = client.post("/api/predict", json={"pixels": [0] * 100})
    assert r.status_code == 422
    assert "784" in r.json()["detail"] and "100" in r.json()["detail"]


def test_bad_top_and_missing_file(client):
    assert client.post("/api/predict?top=11", json={"pixels": [0] * 784}).status_code == 422
    r = client.post("/api/predict", files={"other": ("a.png", b"x", "image/png")})
    assert r.status_code == 422 and "file" in r.json()["detail"]


@pytest.mark.parametrize("route", ["/api/predict", "/api/read-number"])
def test_a_form_cut_short_is_a_broken_form_not_a_missing_file(client, easy_digits, route):
    """A form without its closing delimiter (a hand-built upload's usual slip, or a body cut short) was told "The
    form has no file in the field 'file'; attach the image as file=@photo.png", a 422, by a server whose client had
    attached it: the parser ends such a body quietly, the part it was reading left out. It is the 400 of a broken
    form, saying what is missing."""
    part = b'Content-Disposition: form-data; name="file"; filename="d.png"\r\nContent-Type: image/png\r\n\r\n'
    part += canvas_png(easy_digits[0][1])
    said = "The multipart form could not be read (it holds no complete part: none, or one cut short before its "
    for body in (b"--xyz\r\n" + part, b"--xyz\r\n" + part + b"\r\n--xyz", b"", b"--xyz--\r\n"):
        r = client.post(route, content=body, headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert r.status_code == 400, (body[-20:], r.text)
        assert r.json()["detail"].startswith(said), r.json()
    whole = b"--xyz\r\n" + part + b"\r\n--xyz--\r\n"
    r = client.post(route, content=whole, headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 200, r.text


def test_concurrent_requests(live_server, mnist_small):
    _, X_test, _, y_test = mnist_small
    photos = [canvas_png(X_test[i]) for i in range(16)]

    def one(png):
        r = httpx.post(f"{live_server}/api/predict", files={"file": ("d.png", png, "image/png")}, timeout=60)
        return r.status_code, r.json()["digit"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, photos))
    assert all(code == 200 for code, _ in results)
    assert sum(d == label for (_, d), label in zip(results, y_test[:16])) >= 14


def test_uploads_read_together_get_their_answers_alone_and_a_broken_one_fails_alone(
    web_model_dir, max_upload_bytes, mnist_small
):
    """One reading thread (``max_decodes=1``) hands each image to the micro-batcher: twelve uploads at once get
    the answers ``predict_image`` gives each alone, and the broken ones their own 4xx."""
    from mnistlab.testing import running_server
    from mnistlab.trust.predict import load_predictor, predict_image, to_json
    from mnistlab.web.app import create_app

    _, X_test, _, _ = mnist_small
    good = [canvas_png(X_test[i]) for i in range(8)]
    broken = [good[0][:60], b"not an image at all", good[1][: len(good[1]) // 2], b"\x89PNG\r\n"]
    uploads = [("good", png) for png in good] + [("broken", data) for data in broken]
    app = create_app(web_model_dir, max_upload_bytes=max_upload_bytes, max_decodes=1)

    def post(url, data):
        return httpx.post(f"{url}/api/predict", files={"file": ("d.png", data, "image/png")}, timeout=60)

    before = set(threading.enumerate())  # other servers of this process have reading threads of their own
    with running_server(app) as url, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda upload: post(url, upload[1]), uploads))
        readers = [t for t in threading.enumerate() if t.name.startswith("reader") and t not in before]
    assert len(readers) == 1
    model = load_predictor(web_model_dir)
    for (kind, data), r in zip(uploads, answers):
        if kind == "broken":
            assert 400 <= r.status_code < 500 and r.json()["detail"].endswith("."), r.text
            continue
        assert r.status_code == 200, r.text
        alone = to_json(predict_image(data, model), "d.png")
        got = r.json()
        assert (got["digit"], got["confident"], got["reason"]) == (alone["digit"], alone["confident"], alone["reason"])
        assert [d for d, _ in got["top"]] == [d for d, _ in alone["top"]]
        assert np.allclose([p for _, p in got["top"]], [p for _, p in alone["top"]], atol=1e-6)


def test_an_app_started_and_stopped_again_leaves_no_thread_behind(web_model_dir, mnist_small):
    """Each start of the app made a micro-batcher whose thread, holding the model, outlived the app: three
    starts and stops in one process left three "micro-batcher" threads for good. The app's threads now end
    with it."""
    from mnistlab.testing import make_photo, running_server
    from mnistlab.trust.predict import load_predictor
    from mnistlab.web.app import create_app

    _, X_test, _, _ = mnist_small
    model = load_predictor(web_model_dir)
    photo = make_photo(X_test[0], np.random.default_rng(0))  # read by a reading thread, maybe looked at again
    before = set(threading.enumerate())
    for _ in range(3):
        with running_server(create_app(model)) as url:
            r = httpx.post(f"{url}/api/predict", files={"file": ("d.jpg", photo, "image/jpeg")}, timeout=30)
            assert r.status_code == 200, r.text
    deadline = time.monotonic() + 3
    while (left := sorted(t.name for t in threading.enumerate() if t not in before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def test_a_model_loaded_after_its_app_stopped_leaves_no_thread_behind(web_model_dir):
    """An app stopped while its model still loaded (a model calibrated as it loads takes seconds): the load
    finished after the app had gone and left a "micro-batcher" thread, holding the model, for good. Loading and
    checking the model starts no thread; the first request does."""
    from mnistlab.trust.predict import load_predictor
    from mnistlab.web.app import ready_predictor

    model = load_predictor(web_model_dir)
    before = set(threading.enumerate())
    ready = ready_predictor(model)  # what the app's loading thread does, the app gone by the time it is done
    assert ready.describe(np.zeros((1, 28, 28), np.uint8), 3)[0]["reason"]  # it answers, once asked
    ready.batcher.close()
    del ready
    ready_predictor(model)
    deadline = time.monotonic() + 3
    while (left := sorted(t.name for t in threading.enumerate() if t not in before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def test_page_static_and_docs_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
        assert f'"{asset[1:]}"' in page.text  # relative to the page: it works below a path prefix too
    assert "http" not in page.text.split("<body>")[0]  # nothing loaded from elsewhere
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/predict", "/api/read-number", "/api/health", "/api/model"} <= set(paths)


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/docs", "/static-offline-docs/swagger-ui.css"])
@pytest.mark.parametrize("asked", ["bytes=99999999-", "bytes=z-", "bytes=0-0,2-2,4-4"])
def test_a_range_is_ignored_and_the_file_sent_whole(client, path, asked):
    # Starlette's files answered a range past the end 416 with an empty text/plain body, and a malformed one 400
    # "Range header: range must be requested": not the one sentence of JSON every refusal is.
    whole = client.get(path)
    got = client.get(path, headers={"range": asked})
    assert got.status_code == 200 and got.content == whole.content
    assert "accept-ranges" not in got.headers and "accept-ranges" not in whole.headers


def test_the_page_is_told_how_long_a_request_waits_for_the_model(client):
    # The page gave up on a request after 30 s while the server held one 60 s for a model still loading: the
    # server's one setting, routes.LOAD_WAIT, is now written into the page, which waits that long and more.
    from mnistlab.web.routes import LOAD_WAIT

    assert f'<meta name="mnistlab-load-wait" content="{LOAD_WAIT:g}">' in client.get("/").text
    assert "$LOAD_WAIT" not in client.get("/").text


def test_the_pages_are_served_only_where_they_work(client):
    """The page's template was also served as it is, at /static/index.html, with content="$LOAD_WAIT" unfilled,
    and the docs page at /static/docs.html; from there both pages' relative URLs (their scripts, styles) all 404.
    The pages now live outside static/: / and /docs serve them, no other URL does."""
    from mnistlab.web.routes import STATIC_DIR

    for path in ("/static/index.html", "/static/docs.html"):
        assert client.get(path).status_code == 404, path
    for file in STATIC_DIR.iterdir():  # whatever static/ holds is served as it is: nothing in it is a template
        served = client.get(f"/static/{file.name}")
        assert served.status_code == 200 and "$LOAD_WAIT" not in served.text, file.name
    assert 'content="$' not in client.get("/").text and "swagger-ui" in client.get("/docs").text


@pytest.mark.parametrize(
    "path", ["/", "/static/app.js", "/static/style.css", "/docs", "/static-offline-docs/swagger-ui.css"]
)
def test_the_page_and_its_files_are_revalidated_on_each_visit(client, path):
    # Without Cache-Control a browser kept them fresh for a tenth of their age, and ran an upgrade's page with the
    # old script. Revalidating a file costs a 304 (the pages themselves are 3 KiB, sent whole).
    first = client.get(path)
    assert first.headers["cache-control"] == "no-cache"
    if path.startswith("/static"):
        again = client.get(path, headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"


def _documented_refusals(schema: dict, path: str, method: str) -> set[int]:
    """The statuses ``path`` documents as ``{"detail": one sentence}`` (the Problem schema)."""
    problem = {"$ref": "#/components/schemas/Problem"}
    responses = schema["paths"][path][method]["responses"]
    return {int(code) for code, r in responses.items() if r["content"]["application/json"]["schema"] == problem}


def test_the_docs_name_the_refusals_each_route_gives(client, tmp_path):
    """/api/predict and /api/read-number answered a broken form 400 and /api/model 503 while the model was not
    loaded, none of them documented; /api/ready documented 408, 413, 415 and 422, which a GET without a body
    never gets."""
    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app

    schema = client.get("/openapi.json").json()
    broken_form = {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}
    for route in ("/api/predict", "/api/read-number"):
        refused = client.post(route, **broken_form)
        assert refused.status_code == 400 and list(refused.json()) == ["detail"]
        assert _documented_refusals(schema, route, "post") == {400, 408, 413, 415, 422, 503}
    with running_server(create_app(tmp_path / "no-model")) as url:  # a model that fails to load
        for route in ("/api/model", "/api/ready"):
            refused = httpx.get(url + route, timeout=30)
            assert refused.status_code == 503 and list(refused.json()) == ["detail"]
            assert _documented_refusals(schema, route, "get") == {503}
            assert "Retry-After" in schema["paths"][route]["get"]["responses"]["503"]["headers"]


def test_an_app_mounted_without_its_lifespan_says_so(web_model_dir):
    """Mounted in another app, whose lifespan does not run the mounted app's, the model was never loaded and
    every route answered 500, "a bug in mnistlab". Health now says the process is up, and the others 503 at once
    with what to do."""
    from fastapi import FastAPI

    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app

    parent = FastAPI()
    parent.mount("/mnist", create_app(web_model_dir))
    with running_server(parent) as url, httpx.Client(base_url=f"{url}/mnist", timeout=30) as client:
        health = client.get("/api/health")
        assert health.status_code == 200 and health.json()["model"] is None
        started = time.monotonic()
        for refused in (client.get("/api/ready"), client.get("/api/model"), client.post("/api/predict", json={})):
            assert refused.status_code == 503, refused.text
            assert "lifespan" in refused.json()["detail"] and "README" in refused.json()["detail"]
            assert "retry-after" not in refused.headers  # asking again gets the same answer: no lifespan runs
        assert time.monotonic() - started < 10  # not the wait for a model that is loading


def test_a_404_below_a_mount_point_names_the_paths_there(web_model_dir):
    """Mounted at /mnist (as the README shows), an unknown path was told "the page is at /, the API under /api (see
    /docs)": the parent's paths, where nothing of mnistlab is. The sentence names /mnist/, /mnist/api and /mnist/docs."""
    from fastapi import FastAPI

    from mnistlab.testing import running_server
    from mnistlab.web.app import create_app

    parent = FastAPI()
    parent.mount("/mnist", create_app(web_model_dir))
    with running_server(parent) as url:
        assert httpx.get(url + "/mnist/docs", timeout=30).status_code == 200  # where the sentence sends its reader
        for path in ("/mnist/nope", "/mnist/api/nope", "/mnist/static/nope.js", "/mnist/static-offline-docs/nope"):
            refused = httpx.get(url + path, timeout=30)
            assert refused.status_code == 404, refused.text
            assert refused.json()["detail"] == (
                f"There is nothing at {path}; the page is at /mnist/, the API under /mnist/api (see /mnist/docs)."
            ), path


def test_a_404_names_the_pages_paths_wherever_it_is_refused(client):
    """A file missing under /static/ is refused by a mount of its own: its 404 must not name /static/ as the page."""
    for path in ("/nope", "/static/nope.js", "/static-offline-docs/nope"):
        refused = client.get(path)
        assert refused.status_code == 404, refused.text
        assert refused.json()["detail"] == (
            f"There is nothing at {path}; the page is at /, the API under /api (see /docs)."
        ), path


def test_cli_serve_without_a_model_says_so(tmp_path):
    from typer.testing import CliRunner

    from mnistlab.cli import app

    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2
    assert "Error:" in result.output and "no-such-model" in result.output


def test_cli_serve_runs_on_localhost(web_model_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mnistlab.cli", "serve", "--model", str(web_model_dir), "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mnistlab serve did not answer within 120 s"
                time.sleep(0.2)
        assert health.json()["model"] == "knn-deskew"
    finally:
        server.terminate()
        server.wait(30)
    assert "127.0.0.1" in server.stderr.read()  # uvicorn's "running on" line: localhost only by default


SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
GET_ROUTES = ["/", "/api/health", "/api/model", "/static/app.js", "/static/style.css", "/docs", "/openapi.json"]


@pytest.mark.parametrize("path", GET_ROUTES + ["/static-offline-docs/swagger-ui.css"])
def test_head_is_answered_wherever_get_is(client, path):
    got, headed = client.get(path), client.head(path)
    assert got.status_code == headed.status_code == 200
    assert headed.content == b""
    assert headed.headers["content-type"] == got.headers["content-type"]
    assert int(headed.headers["content-length"]) == len(got.content)


def kinds_of_response(client, max_upload_bytes):
    """One response of each kind the server gives, by name."""
    return {
        "page": client.get("/"),
        "page HEAD": client.head("/"),
        "api": client.get("/api/health"),
        "static": client.get("/static/app.js"),
        "docs": client.get("/docs"),
        "docs files": client.get("/static-offline-docs/swagger-ui-bundle.js"),
        "openapi": client.get("/openapi.json"),
        "prediction": client.post("/api/predict", json={"pixels": [0] * 784}),
        "404": client.get("/no/such/page"),
        "404 static": client.get("/static/no-such-file.js"),
        "405": client.delete("/api/predict"),
        "413": client.post("/api/predict", content=b"\0" * (max_upload_bytes + 1)),
        "413 json": client.post("/api/predict", content=b" " * 2**17, headers={"content-type": "application/json"}),
        "415": client.post("/api/predict", files={"file": ("a.txt", b"plain text", "text/plain")}),
        "422": client.post("/api/predict", json={"pixels": "no"}),
        "400 form": client.post(
            "/api/predict", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}
        ),
    }


def test_every_kind_of_response_carries_the_security_headers(client, max_upload_bytes):
    for kind, r in kinds_of_response(client, max_upload_bytes).items():
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value, (kind, name, r.headers)
        policy = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "unsafe" not in policy, (kind, policy)
        assert len(r.headers.get_list("content-security-policy")) == 1, kind
        if kind in ("page", "page HEAD", "docs"):
            assert "script-src 'self'" in policy, (kind, policy)
        else:  # JSON, errors and files may load nothing at all
            assert policy.startswith("default-src 'none'"), (kind, policy)


def test_every_4xx_is_json_with_one_sentence(client, max_upload_bytes):
    refusals = {k: r for k, r in kinds_of_response(client, max_upload_bytes).items() if r.status_code >= 400}
    assert {r.status_code for r in refusals.values()} == {400, 404, 405, 413, 415, 422}
    for kind, r in refusals.items():
        assert r.headers["content-type"] == "application/json", (kind, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and detail.endswith(".") and "\n" not in detail, (kind, detail)
    assert "/no/such/page" in refusals["404"].json()["detail"]
    assert (
        refusals["400 form"]
        .json()["detail"]
        .endswith("send one image in the field 'file', as curl -F file=@photo.png does.")
    )
    assert refusals["405"].headers["allow"] == "POST" and "POST" in refusals["405"].json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"pixels": ["12"] + [0] * 783}, "pixels.0"),
        ({"pixels": [0] * 783 + [True]}, "pixels.783"),
        ({"pixels": [False] * 784}, "pixels.0"),
        ({"pixels": [None] * 784}, "pixels.0"),
        ({"pixels": [[0]] * 784}, "pixels.0"),
        ({"pixels": [0] * 784, "top": True}, "top"),
        ({"pixels": [0] * 784, "top": "3"}, "top"),
        ({"pixels": [0] * 784, "top": 3.0}, "top"),
        ({"pixels": [0] * 784, "extra": 1}, "extra"),
        ({"pixels": "0" * 784}, "pixels"),
    ],
)
def test_json_types_are_strict(client, body, field):
    r = client.post("/api/predict", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"Invalid request: {field}:"), r.json()


def test_pixels_as_28_rows_are_told_to_be_one_flat_list(client, easy_digits):
    """``{"pixels": image.tolist()}`` of a 28 x 28 array, the natural first try, was told "Invalid request: pixels.0:
    Input should be a valid number (got [0, 0, 0, ...])": what was wrong, not what to send. The sentence says it."""
    rows = easy_digits[0][0].reshape(28, 28).tolist()
    for pixels in (rows, [rows]):
        r = client.post("/api/predict", json={"pixels": pixels})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("Invalid request: pixels.0:") and detail.endswith("."), detail
        assert "one flat list of 784 numbers" in detail, detail
    r = client.post("/api/predict", json={"pixels": [0] * 783 + ["x"]})  # a value that is no list: as before
    assert "flat list" not in r.json()["detail"]


def test_json_numbers_may_be_integers_or_floats(client, easy_digits):
    digit = easy_digits[0][2].astype(float).tolist()
    digit[0] = 0  # an int among floats
    r = client.post("/api/predict", json={"pixels": digit, "top": 2})
    assert r.status_code == 200, r.text
    assert r.json()["digit"] == easy_digits[1][2] and len(r.json()["top"]) == 2


def test_a_json_key_named_twice_is_refused_not_read_as_its_last_value(client, easy_digits):
    """``{"pixels": A, "pixels": B}`` was answered for B and ``{"top": 2, "top": 5}`` with five digits, without a
    word: which value counts is the parser's choice (RFC 8259), and the client's intent unknown. A 422 names the key;
    keys written with escapes count as the keys they spell, and a body naming each key once is read as before."""
    digits = [",".join(map(str, easy_digits[0][i].tolist())) for i in (1, 7)]
    one, seven = (f'"pixels": [{d}]' for d in digits)
    for body, named in (
        (f"{{{one}, {seven}}}", '"pixels"'),
        (f'{{{one}, "top": 2, "top": 5}}', '"top"'),
        (f'{{{one}, "\u0070ixels": [{digits[1]}]}}', '"pixels"'),
        (f'{{"top": 2, {one}, "top": null, {seven}}}', '"pixels" and "top"'),
    ):
        r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == f"The JSON body names {named} more than once; send each key once.", body
    for body in (f'{{{one}, "top": 2}}', f'{{"\u0074op": null, {one}}}', f"{{ {one} }}"):
        r = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["digit"] == 1, (body, r.text)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=30,
)
NEAR_VALID = st.fixed_dictionaries(
    {"pixels": st.lists(st.integers(0, 255) | JSON_SCALARS, min_size=783, max_size=785)},
    optional={"top": JSON_VALUES},
)
BODIES = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    NEAR_VALID.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=4000),
    st.binary(max_size=2000).map(lambda b: b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + b),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=latin-1",
        "multipart/form-data; boundary=x",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, content_type=CONTENT_TYPES, route=st.sampled_from(["/api/predict", "/api/read-number"]))
def test_random_bodies_get_an_answer_or_a_clean_4xx(client, body, content_type, route):
    r = client.post(route, content=body, headers={"content-type": content_type} if content_type else {})
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code == 200:
        assert "digit" in r.json() or "number" in r.json()
    else:
        assert 400 <= r.status_code < 500
        assert r.headers["content-type"] == "application/json"
        assert isinstance(r.json()["detail"], str) and r.json()["detail"].endswith(".")


def test_a_batched_predictor_given_to_the_app_keeps_its_settings_and_leaves_no_thread(web_model_dir, mnist_small):
    """``create_app(batched(predictor, max_wait=...))``: the app wrapped it in a batcher of its own with the default
    settings, and the check of the model started the given batcher's thread, which outlived the app."""
    from mnistlab.testing import running_server
    from mnistlab.trust.batching import batched
    from mnistlab.trust.predict import load_predictor
    from mnistlab.web.app import create_app

    _, X_test, _, _ = mnist_small
    given = batched(load_predictor(web_model_dir), max_batch=7, max_wait=0.05)
    before = set(threading.enumerate())
    app = create_app(given)
    with running_server(app) as url:
        r = httpx.post(f"{url}/api/predict", files={"file": ("d.png", canvas_png(X_test[0]), "image/png")}, timeout=30)
        assert r.status_code == 200, r.text
        batcher = app.state.served.predictor.batcher
        assert (batcher.max_batch, batcher.max_wait) == (7, 0.05)
    deadline = time.monotonic() + 3
    while (left := sorted(t.name for t in threading.enumerate() if t not in before)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def test_a_photo_sent_to_read_after_the_app_stopped_is_a_503_sentence(web_model_dir):
    """A request still in flight when the app's lifespan ends (a Ray Serve replica stopping) found its reading
    threads shut down: "cannot schedule new futures after shutdown", a 500. Now the 503 of a stopping server."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor as Pool

    from mnistlab.errors import NotReadyError
    from mnistlab.web.app import ready_predictor
    from mnistlab.web.routes import Served

    readers = Pool(1)
    served = Served(predictor=ready_predictor(web_model_dir), readers=readers, max_pixels=MAX_PIXELS)
    readers.shutdown()
    with pytest.raises(NotReadyError, match="shutting down") as refused:
        asyncio.run(served.run_on_photo(len, b"photo"))
    assert refused.value.http_status == 503


@pytest.mark.parametrize(
    ("value", "said"), [(True, "(got true)"), (False, "(got false)"), ("3", '(got "3")'), ({"n": 3}, '(got {"n": 3})')]
)
def test_a_refused_json_value_is_quoted_as_json_not_as_python(client, value, said):
    """``{"top": true}`` was answered "top: Input should be a valid integer (got True)": Python's spelling of a value
    the client wrote as JSON (true, "3"), which no JSON client sends. The sentence quotes it as JSON; a query's stays text."""
    r = client.post("/api/predict", json={"pixels": [0] * 784, "top": value})
    assert r.status_code == 422, r.text
    assert said in r.json()["detail"], r.json()
    r = client.post("/api/predict?top=x", files={"file": ("a.png", b"")})
    assert "(got 'x')" in r.json()["detail"], r.json()
