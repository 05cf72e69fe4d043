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
