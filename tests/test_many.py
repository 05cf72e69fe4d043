"""``mnistlab predict DIR``: every core, answers in input order, each unreadable file its own error."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.errors import InputError, MnistlabError
from mnistlab.testing import make_photo
from mnistlab.testing.hands import digit_samples, non_digit_samples
from mnistlab.trust.many import expand_paths, predict_files
from mnistlab.trust.predict import load_predictor, predict_file

runner = CliRunner()


def _folder(tmp_path, digits: np.ndarray):
    """30 files: photos of ``digits``, every fifth one broken (text, or a photo cut short), and a stray."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "inbox"
    folder.mkdir()
    broken = {}
    for i, digit in enumerate(digits[:30]):
        name = f"{i:02d}.{'png' if i % 2 else 'jpg'}"
        photo = make_photo(digit, rng, style="canvas-black-on-white" if i % 2 else "paper")
        if i % 5 == 3:
            photo, broken[name] = photo[: len(photo) // 3], "truncated"
        elif i % 5 == 4:
            photo, broken[name] = b"not an image\n", "not an image"
        (folder / name).write_bytes(photo)
    (folder / "notes.txt").write_text("a folder may hold other files: they are not read\n")
    (folder / ".hidden.png").write_bytes(b"")
    return folder, broken


def test_a_folder_is_read_in_order_on_all_cores_with_per_file_errors(tmp_path, mnist_small):
    folder, broken = _folder(tmp_path, mnist_small[1])
    parallel = runner.invoke(app, ["predict", str(folder), "--json", "--jobs", "2"])
    serial = runner.invoke(app, ["predict", str(folder), "--json", "--jobs", "1"])
    assert parallel.exit_code == serial.exit_code == 1, parallel.output
    assert parallel.stdout == serial.stdout  # same answers, same order, whichever process read a file
    lines = [json.loads(line) for line in parallel.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(folder / f"{i:02d}.{'png' if i % 2 else 'jpg'}") for i in range(30)]
    for line in lines:
        name = line["file"].rsplit("/", 1)[1]
        if name in broken:
            assert set(line) == {"file", "error"} and broken[name] in line["error"], line
        else:
            assert "error" not in line and line["digit"] in range(10)


def test_predict_files_streams_every_path_in_order(tmp_path, mnist_small):
    folder, broken = _folder(tmp_path, mnist_small[1])
    paths = expand_paths([folder, folder / "notes.txt"])  # a file named directly is read whatever its suffix
    assert paths[-1].name == "notes.txt" and len(paths) == 31
    answers = list(predict_files(paths, None, jobs=2))
    assert [path for path, _, _ in answers] == paths
    failed = {path.name for path, result, exc in answers if exc is not None}
    assert failed == set(broken) | {"notes.txt"}
    assert all((result is None) == (exc is not None) for _, result, exc in answers)


def test_photos_classified_together_answer_as_each_file_alone(tmp_path):
    """A task's photos share one ``describe`` call: the answers are ``predict_file``'s, one file at a time, for
    digits and letters on paper (doubted ones read again), an empty page, a broken file and an array."""
    rng = np.random.default_rng(3)
    samples = [*digit_samples("pen", 20, rng, surface="paper-ruled"), *non_digit_samples("pen-letters", 12, rng)]
    samples += non_digit_samples("empty-pages", 2, rng)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, sample in enumerate(rng.permutation(np.array(samples, dtype=object))):
        (folder / f"{i:02d}.png").write_bytes(sample[0])
    (folder / "20.png").write_bytes(b"not an image\n")
    np.save(folder / "21.npy", np.zeros((28, 28), np.uint8))
    paths = expand_paths([folder])
    predictor = load_predictor(None)
    alone = []
    for path in paths:
        try:
            alone.append((path, predict_file(path, predictor), None))
        except MnistlabError as exc:
            alone.append((path, None, str(exc)))
    assert sum(result is not None and not result["confident"] for _, result, _ in alone) >= 10  # looked again
    for jobs in (1, 2):
        together = list(predict_files(paths, predictor, jobs=jobs))
        assert [path for path, _, _ in together] == paths
        for (_, want, want_error), (path, got, error) in zip(alone, together):
            assert want_error == (str(error) if error else None), path
            if want is not None:
                assert np.array_equal(got["mnist_image"], want["mnist_image"]), path
                assert {**got, "mnist_image": None} == {**want, "mnist_image": None}, path


def test_a_wrong_top_is_one_error_before_any_file_is_read(tmp_path):
    with pytest.raises(InputError, match="top must be a whole number from 1 to 10, got 0"):
        next(predict_files([tmp_path / "not-there.png"], None, top=0))


@pytest.mark.parametrize("stop_early", [False, True])
def test_predict_files_gives_opencv_its_threads_back(tmp_path, mnist_small, stop_early):
    """It runs OpenCV on one thread while it reads; the caller's process kept that one thread after it."""
    folder, _ = _folder(tmp_path, mnist_small[1])
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        answers = predict_files(expand_paths([folder]), None, jobs=1)
        next(answers)
        assert cv2.getNumThreads() == 1  # while it reads
        answers.close() if stop_early else list(answers)
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)


