"""Helpers for testing code that reads handwriting, public like ``click.testing``.

``photos``: photo-like images made from MNIST digits (paper, canvas, numbers,
non-digits) that exercise the whole reading path, decoding included. They sit
close to MNIST, so they say little about other hands. ``hands``: labelled
images from hands MNIST never saw (a pen engine's random writers, handwriting
fonts, scikit-learn's 8x8 optdigits) on canvases and photographed plain, ruled
and squared paper, and the non-digits a reader must refuse; its kinds of
non-digit are ``NON_DIGIT_SOURCES``. ``server``:
``running_server(app)``, a real uvicorn server on 127.0.0.1. ``cli``:
``run_cli(args)``, the command line in a fresh process. ``idx``:
``write_idx_folder(folder, arrays)``, a data set as four IDX files. ``links``:
``swapping_link(link, first, second)``, a link swapped by another process.
"""

from mnistlab.testing import cli, hands, idx, links, photos, server
from mnistlab.testing.cli import *  # noqa: F403
from mnistlab.testing.hands import *  # noqa: F403
from mnistlab.testing.idx import *  # noqa: F403
from mnistlab.testing.links import *  # noqa: F403
from mnistlab.testing.photos import *  # noqa: F403
from mnistlab.testing.server import *  # noqa: F403

__all__ = [*photos.__all__, *hands.__all__, *idx.__all__, *server.__all__, *cli.__all__, *links.__all__]
