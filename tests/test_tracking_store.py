"""The tracking store as the bench opens it: real MLflow SQLite stores, real folders, real processes."""

from __future__ import annotations

from typer.testing import CliRunner

from mnistlab.cli import app

runner = CliRunner()


def test_a_default_store_folder_that_cannot_be_made_is_one_sentence(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder would be")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["runs"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: Cannot make the tracking folder"), result.output
    assert "XDG_DATA_HOME" in result.output and "--tracking-uri" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
