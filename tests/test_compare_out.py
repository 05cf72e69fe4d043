"""Where compare writes its report, as given from Python: a value that names no folder is refused, not guessed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnistlab.errors import ParameterError
from mnistlab.lab.compare import compare


@pytest.mark.parametrize(
    ("out_dir", "says"),
    [
        ("", "out_dir is empty, which would mean the current folder; give it a path."),
        (None, "out_dir must be a path (a str or a Path), got None."),
    ],
)
def test_an_out_dir_that_names_no_folder_is_refused_before_the_data_loads(tmp_path, monkeypatch, out_dir, says):
    """out_dir="" (an unset $REPORT) wrote index.html, its PNGs and models/ into the current folder; None was a
    TypeError. The CLI refused an empty --out already."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.db"
    with pytest.raises(ParameterError) as caught:
        compare("knn", datasets="digits", limit=200, out_dir=out_dir, tracking_uri=str(store))
    assert str(caught.value) == says
    assert os.listdir(tmp_path) == []  # no page, no figures, no models, no store


FAILING = """
from sklearn.base import BaseEstimator, ClassifierMixin


class Failing(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise ValueError("a bug in the user's fit")

    def predict(self, X):
        return X[:, 0]
"""


def test_a_run_that_fails_leaves_no_empty_report_folder_and_keeps_one_that_was_there(tmp_path, monkeypatch):
    """A classifier failing on its first fit, or a tracking store that cannot be opened, left the --out folder
    made for the run behind, empty; a folder that was there before stays, with what it held."""
    from mnistlab.errors import MnistlabError

    (tmp_path / "failing_fit.py").write_text(FAILING)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "not-a-folder").write_text("")
    runs = [
        ("failing_fit:Failing", str(tmp_path / "s.db")),  # fails in its fit, after the store opened
        ("knn", str(tmp_path / "not-a-folder" / "s.db")),  # fails opening the store, before any fit
    ]
    for spec, store in runs:
        with pytest.raises(MnistlabError):
            compare([spec], datasets="digits", limit=200, cv=0, out_dir=tmp_path / "report", tracking_uri=store)
        assert not (tmp_path / "report").exists(), spec
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(MnistlabError):
        compare(["failing_fit:Failing"], datasets="digits", limit=200, cv=0, out_dir=kept, tracking_uri=runs[0][1])
    assert os.listdir(kept) == ["notes.txt"]


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("CI"),
    reason="Debian's dataset-fashion-mnist is not installed (CI installs it)",
)
def test_the_reports_mistakes_of_fashion_mnist_are_titled_by_the_clothes(tmp_path):
    """The report's grid of the best model's mistakes titled Fashion-MNIST's clothes by number ("4→2")."""
    import numpy as np

    from mnistlab.data.load import load_mnist
    from mnistlab.lab.plots import save_digit_grid
    from mnistlab.models.files import load_model

    out = tmp_path / "report"
    compare("logreg", datasets="fashion-mnist", limit=100, cv=0, out_dir=out, tracking_uri=str(tmp_path / "s.db"))
    fashion = load_mnist("fashion-mnist")
    X_test, y_test = fashion.data[fashion.details["n_train"] :], fashion.target[fashion.details["n_train"] :]
    y_pred = load_model(out / "models" / "fashion-mnist" / "logreg" / "seed-42")[0].predict(X_test)
    wrong = np.flatnonzero(y_pred != y_test)[:40]
    label = np.asarray(fashion.target_names)
    title = f"logreg: the first {len(wrong)} mistakes (true→predicted), seed 42"
    expected = save_digit_grid(
        X_test[wrong], label[y_test[wrong]], tmp_path / "named.png", predictions=label[y_pred[wrong]], title=title
    )
    assert (out / "mistakes-fashion-mnist.png").read_bytes() == expected.read_bytes()


