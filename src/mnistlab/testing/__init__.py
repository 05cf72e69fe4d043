"""Helpers for testing code that reads handwriting, public like ``click.testing``.

``photos``: photo-like images made from MNIST digits (paper, canvas, numbers,
non-digits) that exercise the whole reading path, decoding included. They sit
close to MNIST, so they say little about other hands. ``hands``: labelled
images from hands MNIST never saw (a pen engine's random writers, handwriting
fonts, scikit-learn's 8x8 optdigits) on canvases and photographed plain, ruled
and squared paper, and the non-digits a reader must refuse; its kinds of
non-digit are ``mnistlab.testing.hands.NON_DIGIT_KINDS``. ``server``:
``running_server(app)``, a real uvicorn server on 127.0.0.1.
"""

from mnistlab.testing.hands import (
    DIGIT_SOURCES,
    PEN_STYLES,
    SURFACES,
    Sample,
    digit_samples,
    non_digit_samples,
    number_samples,
)
from mnistlab.testing.photos import (
    NON_DIGIT_KINDS,
    STYLES,
    make_non_digit,
    make_number_photo,
    make_photo,
    place_on_table,
)
from mnistlab.testing.server import running_server

__all__ = [
    "STYLES",
    "NON_DIGIT_KINDS",
    "make_photo",
    "make_number_photo",
    "place_on_table",
    "make_non_digit",
    "DIGIT_SOURCES",
    "SURFACES",
    "PEN_STYLES",
    "Sample",
    "digit_samples",
    "number_samples",
    "non_digit_samples",
    "running_server",
]
