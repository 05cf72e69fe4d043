"""`mnistlab sweep` on a real local Ray runtime: a 4-point grid of a small CNN with ASHA, the best saved and compared.

One Ray runtime (two CPUs) serves the module and stops at the end; the
command joins it (a runtime already running in the process is used as it is).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mnistlab.cli import app

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")
runner = CliRunner()


@pytest.fixture(scope="module")
def runtime():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def test_a_grid_sweep_reports_every_trial_and_saves_the_best_as_a_spec(runtime, tmp_path):
    spec = tmp_path / "best.json"
    args = ["sweep", "cnn-fast", "--param", "lr=0.0001,0.2", "--param", "epochs=1,3", "--limit", "500"]
    done = runner.invoke(app, [*args, "--out", str(spec), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    trials = result["trials"]
    assert sorted((t["config"]["lr"], t["config"]["epochs"]) for t in trials) == [
        (0.0001, 1),
        (0.0001, 3),
        (0.2, 1),
        (0.2, 3),
    ]
    for t in trials:  # each trial ran all its epochs, or fewer and is marked stopped by ASHA
        assert t["error"] is None and 1 <= t["epochs"] <= t["config"]["epochs"]
        assert t["stopped"] == (t["epochs"] < t["config"]["epochs"])
        assert 0 <= t["val_accuracy"] <= 1
    assert result["best"]["val_accuracy"] == max(t["val_accuracy"] for t in trials)
    assert result["best"]["config"]["lr"] == 0.2  # lr 1e-4 barely moves the weights in 3 epochs
    saved = json.loads(spec.read_text())
    assert saved["recipe"] == "cnn-fast" and saved["params"] == result["best"]["config"]
    # compare takes the saved configuration like a recipe name
    compared = runner.invoke(
        app,
        ["compare", str(spec), "--limit", "500", "--cv", "0", "--n-jobs", "1", "--out", str(tmp_path / "r")]
        + ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--json"],
    )
    assert compared.exit_code == 0, compared.output
    (row,) = json.loads(compared.stdout)["results"]
    assert row["model"] == "cnn-fast-tuned" and row["test_accuracy_mean"] > 0.1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--param", "nope=1,2"], "cnn-fast has no parameter 'nope'"),
        (["--param", "lr"], "--param 'lr' is not NAME=V1,V2"),
        (["--param", "lr=0.1", "--samples", "0"], "--samples must be from 1 to 1000 trials, got 0"),
        (["--param", "lr=0.1", "--seeds", "2", "--seed", "4294967295"], "--seeds 2 from seed 4294967295 runs past"),
        (["--param", "lr=0.1", "--limit", "60001"], "--limit must be between 20 and 60000"),
    ],
)
def test_a_bad_sweep_is_one_sentence_before_any_trial(tmp_path, args, says):
    spec = tmp_path / "new" / "b.json"
    done = runner.invoke(app, ["sweep", "cnn-fast", "--limit", "500", *args, "--out", str(spec)])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and says in lines[0], done.stderr
    assert not spec.parent.exists()  # checked writable, not made, before the settings were known to run


def test_with_seeds_each_configuration_runs_per_seed_and_the_best_mean_wins(runtime, tmp_path):
    from mnistlab.lab.options import RunOptions
    from mnistlab.lab.sweep import sweep

    result = sweep(
        "logreg",
        {"logreg__C": [0.0001, 0.1, 1.0]},
        RunOptions(limit=300, seed=7),
        samples=2,
        seeds=2,
        out=tmp_path / "best.json",
    )
    trials, configs = result["trials"], result["configs"]
    assert sorted(t["seed"] for t in trials) == [7, 7, 8, 8] and len(configs) == 2
    for c in configs:
        mine = sorted((t["seed"], t["val_accuracy"]) for t in trials if t["config"] == c["config"])
        assert c["val_accuracies"] == [acc for _, acc in mine] and c["val_accuracy"] == pytest.approx(
            sum(c["val_accuracies"]) / 2
        )
    assert result["best"] == max(configs, key=lambda c: c["val_accuracy"])
    assert json.loads((tmp_path / "best.json").read_text())["seeds"] == [7, 8]


def test_random_draws_are_seeded():
    from mnistlab.lab.sweep import _configs

    params = {"a": [1, 2, 3, 4], "b": [5, 6]}
    draws = [_configs(params, 3, seed) for seed in (0, 0, 1)]
    assert draws[0] == draws[1] and len(draws[0]) == 3 and len({str(c) for c in draws[0]}) == 3
    assert _configs(params, 20, 0) == _configs(params, None, 0)  # more draws than points: the whole grid