def test_a_report_that_cannot_be_written_whole_is_one_sentence_and_the_old_one_stays_whole(tmp_path):
    """The report's files were written one after another: a figure that could not be written (a full disk, or
    here a folder in its way) left the old page beside the new chart, and the chart was a traceback (OSError).
    All are written or none, and the failure is one sentence naming --out."""
    from typer.testing import CliRunner

    from mnistlab.cli import app

    out, store = tmp_path / "report", str(tmp_path / "s.db")
    args = ["compare", "--dataset", "digits", "--limit", "200", "--cv", "0", "--out", str(out), "--tracking-uri", store]
    first = CliRunner().invoke(app, [*args, "knn"])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert set(before) == {"index.html", "accuracy-vs-time-digits.png", "mistakes-digits.png"}
    for blocked in ("mistakes-digits.png", "accuracy-vs-time-digits.png"):  # written second, and first
        (out / blocked).unlink(missing_ok=True)
        (out / blocked).mkdir()
        again = CliRunner().invoke(app, [*args, "logreg"])
        assert again.exit_code == 2, again.output
        line = again.stderr.strip().splitlines()[-1]
        assert line.startswith(f"Error: Cannot write the report into --out {out} ("), line
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == {
            k: v for k, v in before.items() if k != blocked
        }, blocked
        (out / blocked).rmdir()
        (out / blocked).write_bytes(before[blocked])


def test_an_out_holding_a_page_of_its_own_is_refused_before_the_data_loads_and_kept(tmp_path):
    """`compare --out docs` of a folder holding a site's own index.html replaced it with the report's page, without
    a word; a report's page is still replaced by the next comparison's."""
    from typer.testing import CliRunner

    from mnistlab.cli import app

    out, store = tmp_path / "docs", str(tmp_path / "s.db")
    out.mkdir()
    (out / "index.html").write_text("<html><title>My project</title><body>my site</body></html>")
    args = ["compare", "--dataset", "digits", "--limit", "200", "--cv", "0", "--out", str(out), "--tracking-uri", store]
    refused = CliRunner().invoke(app, [*args, "knn"])
    assert refused.exit_code == 2, refused.output
    assert refused.stderr.strip().splitlines() == [
        f"Error: --out {out} holds an index.html that is no mnistlab report, which the report's page would replace; "
        "move it away or choose another folder."
    ]
    assert "loading" not in refused.output
    assert os.listdir(out) == ["index.html"] and "my site" in (out / "index.html").read_text()
    (out / "index.html").unlink()
    for name in ("knn", "logreg"):  # the second comparison's page replaces the first's
        done = CliRunner().invoke(app, [*args, name])
        assert done.exit_code == 0, done.output
        assert f"<td>{name}</td>" in (out / "index.html").read_text()


def test_update_models_into_a_default_folder_of_another_tools_files_is_refused_before_the_data_loads(
    tmp_path, monkeypatch
):
    """compare --update-models whose recipe's default model folder held another tool's model.json fitted every
    model, then stopped at the save, refused as train refuses such a folder."""
    from mnistlab.models.files import default_model_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = default_model_dir("logreg")
    folder.mkdir(parents=True)
    (folder / "model.json").write_text('{"format": "layers-model"}')
    work = tmp_path / "work"
    with pytest.raises(ParameterError) as refused:
        compare(["logreg"], limit=200, cv=0, out_dir=work / "r", tracking_uri=str(work / "s.db"), update_models=True)
    assert str(refused.value) == (
        f"update_models {folder}: it holds model.json, which mnistlab did not save (there is no mnistlab model "
        "card), and the save would write over it or remove it; move that file away or choose another folder."
    )
    assert not work.exists()  # no report, no store: refused before the data loaded
    assert os.listdir(folder) == ["model.json"]


NAIVE_BAYES = """
from sklearn.naive_bayes import GaussianNB


def make(seed=0):
    return GaussianNB()
"""


def test_a_model_name_with_dollar_signs_is_drawn_as_text_not_parsed_as_math(tmp_path):
    """A model's name (here a file's, ``a$\\q$.py:make``) went into the figures' labels as matplotlib mathtext:
    ``price$x^2$.py`` was drawn as "pricex².py", and ``$\\q$`` stopped the report after every fit with a
    ValueError traceback (Unknown symbol: \\q)."""
    spec_file = tmp_path / "a$\\q$.py"
    spec_file.write_text(NAIVE_BAYES)
    out = tmp_path / "report"
    summary = compare(
        [f"{spec_file}:make"], datasets="digits", limit=200, cv=0, out_dir=out, tracking_uri=str(tmp_path / "s.db")
    )
    assert summary["results"][0]["model"] == "a$\\q$.py:make"
    assert {p.name for p in out.iterdir() if p.is_file()} == {
        "index.html",
        "accuracy-vs-time-digits.png",
        "mistakes-digits.png",
    }
    assert "<td>a$\\q$.py:make</td>" in (out / "index.html").read_text()


