"""Where compare writes its report, as given from Python: a value that names no folder is refused, not guessed."""

from __future__ import annotations

import os

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