def test_a_folder_without_images_is_one_error_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("no digits here\n")
    result = runner.invoke(app, ["predict", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {tmp_path} holds no image") and result.stderr.count("\n") == 1


def test_a_folder_s_jpegs_are_read_under_every_name_a_jpeg_goes_by(tmp_path, mnist_small):
    """A folder's .jfif files (a JPEG as a browser on Windows saves it from the web) and .jpe files were left out
    of ``mnistlab predict DIR`` without a word, though each, named alone, was read as the JPEG it is."""
    photo = make_photo(mnist_small[1][0], np.random.default_rng(0), style="paper")  # a JPEG
    names = ["a.jfif", "b.JPE", "c.jpg", "d.Jpeg"]
    for name in names:
        (tmp_path / name).write_bytes(photo)
    assert expand_paths([tmp_path]) == [tmp_path / name for name in names]
    result = runner.invoke(app, ["predict", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(tmp_path / name) for name in names]
    assert len({(line["digit"], line["probability"]) for line in lines}) == 1


def test_a_path_the_system_will_not_look_at_is_an_error_for_that_file_alone(tmp_path, mnist_small):
    """A name too long for the file system (ENAMETOOLONG, for root too): one error line per file, no traceback."""
    good = tmp_path / "7.png"
    good.write_bytes(make_photo(mnist_small[1][0], np.random.default_rng(0), style="canvas-black-on-white"))
    long_png, long_npy = tmp_path / ("a" * 300 + ".png"), tmp_path / ("b" * 300 + ".npy")
    for flags in ([], ["--number"]):
        result = runner.invoke(app, ["predict", str(long_png), str(good), str(long_npy), "--json", *flags])
        assert result.exit_code == 1, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [line["file"] for line in lines] == [str(long_png), str(good), str(long_npy)]
        for line in (lines[0], lines[2]):
            assert (
                line["error"]
                == f"{line['file']} cannot be read (File name too long); check the path, and that you may read the file."
            )
        assert "error" not in lines[1]


def test_a_folder_entry_the_system_will_not_look_at_is_an_error_for_that_file_alone(tmp_path, mnist_small):
    """A link in the folder to a name too long to look up (ENAMETOOLONG, for root too, as EACCES is for a link
    into a folder this user may not search): that file's error line, the others read; it refused the folder."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "7.png").write_bytes(
        make_photo(mnist_small[1][0], np.random.default_rng(0), style="canvas-black-on-white")
    )
    (folder / "far.png").symlink_to("a" * 300 + ".png")
    (folder / "far.txt").symlink_to("b" * 300 + ".txt")  # no image by its name: not read, so not looked at
    result = runner.invoke(app, ["predict", str(folder), "--json"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(folder / "7.png"), str(folder / "far.png")]
    assert "error" not in lines[0]
    assert lines[1]["error"] == (
        f"{folder / 'far.png'} cannot be read (File name too long); check the path, and that you may read the file."
    )


def _unlistable(tmp_path) -> Path:
    """A folder this process may not list: mode 000, or where that does not stop it (root) /proc/1/map_files."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    for folder in (locked, Path("/proc/1/map_files")):
        try:
            os.listdir(folder)
        except PermissionError:
            return folder
    pytest.skip("no folder here refuses this process a listing")


def test_a_folder_that_cannot_be_listed_is_one_error_line(tmp_path):
    folder = _unlistable(tmp_path)
    try:
        result = runner.invoke(app, ["predict", str(folder), "--json"])
    finally:
        (tmp_path / "locked").chmod(0o700)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"Error: Cannot list the folder {folder} (Permission denied); check that you may read it, or name its files.\n"
    )


def test_a_file_the_user_may_not_read_says_so_not_truncated(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n")
    secret.chmod(0)
    result = runner.invoke(app, ["predict", str(secret), "--json"])
    assert result.exit_code == 2
    assert (
        json.loads(result.stdout)["error"]
        == f"{secret} cannot be read (Permission denied); check the path, and that you may read the file."
    )


def _many_copies(tmp_path: Path, digit: np.ndarray, n: int = 2000) -> Path:
    """A folder of ``n`` files 0000.png, 0001.png, ..., each a hard link to one canvas photo of ``digit``."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(make_photo(digit, np.random.default_rng(0), style="canvas-black-on-white"))
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(n):
        os.link(photo, folder / f"{i:04d}.png")
    return folder


def test_a_long_table_is_printed_as_it_fills_not_kept_to_the_end(tmp_path, mnist_small, monkeypatch):
    """Table mode kept every row until the run's end: a folder of 100,000 files held them all and showed none."""
    from mnistlab.cli import predict as predict_command

    monkeypatch.setattr(predict_command, "TABLE_ROWS", 2)
    folder = tmp_path / "five"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, digit in enumerate(mnist_small[1][:5]):
        (folder / f"{i}.png").write_bytes(make_photo(digit, rng, style="canvas-black-on-white"))
    shown = runner.invoke(app, ["predict", str(folder), "--jobs", "1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.count("┃ File") == 3  # tables of 2, 2 and 1 rows, each with its header
    assert re.findall(r"(\d)\.png", shown.stdout) == ["0", "1", "2", "3", "4"]


def test_a_table_run_stopped_by_a_dead_worker_still_shows_what_it_answered(tmp_path, mnist_small):
    # The table was printed only at the end: a run stopped early showed nothing of the files it had answered.
    folder, seen = _many_copies(tmp_path, mnist_small[1][0]), tmp_path / "seen"
    command = [sys.executable, "-m", "mnistlab.cli", "predict", str(folder), "--jobs", "2", "--save-preprocessed"]
    env = dict(os.environ, COLUMNS="200")  # each row's file name on one line
    run = subprocess.Popen([*command, str(seen)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (seen.is_dir() and any(seen.iterdir())):  # answers are coming in (saved as they are)
            assert time.monotonic() < deadline and run.poll() is None, "no answer was saved"
            time.sleep(0.05)
        workers = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
        os.kill(int(workers[0]), signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 2, stderr
    assert stderr.decode().startswith("Error: A process reading the files stopped abruptly")
    answered = len(list(seen.iterdir()))
    assert 0 < answered < 2000
    shown = re.findall(r"(\d{4})\.png", stdout.decode())
    assert shown == [f"{i:04d}" for i in range(answered)], stdout.decode()[-2000:]


def test_a_worker_that_dies_is_one_error_line_naming_the_first_file_unanswered(tmp_path, mnist_small):
    """A worker killed (the OOM killer, kill -9) or crashed in a decoder: one `Error:` line, exit 2, the answers
    given so far kept in order, not a BrokenProcessPool traceback; and no worker left behind (the pool's SIGTERM
    to the others was caught as SystemExit, and one could wait forever on a lock the dead one held)."""
    folder = _many_copies(tmp_path, mnist_small[1][0])
    command = [sys.executable, "-m", "mnistlab.cli", "predict", str(folder), "--json", "--jobs", "2"]
    # Unbuffered: communicate() reads the pipe itself, past whatever a buffered readline would have kept.
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        first = run.stdout.readline()  # the workers are running
        workers = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
        os.kill(int(workers[0]), signal.SIGKILL)
        rest, stderr = run.communicate(timeout=120)
    finally:
        run.kill()
    deadline = time.monotonic() + 30  # the pool stops the other worker; none is left waiting on a dead one's lock
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, f"a worker of {workers} is still running"
        time.sleep(0.1)
    lines = [json.loads(line) for line in (first + rest).decode().splitlines()]
    stderr = stderr.decode()
    assert [line["file"] for line in lines] == [str(folder / f"{i:04d}.png") for i in range(len(lines))]
    assert run.returncode == 2 and 0 < len(lines) < 2000, stderr
    assert stderr == (
        "Error: A process reading the files stopped abruptly (killed, out of memory, or crashed on a file) before "
        f"{folder / f'{len(lines):04d}.png'} (file {len(lines) + 1} of 2000) was answered; read the files from there "
        "again, with --jobs 1 to find one that crashes the reader.\n"
    )


FITTED_HERE = """
import sys
from pathlib import Path
import numpy as np
from mnistlab import get_recipe
from mnistlab.models.proba import digit_probabilities
from mnistlab.trust.many import predict_files
from mnistlab.trust.predict import Predictor
from mnistlab.trust.reader import load_reader

data = np.load(sys.argv[1])
knn = get_recipe("knn-deskew").build(0, 1).fit(data["X"], data["y"])
reader = load_reader()
predictor = Predictor(lambda x: digit_probabilities(knn, x.reshape(len(x), 784)), {}, reader, reader.probability_cut)
predictor.describe(data["X"][:500], 1)  # the model used here first: OpenMP's threads start
for path, result, exc in predict_files(sorted(Path(sys.argv[2]).iterdir()), predictor, jobs=2):
    print(path.name, exc or result["digit"])
"""


def test_workers_forked_after_the_model_ran_here_do_not_hang(tmp_path, mnist_small):
    """scikit-learn's k-NN runs on GNU OpenMP threads, which do not survive a fork: a model that had answered in
    the parent (calibrated there, saved without its cut, or evaluated in a notebook) hung every worker forever."""
    X, test, y, _ = mnist_small
    np.savez(tmp_path / "digits.npz", X=X[:1000], y=y[:1000])
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, digit in enumerate(test[:10]):
        (folder / f"{i}.png").write_bytes(make_photo(digit, rng, style="canvas-black-on-white"))
    command = [sys.executable, "-c", FITTED_HERE, str(tmp_path / "digits.npz"), str(folder)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, start_new_session=True)
    try:
        stdout, _ = run.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)  # the workers too, where they hang
    assert run.returncode == 0
    assert [line.split()[0] for line in stdout.decode().splitlines()] == [f"{i}.png" for i in range(10)]


def test_workers_stop_when_the_command_is_killed(tmp_path, mnist_small, process_running):
    """kill -9 of the command (the OOM killer, a CI job's time limit) left its workers running, then waiting
    forever on a queue no one writes to, each holding its copy of the model."""
    run, workers = _predict_with_workers(tmp_path, mnist_small[1][0], subprocess.DEVNULL)
    try:
        run.kill()
        run.wait()
        deadline = time.monotonic() + 10
        while left := [pid for pid in workers if process_running(pid)]:
            assert time.monotonic() < deadline, f"workers {left} of a killed command are still running"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)


def _predict_with_workers(tmp_path: Path, digit: np.ndarray, stderr: int) -> tuple[subprocess.Popen, list[str]]:
    """``predict FOLDER --json --jobs 2`` over copies of ``digit``, in a session of its own, once its first answer
    came (its workers run), and the workers' pids."""
    folder = _many_copies(tmp_path, digit)
    command = [sys.executable, "-m", "mnistlab.cli", "predict", str(folder), "--json", "--jobs", "2"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    try:
        run.stdout.readline()  # the workers are running
        return run, Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    except BaseException:
        os.killpg(run.pid, signal.SIGKILL)
        raise


def test_sigterm_to_the_process_group_ends_the_command_without_a_traceback(tmp_path, mnist_small, process_running):
    """A job scheduler or a service manager sends SIGTERM to every process of the job: the workers ended at once,
    and the pool, broken, failed to mark the chunks the stopping command had cancelled: an InvalidStateError
    traceback from its thread."""
    run, workers = _predict_with_workers(tmp_path, mnist_small[1][0], subprocess.PIPE)
    try:
        os.killpg(run.pid, signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert stderr == b"", stderr.decode()
    assert not [pid for pid in workers if process_running(pid)]