_REPORT_ON_A_FULL_DISK = """
import resource, sys
from types import SimpleNamespace
import numpy as np
from mnistlab.errors import ParameterError
from mnistlab.lab.report import write_bench_report

rng = np.random.default_rng(0)
first = SimpleNamespace(  # noise: the mistakes' grid is larger than the chart drawn before it
    X_test=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), y_test=np.zeros(50, int), dataset="d", data_dir=None
)
result = {
    "model": "m", "seeds": [1], "test_accuracy_mean": 0.5, "test_accuracy_ci95": (0.4, 0.6), "test_accuracy_std": None,
    "fit_seconds_mean": 1.0, "fit_seconds": [1.0], "predict_seconds_mean": 0.1, "reused": 0, "description": "",
    "n_train": 50, "n_test": 50,
}
section = {"dataset": "d", "results": [result], "comparisons": [], "matrix": {}, "first": first,
           "first_predictions": {"m": np.ones(50, int)}}
import matplotlib.pyplot  # its font cache written before the disk fills
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # a disk that fills: a larger write fails (EFBIG)
try:
    write_bench_report([section], sys.argv[1])
except ParameterError as exc:
    print(exc.named("--out"))
"""


def test_a_figure_the_disk_refuses_is_said_of_out_not_of_a_hidden_folder(tmp_path):
    """A full disk while the mistakes were drawn was "Cannot write PNG to OUT/.mnistlab-report-x1y2/mistakes-d.png",
    a hidden folder gone by the time it was read, where other failures name --out."""
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-c", _REPORT_ON_A_FULL_DISK, str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"Cannot write the report into --out {out} (File too large); free space"), run.stdout
    assert list(out.iterdir()) == []


def test_a_fit_of_too_few_steps_to_learn_says_so_as_train_does(tmp_path):
    """compare of cnn-fast on a small dataset (200 images: 2 optimizer steps) read 10-40% without a word of why,
    where train says in a note line that fewer than 100 steps seldom learn; the note was only kept in the run."""
    from typer.testing import CliRunner

    from mnistlab.cli import app

    args = ["compare", "cnn-fast", "--dataset", "digits", "--limit", "200", "--n-jobs", "1", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--tracking-uri", str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    said = "[1/1] digits seed 42: cnn-fast: note: the CNN took 2 optimizer steps (2 epochs of 1 batches of about 200"
    assert said in result.stderr and "fewer than 100 seldom learn" in result.stderr


def test_the_note_of_a_cnn_on_fashion_mnist_does_not_call_its_classes_digits(tmp_path):
    """The note of a CNN of too few steps said that they 'seldom learn the digits', of Fashion-MNIST's clothes
    (and of any folder's classes) too, now that compare prints it."""
    steps: list[str] = []
    compare("cnn-fast", datasets="fashion-mnist", limit=200, n_jobs=1, out_dir=tmp_path, tracking_uri=str(tmp_path / "s.db"),
            progress=steps.append)  # fmt: skip
    (note,) = [s for s in steps if ": note: " in s]
    assert "fashion-mnist seed 42: cnn-fast: note: the CNN took 2 optimizer steps" in note and "digits:" not in note
    assert note.endswith("fewer than 100 seldom learn the classes (digits, clothes...): give it more images, more "
                         "epochs or a smaller batch_size.")  # fmt: skip


@pytest.mark.parametrize(
    ("baseline", "heading"), [(None, "the best model"), ("knn", "the best model and the baseline")]
)
def test_the_reports_comparisons_name_a_baseline_only_where_one_was_given(tmp_path, baseline, heading):
    """The report headed its comparisons "Against the best model and the baseline" with no --baseline given."""
    out = tmp_path / "report"
    settings = {"datasets": "digits", "limit": 200, "cv": 0, "tracking_uri": str(tmp_path / "s.db")}
    compare(["knn", "logreg"], out_dir=out, baseline=baseline, **settings)
    page = (out / "index.html").read_text()
    assert f"<h3>Against {heading}</h3>" in page
