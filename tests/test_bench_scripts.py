"""The benchmark scripts' own helpers and arguments (benchmarks/ is put on sys.path, as the scripts run)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from argtypes import at_least_one  # noqa: E402


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    src = str(BENCHMARKS.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_a_count_is_a_whole_number_of_one_or_more():
    assert at_least_one("3") == 3
    for text in ("0", "-2", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            at_least_one(text)


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("bench_load.py", "--trials"),
        ("bench_photo_cpu.py", "--rounds"),
        ("bench_photo_cpu.py", "--reps"),
        ("bench_commands.py", "--rounds"),
    ],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_count_below_one_is_a_usage_error_not_a_traceback(name, option, value):
    # bench_load.py --trials 0 raised UnboundLocalError; bench_photo_cpu.py wrote its photos and ran a process
    # per tree before min() of no times failed.
    done = script(name, option, value)
    assert done.returncode == 2, done.stderr
    assert f"argument {option}: must be 1 or more, not {value}" in done.stderr
    assert "Traceback" not in done.stderr


def test_bench_commands_says_a_revision_git_does_not_know_in_one_line():
    done = script("bench_commands.py", "--against", "no-such-revision")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert (
        "argument --against" not in done.stderr and "--against no-such-revision: git archive refused it" in done.stderr
    )


def test_bench_load_prints_the_t_interval_of_the_mean_and_none_for_one_trial():
    import re

    from scipy import stats

    import bench_load

    times = [0.010, 0.012, 0.011, 0.015, 0.009]
    text, mean = bench_load.fmt(times)
    low, high = stats.t.interval(0.95, len(times) - 1, loc=mean, scale=stats.sem(times))
    half = float(re.search(r"95% CI ±\s*([0-9.]+)", text).group(1))
    assert half == pytest.approx((high - low) / 2 * 1000, abs=0.006)  # 2.78 sd/sqrt(5), not 1.96
    one, _ = bench_load.fmt([0.010])
    assert "95% CI    n/a" in one and "±  0.00" not in one.split("sd,")[1]  # one trial: no interval at all


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not Path("/usr/bin/taskset").exists(), reason="needs 2 cores, taskset")
def test_the_machine_line_names_the_cores_a_benchmark_may_run_on():
    # Pinned to one core (taskset, a container's cpuset) the line said "2 CPU cores" all the same.
    cpu = str(min(os.sched_getaffinity(0)))
    code = "import machine; print(machine.describe())"
    done = subprocess.run(
        ["/usr/bin/taskset", "-c", cpu, sys.executable, "-c", code], cwd=BENCHMARKS, capture_output=True, text=True
    )
    assert f", 1 of {os.cpu_count()} CPU cores, Python " in done.stdout, done.stderr
    import machine

    usable = len(os.sched_getaffinity(0))
    expected = f"{usable} CPU cores" if usable == os.cpu_count() else f"{usable} of {os.cpu_count()} CPU cores"
    assert f", {expected}, Python " in machine.describe()


def serve_digits(handle):
    """A tiny HTTP/1.1 server on 127.0.0.1 answering each request with ``handle(n)`` -> (status, JSON body), n
    counting from 0; run ``loadgen`` against it inside ``asyncio.run``."""
    import asyncio

    count = 0

    async def on_connect(reader, writer):
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                status, body = handle(count)
                count += 1
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return asyncio.start_server(on_connect, "127.0.0.1", 0)


def test_loadgen_accuracy_is_of_the_answers_not_of_every_request():
    # Half the requests answered 500, the other half with the right digit: "accuracy of the answers" is 1.0,
    # and an input shown with no digit (None) is no wrong answer; both were counted as wrong (0.5, 0.25).
    import asyncio

    from loadgen import json_request, run_load

    async def trial(requests):
        server = await serve_digits(lambda n: (500, b"{}") if n % 2 else (200, b'{"digit": 7}'))
        async with server:
            port = server.sockets[0].getsockname()[1]
            return await run_load("127.0.0.1", port, requests, 20, 1)

    seven = json_request("/api/predict", {"pixels": [0] * 784})
    done = asyncio.run(trial([(seven, 7)]))
    assert len(done["errors"]) == 10 and done["errors"][0].startswith("500")
    assert done["accuracy"] == 1.0
    unlabelled = asyncio.run(trial([(seven, 7), (seven, 7), (seven, None), (seven, None)]))
    assert unlabelled["accuracy"] == 1.0  # 200s: 10, of which 5 labelled and right


def test_bench_photos_runs_when_its_few_photos_hold_no_paper_one():
    # bench_photos.py --photos 2 (seed 0: two canvas exports) died on np.stack([]) of the sheet-on-table photos.
    import io

    import numpy as np
    from PIL import Image

    import bench_photos
    from mnistlab import load_split
    from mnistlab.testing import make_photo
    from mnistlab.trust.predict import load_predictor

    _, X_test, _, y_test = load_split()
    png = io.BytesIO()
    Image.fromarray(255 - X_test[0].reshape(28, 28)).resize((280, 280)).save(png, format="PNG")
    rng = np.random.default_rng(0)
    jpeg = next(p for p in (make_photo(X_test[1].reshape(28, 28), rng) for _ in range(50)) if p[:2] == b"\xff\xd8")
    predictor = load_predictor(None)
    assert bench_photos.paper_on_table(predictor, [png.getvalue()], y_test[:1], rng).shape == (0,)
    assert bench_photos.paper_on_table(predictor, [png.getvalue(), jpeg], y_test[:2], rng).shape == (1,)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("bench_photos.py", ["--photos", "6000"], "argument --photos: at most 5,000"),  # was numpy's ValueError
        ("bench_hands.py", ["--mnist", "-1"], "argument --mnist: must be 0 or more, not -1"),  # read 4,999 digits
    ],
)
def test_a_count_past_what_the_data_holds_is_a_usage_error(name, args, message):
    done = script(name, *args)
    assert done.returncode == 2, done.stderr[-500:]
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1"])
def test_bench_serve_refuses_a_junk_share_that_leaves_no_valid_request(value, monkeypatch, capsys):
    # --junk-share 1 ran the whole clean trials, then the fault run died with KeyError: 'valid'.
    import bench_serve

    monkeypatch.setattr(sys, "argv", ["bench_serve.py", "--faults", "--junk-share", value])
    with pytest.raises(SystemExit) as stop:
        bench_serve.main()
    assert stop.value.code == 2
    assert f"argument --junk-share: must be from 0 to below 1, not {value}" in capsys.readouterr().err


def test_bench_hands_names_a_model_folder_that_is_no_model_in_one_line(tmp_path):
    # It read model.json itself first: a folder that does not exist was a FileNotFoundError traceback.
    done = script("bench_hands.py", "--model", str(tmp_path / "missing"), "--n", "1")
    assert done.returncode == 2, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"bench_hands.py: error: argument --model: Model directory {tmp_path / 'missing'} does not exist; "
        f"train one with `mnistlab train RECIPE --out {tmp_path / 'missing'}`."
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "bogus"], "bench_photos.py: error: argument --recipe: Unknown recipe 'bogus'; expected one of: "),
        (["--model", "missing"], "bench_photos.py: error: argument --model: Model directory "),
    ],
)
def test_bench_photos_says_an_unknown_recipe_or_model_in_one_line(args, message, tmp_path):
    # Both were a traceback ending in RecipeError / ModelFileError.
    if args[0] == "--model":
        args = ["--model", str(tmp_path / "missing")]
    done = script("bench_photos.py", *args, "--photos", "5")
    assert done.returncode == 2, done.stderr[-500:]
    assert "Traceback" not in done.stderr and message in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipes", "bogus"], "argument --recipes: Unknown recipe 'bogus'; expected one of: "),
        (["--lesson", "sgd"], "argument --lesson: 'sgd' is no case of the lesson; choose from sgd-hinge, sgd-log, knn"),
    ],
)
def test_bench_classic_refuses_an_unknown_name_before_anything_runs(args, message, monkeypatch, capsys):
    # --recipes bogus: a RecipeError traceback, after the lesson part's training with --part all;
    # --lesson sgd: a table with no rows and exit 0.
    import bench_classic

    monkeypatch.setattr(sys, "argv", ["bench_classic.py", *args])
    monkeypatch.setattr(bench_classic, "load_mnist", lambda *a, **k: pytest.fail("ran past the arguments"))
    with pytest.raises(SystemExit) as stop:
        bench_classic.main()
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_recipe_option_is_checked_as_the_arguments_are_read():
    # bench_cnn.py --long cnn-bets (bench_int8.py --recipe cnn-bets) ended in a RecipeError traceback, in
    # bench_cnn.py only after the comparison's training.
    from argtypes import recipe_name

    assert recipe_name("cnn-best") == "cnn-best"
    with pytest.raises(argparse.ArgumentTypeError, match="Unknown recipe 'cnn-bets'; expected one of: "):
        recipe_name("cnn-bets")
    done = script("bench_hands.py", "--recipe", "cnn-bets")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "argument --recipe: Unknown recipe 'cnn-bets'" in done.stderr


def test_bench_serve_names_a_model_folder_that_is_no_model_in_one_line(tmp_path, monkeypatch, capsys):
    # It was a ModelFileError traceback.
    import bench_serve

    monkeypatch.setattr(sys, "argv", ["bench_serve.py", "--model", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as stop:
        bench_serve.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"bench_serve.py: error: argument --model: Model directory {tmp_path / 'missing'} does not exist" in err


def test_bench_predict_makes_as_many_photos_as_asked_or_says_it_cannot(monkeypatch, capsys):
    # --photos 1500 made 1,000 photos (the first 1,000 test digits) without a word; past the test set too.
    import bench_predict

    made = []
    monkeypatch.setattr(bench_predict, "make_photo", lambda digit, rng: made.append(digit) or b"photo")
    monkeypatch.setattr(bench_predict, "load_predictor", lambda model: pytest.fail("ran past the photos"))
    monkeypatch.setattr(sys, "argv", ["bench_predict.py", "--photos", "1500"])
    with pytest.raises(pytest.fail.Exception):
        bench_predict.main()
    assert len(made) == 1500
    monkeypatch.setattr(sys, "argv", ["bench_predict.py", "--photos", "10001"])
    with pytest.raises(SystemExit) as stop:
        bench_predict.main()
    assert stop.value.code == 2
    assert "argument --photos: at most the 10,000 test digits, not 10001" in capsys.readouterr().err


def test_bench_bench_says_a_limit_compare_refuses_in_one_line(monkeypatch, capsys):
    # compare's ParameterError came out of main as a traceback.
    import bench_bench

    monkeypatch.setattr(sys, "argv", ["bench_bench.py", "--limit", "5", "--seeds", "1", "--dataset", "mnist"])
    with pytest.raises(SystemExit) as stop:
        bench_bench.main()
    assert stop.value.code == 2
    assert (
        "bench_bench.py: error: limit must be a count of at least 20 training images, got 5." in capsys.readouterr().err
    )
