"""Micro-batching: concurrent requests share one describe call and get the answers of one-by-one calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mnistlab.models.sessions import CHUNK
from mnistlab.testing import make_photo
from mnistlab.trust.batching import MicroBatcher, batched
from mnistlab.trust.predict import load_predictor, predict_image


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(None)


def _images(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.random((n, 28, 28)) ** 3 * 255).astype(np.uint8)


def test_one_image_gets_the_floats_it_gets_in_any_batch(predictor):
    images = _images(64)
    one_by_one = np.concatenate([predictor.classify(im[None]) for im in images])
    np.testing.assert_array_equal(one_by_one, predictor.classify(images))
    not_a_digit = np.concatenate([predictor.reader.scores(im[None]) for im in images])
    np.testing.assert_allclose(not_a_digit, predictor.reader.scores(images), rtol=0, atol=1e-6)


def test_a_batch_larger_than_a_session_run_gets_the_floats_of_one_by_one(predictor):
    images = _images(CHUNK + 16)
    one_by_one = np.concatenate([predictor.classify(im[None]) for im in images])
    np.testing.assert_array_equal(one_by_one, predictor.classify(images))
    for i in range(CHUNK, CHUNK + 16):  # each last in a batch of CHUNK + 1, run in two parts
        batch = np.concatenate([images[:CHUNK], images[i : i + 1]])
        np.testing.assert_array_equal(predictor.classify(batch)[-1], one_by_one[i])


def _assert_same(got: dict, want: dict) -> None:
    assert got["digit"] == want["digit"]
    assert got["probability"] == pytest.approx(want["probability"], abs=1e-6)
    assert [d for d, _ in got["top"]] == [d for d, _ in want["top"]]
    np.testing.assert_allclose([p for _, p in got["top"]], [p for _, p in want["top"]], rtol=0, atol=1e-6)
    assert (got["confident"], got["reason"]) == (want["confident"], want["reason"])
    np.testing.assert_array_equal(got["mnist_image"], want["mnist_image"])


def test_concurrent_requests_are_batched_and_answered_as_one_by_one(predictor):
    images = _images(48)
    tops = [1 + i % 10 for i in range(len(images))]
    alone = [predictor.describe(im[None], top)[0] for im, top in zip(images, tops)]
    batcher = MicroBatcher(predictor.describe, max_wait=0.05)
    start = threading.Barrier(len(images))

    def ask(i: int) -> dict:
        start.wait()
        return batcher(images[i][None], tops[i])[0]

    with ThreadPoolExecutor(len(images)) as pool:
        together = list(pool.map(ask, range(len(images))))
    for got, want, top in zip(together, alone, tops):
        _assert_same(got, want)
        assert len(got["top"]) == top
    assert batcher.images == len(images)
    assert batcher.batches < len(images) / 4  # most requests shared a call


def test_a_full_batch_runs_at_once_and_a_lone_image_after_the_wait(predictor):
    """The batching thread is woken when a batch opens and when it is full, not by each image between: four
    images fill a batch of four at once, long before a wait of a minute is out; a lone one waits it out."""
    images = _images(4)
    batcher = MicroBatcher(predictor.describe, max_batch=4, max_wait=60.0)
    started = time.monotonic()
    jobs = [batcher.submit(image[None], 3) for image in images]
    answers = [job.future.result(timeout=30) for job in jobs]
    assert time.monotonic() - started < 30
    assert batcher.batches == 1
    for image, got in zip(images, answers):
        _assert_same(got[0], predictor.describe(image[None], 3)[0])
    lone = MicroBatcher(predictor.describe, max_batch=4, max_wait=0.3)
    started = time.monotonic()
    lone(images[0][None], 3)
    assert time.monotonic() - started >= 0.3


def test_a_closed_batcher_answers_what_it_has_then_its_thread_ends(predictor):
    """``close`` (an app stopping): the images already submitted are answered at once, not after the wait, the
    batching thread ends, and an image submitted later is refused in one sentence instead of waiting forever."""
    from mnistlab.errors import NotReadyError

    images = _images(2)
    batcher = MicroBatcher(predictor.describe, max_batch=4, max_wait=60.0)
    jobs = [batcher.submit(image[None], 3) for image in images]
    thread = batcher._thread
    assert thread is not None
    batcher.close()
    assert [len(job.future.result(timeout=10)) for job in jobs] == [1, 1]
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(NotReadyError, match="shutting down"):
        batcher(images[0][None], 3)


def test_a_failing_image_fails_only_its_own_request(predictor):
    images = _images(12)
    batcher = MicroBatcher(predictor.describe, max_wait=0.05)
    start = threading.Barrier(len(images) + 1)

    def ask(image: np.ndarray):
        start.wait()
        return batcher.submit(image, 3)

    with ThreadPoolExecutor(len(images) + 1) as pool:
        futures = [pool.submit(ask, im[None]) for im in images]
        bad = pool.submit(ask, np.zeros((27, 27), np.uint8))  # not 28x28: describe cannot reshape it
        answers = [f.result().future.result(timeout=30) for f in futures]
        with pytest.raises(ValueError):
            bad.result().future.result(timeout=30)
    for image, got in zip(images, answers):
        _assert_same(got[0], predictor.describe(image[None], 3)[0])


def test_a_batched_predictor_answers_photos_like_the_plain_one(predictor, mnist_small):
    rng = np.random.default_rng(3)
    photos = [make_photo(digit, rng) for digit in mnist_small[1][:10]]
    fast = batched(predictor)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda photo: predict_image(photo, fast, top=3), photos))
    for photo, answer in zip(photos, got):
        _assert_same(answer, predict_image(photo, predictor, top=3))
    assert fast.batcher is not None and fast.batcher.images == len(photos)


def test_coroutines_share_a_batch_get_one_by_one_answers_and_a_bad_image_fails_only_its_own(predictor):
    import asyncio

    images = _images(12)
    batcher = MicroBatcher(predictor.describe, max_wait=0.05)

    async def ask(batch: list[tuple[np.ndarray, int]]):
        return await asyncio.gather(*(batcher.answer(image, top) for image, top in batch), return_exceptions=True)

    async def with_a_quitter():
        gone = asyncio.ensure_future(batcher.answer(images[0][None], 3))
        asked = asyncio.ensure_future(ask([(image[None], top) for image, top in zip(images, range(1, 13))]))
        await asyncio.sleep(0)
        gone.cancel()  # a caller that stopped waiting: the others are still answered
        return await asked

    answers = asyncio.run(with_a_quitter())
    for image, top, got in zip(images, range(1, 13), answers):
        _assert_same(got[0], predictor.describe(image[None], top)[0])
        assert len(got[0]["top"]) == min(top, 10)
    assert batcher.images == len(images) + 1 and batcher.batches <= 2  # the quitter's image was run too

    bad, good = asyncio.run(ask([(np.zeros((27, 27), np.uint8), 3), (images[1][None], 3)]))
    assert isinstance(bad, ValueError)  # not 28x28: describe cannot reshape it
    _assert_same(good[0], predictor.describe(images[1][None], 3)[0])


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"max_wait": "x"}, "max_wait must be a number of seconds, 0 or more, got 'x'."),
        ({"max_wait": -1}, "max_wait must be a number of seconds, 0 or more, got -1."),
        ({"max_wait": float("inf")}, "max_wait must be a number of seconds, 0 or more, got inf."),
        ({"max_batch": 0}, "max_batch must be a whole number of images, 1 or more, got 0."),
        ({"max_batch": 2.5}, "max_batch must be a whole number of images, 1 or more, got 2.5."),
    ],
)
def test_a_setting_the_batcher_cannot_use_is_refused_when_it_is_made(predictor, setting, message):
    # It was taken as given: max_wait="x" killed the batching thread at the first request, whose
    # caller then waited for ever.
    from mnistlab.errors import ParameterError

    with pytest.raises(ParameterError) as info:
        batched(predictor, **setting)
    assert str(info.value) == message
