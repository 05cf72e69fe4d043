"""`mnistlab sweep` on a real local Ray runtime and a real MLflow store: ASHA stops a trial, every trial is tracked.

One Ray runtime (two CPUs) serves the module and stops at the end; the
command joins it (a runtime already running in the process is used as it is).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab import get_recipe
from mnistlab.cli import app
from mnistlab.errors import ParameterError
from mnistlab.lab.fitting import open_dataset, split_for
from mnistlab.lab.options import RunOptions
from mnistlab.lab.sweep import HELD_OUT
from mnistlab.testing import run_cli

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")
runner = CliRunner()


def test_asha_stops_the_trial_that_trails_and_every_trial_is_tracked_once(runtime, tmp_path, made_store):
    # One trial at a time, in grid order: the lr 1e-4 trial reaches epoch 1 after both lr 0.05 trials recorded
    # theirs, so ASHA's cutoff there (their median) is known and far above what lr 1e-4 reaches in one epoch.
    # Batches of 32: 14 steps an epoch on the 450 images fitted, enough for lr 0.05 to learn in 3 epochs.
    spec, store = tmp_path / "best.json", made_store(tmp_path / "mlflow.db")
    grid = ["--param", "lr=0.05,0.0001", "--param", "epochs=3,1", "--param", "batch_size=32"]
    grid += ["--limit", "500", "--concurrent", "1"]
    done = runner.invoke(app, ["sweep", "cnn-fast", *grid, "--tracking-uri", store, "--out", str(spec), "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    trials = {(t["config"]["lr"], t["config"]["epochs"]): t for t in result["trials"]}
    assert list(trials) == [(0.05, 3), (0.05, 1), (0.0001, 3), (0.0001, 1)]  # grid order
    for key, t in trials.items():
        assert t["error"] is None and len(t["history"]) == t["epochs"] and t["history"][-1] == t["val_accuracy"]
        assert t["stopped"] == (key == (0.0001, 3)), key
    assert trials[0.0001, 3]["epochs"] == 1 and trials[0.05, 3]["epochs"] == 3
    assert trials[0.0001, 3]["val_accuracy"] < min(trials[0.05, 3]["history"][0], trials[0.05, 1]["history"][0])
    # Trials reuse their worker processes (Tune's reuse_actors: no process start and imports a trial), so nothing
    # a trial leaves behind (torch's global generator, threads, caches) may shape the next: the one-epoch trials,
    # each run after another in the same worker (lr 1e-4's after the one ASHA stopped), score as a fit here.
    d = split_for(*open_dataset("mnist"), RunOptions(limit=500, seed=42))
    for lr in (0.05, 0.0001):
        rows: list[dict] = []
        get_recipe("cnn-fast").build(42, 1).set_params(
            lr=lr, epochs=1, batch_size=32, target=1.0, validation_fraction=HELD_OUT, callback=rows.append
        ).fit(d.X_train, d.y_train)
        assert trials[lr, 1]["history"] == [rows[0]["val_accuracy"]], lr
    assert result["best"]["val_accuracy"] == max(t["val_accuracy"] for t in trials.values())
    assert result["best"]["config"] == {"lr": 0.05, "epochs": 3, "batch_size": 32}  # lr 1e-4 barely moves the weights
    saved = json.loads(spec.read_text())
    assert saved["recipe"] == "cnn-fast" and saved["params"] == result["best"]["config"]
    chosen_on = {
        "seeds": [42],
        "dataset": "mnist",
        "split": "official",
        "test_size": None,
        "limit": 500,
        "held_out": 0.1,
    }
    assert {k: saved[k] for k in chosen_on} == {k: result[k] for k in chosen_on} == chosen_on
    assert saved["data_sha256"] == result["data_sha256"] and result["versions"]["ray"] == ray.__version__

    # MLflow: the sweep's run holds the plan and the best; one nested run per trial, with its epochs as steps
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("mnistlab-sweep").experiment_id
    runs = client.search_runs([experiment])
    assert result["tracking_uri"] == store and len(runs) == 5
    parent = client.get_run(result["run_id"])
    assert (
        parent.info.status == "FINISHED" and parent.data.metrics["best_val_accuracy"] == result["best"]["val_accuracy"]
    )
    assert {k: parent.data.params[k] for k in ("recipe", "limit", "seeds", "spec", "best.lr", "best.epochs")} == {
        "recipe": "cnn-fast", "limit": "500", "seeds": "[42]", "spec": str(spec), "best.lr": "0.05", "best.epochs": "3",
    }  # fmt: skip
    assert parent.data.params["data_sha256"] == saved["data_sha256"] and "version.ray" in parent.data.params
    children = [r for r in runs if r.info.run_id != result["run_id"]]
    assert sorted(r.info.run_id for r in children) == sorted(t["run_id"] for t in trials.values())
    for run in children:
        t = next(t for t in trials.values() if t["run_id"] == run.info.run_id)
        assert run.data.tags["mlflow.parentRunId"] == result["run_id"] and run.info.status == "FINISHED"
        shared = {k: v for k, v in parent.data.params.items() if k.startswith("version.") or k == "data_sha256"}
        assert run.data.params == {**{k: str(v) for k, v in t["config"].items()}, "seed": "42", **shared}
        steps = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted((m.step, m.value) for m in steps) == list(enumerate(t["history"], start=1))
        assert run.data.tags["mnistlab_stopped"] == str(t["stopped"]) and run.data.metrics["epochs"] == t["epochs"]

    # compare takes the saved configuration like a recipe name; `runs` lists compare's runs, not the sweep's
    compared = runner.invoke(
        app,
        ["compare", str(spec), "--limit", "500", "--cv", "0", "--n-jobs", "1", "--out", str(tmp_path / "r")]
        + ["--tracking-uri", store, "--json"],
    )
    assert compared.exit_code == 0, compared.output
    (row,) = json.loads(compared.stdout)["results"]
    assert row["model"] == "cnn-fast-tuned" and row["test_accuracy_mean"] > 0.5
    listed = json.loads(runner.invoke(app, ["runs", "--tracking-uri", store, "--json"]).stdout)
    assert [r["model"] for r in listed] == ["cnn-fast-tuned"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--param", "nope=1,2"], "cnn-fast has no parameter 'nope'"),
        (["--param", "lr"], "--param 'lr' is not NAME=V1,V2"),
        (["--param", "lr=0.1", "--samples", "0"], "--samples must be from 1 to 1000 trials, got 0"),
        (["--param", "lr=0.1", "--seeds", "2", "--seed", "4294967295"], "--seeds 2 from seed 4294967295 runs past"),
        (["--param", "lr=0.1", "--limit", "60001"], "--limit must be between 20 and 60000"),
        (["--param", "lr=0.1", "--concurrent", "0"], "--concurrent must be a whole number from 1 to 1000, got 0"),
        (["--param", "epochs=abc"], "--param epochs must be whole numbers of at least 1, got 'abc'"),
        (["--param", "epochs=2,1.5"], "--param epochs must be whole numbers of at least 1, got 1.5"),
        (["--param", "lr=0.1", "--test-size", "0.2"], "--test-size applies to the random split only"),
        (["--param", "lr=0.1", "--split", "random", "--test-size", "5"], "--test-size must be a fraction"),
        # Each trial sets these itself: swept, every trial ran alike and the spec saved a value never measured.
        (["--param", "target=0.2,0.99"], "--param target is set by each trial itself"),
        (["--param", "validation_fraction=0.1,0.3"], "--param validation_fraction is set by each trial itself"),
        (["--param", "random_state=1,2"], "--param random_state is set by each trial's seed; use --seed and --seeds"),
        # A trial of 3 members reported each member's epochs: ASHA ended it after the first member's, "completed".
        (["--param", "n_members=1,3"], "--param n_members=3 would score an ensemble of 3 nets as its first net"),
    ],
)
def test_a_bad_sweep_is_one_sentence_before_any_trial(tmp_path, args, says):
    spec = tmp_path / "new" / "b.json"
    done = runner.invoke(app, ["sweep", "cnn-fast", "--limit", "500", *args, "--out", str(spec)])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and says in lines[0], done.stderr
    assert not spec.parent.exists()  # checked writable, not made, before the settings were known to run


def test_a_limit_too_small_for_a_held_out_part_of_every_class_is_one_sentence_before_any_trial(tmp_path):
    """--limit 20 leaves 2 held-out images for 10 classes: every trial failed, after Ray had started, as
    "The trial {'logreg__C': 1} failed (ValueError: The test_size = 2 should be greater or equal to the number of
    classes = 10); check the values", of values that were fine."""
    spec = tmp_path / "b.json"
    done = runner.invoke(app, ["sweep", "logreg", "--param", "logreg__C=1", "--limit", "20", "--out", str(spec)])
    assert done.exit_code == 2, done.output
    assert done.stderr.strip().splitlines() == [
        "Error: --limit 20 leaves 2 training images for the held-out 10% each trial is scored on, fewer than the "
        "10 classes; give --limit 91 or more."
    ]
    assert not spec.exists()


@pytest.mark.parametrize(
    ("recipe", "param", "says"),
    [
        ("logreg", "logreg__C=1,-1", "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]"),
        ("knn", "knn__n_neighbors=abc,1", "Got 'abc' instead"),
        ("cnn-fast", "dropout=0.2,2", "dropout"),
    ],
)
def test_a_value_the_recipe_refuses_is_one_sentence_before_the_data_loads(tmp_path, recipe, param, says):
    """scikit-learn checks a value only in fit: a sweep with one bad value started Ray, ran every trial of the
    grid, then refused it and kept nothing."""
    spec, store = tmp_path / "b.json", tmp_path / "s.db"
    args = ["sweep", recipe, "--param", param, "--limit", "500", "--cluster", "127.0.0.1:9"]
    done = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{store}", "--out", str(spec)])
    assert done.exit_code == 2, done.output
    assert "loading" not in done.output and "Traceback" not in done.output
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: --param {param.partition('=')[0]}=") and says in line, line
    assert not spec.exists() and not store.exists()


def test_a_param_that_replaces_a_step_is_one_sentence_before_any_trial(tmp_path):
    spec = tmp_path / "b.json"
    done = runner.invoke(app, ["sweep", "logreg", "--limit", "500", "--param", "logreg=x,y", "--out", str(spec)])
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1, done.stderr
    assert "--param sets a step of logreg ('logreg') to \"x\", which is not an estimator" in lines[0]
    assert "loading" not in done.output and not spec.exists()  # before the data, and before Ray
    done = runner.invoke(
        app, ["sweep", "logreg", "--limit", "500", "--param", "logreg=passthrough", "--out", str(spec)]
    )
    assert (
        done.exit_code == 2
        and "--param skips the last step of logreg ('logreg'), so that nothing would predict" in (done.stderr)
    )


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"logreg__C": -1}, "The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]"),
        ({"logreg__C": "abc"}, "Got 'abc' instead"),
        ({"nope": 1}, "sets a parameter logreg does not take"),
    ],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_spec_file_with_a_bad_value_is_one_sentence_before_the_data_loads(tmp_path, params, says, command):
    """scikit-learn checks a value only in fit: the spec file's values are checked before anything is read."""
    spec = tmp_path / "tuned.json"
    spec.write_text(json.dumps({"recipe": "logreg", "params": params}))
    done = runner.invoke(app, [command, str(spec), "--limit", "500", "--cv", "0", "--out", str(tmp_path / "out")])
    assert done.exit_code == 2, done.output
    assert "loading" not in done.output and "Traceback" not in done.output
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: The spec file {spec} sets a ") and says in line, line
    assert not (tmp_path / "out").exists()


def test_a_store_that_cannot_be_opened_is_one_sentence_before_any_trial(tmp_path):
    (tmp_path / "file").write_text("")
    store, spec = f"sqlite:///{tmp_path / 'file' / 'x.db'}", tmp_path / "b.json"
    # An unreachable cluster: the store's error instead shows that it was checked before Ray was joined
    args = ["sweep", "cnn-fast", "--param", "dropout=0.2", "--limit", "500", "--tracking-uri", store]
    args += ["--cluster", "127.0.0.1:9"]
    done = runner.invoke(app, [*args, "--out", str(spec), "--json"])
    assert done.exit_code == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: Cannot open the tracking store {store} (") and line.endswith("MLFLOW_TRACKING_URI.")
    assert not spec.exists()


def test_a_failed_trial_is_one_sentence_without_tunes_traceback(runtime, tmp_path, made_store):
    spec = tmp_path / "b.json"
    # 100000 neighbours is a value KNeighborsClassifier takes, and fails in the trial: more than the images fitted
    args = ["sweep", "knn", "--param", "knn__n_neighbors=100000,1", "--limit", "200", "--out", str(spec)]
    done = run_cli([*args, "--tracking-uri", made_store(), "--cluster", runtime])
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: The trial {'knn__n_neighbors': 100000} failed")
    assert not spec.exists()


def test_a_command_line_naming_a_folder_not_in_utf8_joins_the_cluster(runtime, tmp_path):
    """`sweep --dataset caf\\xe9/r\\xfe --out caf\\xe9/best.json` (any --cluster run naming such a path): Ray
    records the driver's command line (/proc's) as UTF-8 text, and joining ended in "Cannot join the Ray cluster
    ... (UnicodeEncodeError ...); check --cluster", blaming a cluster that was fine."""
    odd = os.fsdecode(bytes(tmp_path) + b"/caf\xe9/best.json")
    code = (
        "import sys\nfrom mnistlab.lab.cluster import connect\nwith connect(sys.argv[1]) as got:\n    print(got['CPU'])"
    )
    done = subprocess.run([sys.executable, "-c", code, runtime, "--out", odd], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout) == 2.0  # the runtime's two CPUs


def test_ctrl_c_stops_a_sweep_and_writes_nothing(runtime, tmp_path, made_store):
    # Tune's own SIGINT handler ended the trials early and returned as if the sweep were done: exit 0, and a
    # best.json picked from the trials that had run.
    spec, store = tmp_path / "b.json", made_store()
    args = ["sweep", "cnn-fast", "--param", "lr=0.05,0.1", "--param", "epochs=400", "--limit", "500"]
    args += ["--concurrent", "1", "--out", str(spec), "--tracking-uri", store, "--cluster", runtime]
    sweep = subprocess.Popen(
        [sys.executable, "-m", "mnistlab.cli", *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not ignored, as a background job's is
    )
    try:
        assert sweep.stderr is not None
        for line in sweep.stderr:  # each step's line comes when it is done: the trials start after this one
            if "opening the tracking store" in line:
                break
        time.sleep(8)  # into the first trial's 400 epochs (about 15 s of them)
        sweep.send_signal(signal.SIGINT)
        try:  # what it says meanwhile is read: a stderr pipe left full would hold the sweep up
            _, said = sweep.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            sweep.kill()
            pytest.fail(f"the sweep went on 60 s after Ctrl+C; it said: {sweep.communicate()[1][-3000:]}")
        assert sweep.returncode != 0, said
    finally:
        sweep.kill()
    assert not spec.exists()
    runs = json.loads(runner.invoke(app, ["runs", "--tracking-uri", store, "--json"]).stdout)
    assert runs == []


def test_sigterm_stops_a_sweep_with_the_shells_code_and_no_crash_report(runtime, tmp_path, made_store):
    # ray.init put its own SIGTERM handlers in place of the command's: a sweep sent SIGTERM (a job scheduler, a
    # container stopping) printed Ray's "*** SIGTERM received ..." crash report and aborted (SIGABRT, core dump).
    spec, store, scratch = tmp_path / "b.json", made_store(), tmp_path / "scratch"
    scratch.mkdir()
    args = ["sweep", "cnn-fast", "--param", "lr=0.05,0.1", "--param", "epochs=400", "--limit", "500"]
    args += ["--concurrent", "1", "--out", str(spec), "--tracking-uri", store, "--cluster", runtime]
    env = {**os.environ, "TMPDIR": str(scratch)}  # where Tune's storage appears once the sweep joined Ray
    sweep = subprocess.Popen([sys.executable, "-m", "mnistlab.cli", *args], stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not list(scratch.glob("*/sweep")):  # Tune started: ray.init is done
            assert time.monotonic() < deadline and sweep.poll() is None, "the sweep did not start its trials"
            time.sleep(0.1)
        sweep.send_signal(signal.SIGTERM)
        _, stderr = sweep.communicate(timeout=60)
    finally:
        sweep.kill()
    assert sweep.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert b"SIGTERM received" not in stderr and b"Traceback" not in stderr, stderr.decode()
    assert not spec.exists()


def test_values_given_twice_are_one_configuration():
    from mnistlab.lab.sweep import parse_params

    assert parse_params(["knn__n_neighbors=1,3,1", "weights=uniform"]) == {
        "knn__n_neighbors": [1, 3],
        "weights": ["uniform"],
    }


@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "Infinity"])
def test_a_value_past_floats_range_is_refused_before_any_trial(value):
    # Read as inf or nan, it was swept and written into best.json as Infinity or NaN, which JSON does not hold.
    from mnistlab.lab.sweep import parse_params

    with pytest.raises(ParameterError, match=rf"^param value '{value}' is not a finite number; give one"):
        parse_params([f"logreg__C=0.1,{value}"])


def test_with_seeds_each_configuration_runs_per_seed_and_the_best_mean_wins(runtime, tmp_path):
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
    # no tracking_uri: the store compare uses by default, the trials nested under the sweep's run
    from mnistlab.lab.tracking import SWEEP_EXPERIMENT, Tracker, default_tracking_uri

    tracker = Tracker(None, SWEEP_EXPERIMENT)
    assert result["tracking_uri"] == tracker.uri == default_tracking_uri()
    nested = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result['run_id']}'"
    )
    assert sorted(r.info.run_id for r in nested) == sorted(t["run_id"] for t in trials)


def test_sweep_takes_test_size_as_train_and_compare_do_and_records_it(runtime, tmp_path, made_store):
    # sweep had no --test-size: a random split's test set was the default size, whatever compare was to use.
    spec, store = tmp_path / "best.json", made_store(tmp_path / "mlflow.db")
    args = ["sweep", "logreg", "--param", "logreg__C=1", "--limit", "100", "--split", "random", "--test-size", "12000"]
    done = runner.invoke(app, [*args, "--tracking-uri", store, "--out", str(spec), "--json"])
    assert done.exit_code == 0, done.output
    result, saved = json.loads(done.stdout), json.loads(spec.read_text())
    assert result["test_size"] == saved["test_size"] == 12000  # a whole number is a count, as for train
    assert (saved["split"], saved["limit"]) == ("random", 100)
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=store).get_run(result["run_id"]).data.params["test_size"] == "12000"


def test_random_draws_are_seeded():
    from mnistlab.lab.sweep import _configs

    params = {"a": [1, 2, 3, 4], "b": [5, 6]}
    draws = [_configs(params, 3, seed) for seed in (0, 0, 1)]
    assert draws[0] == draws[1] and len(draws[0]) == 3 and len({str(c) for c in draws[0]}) == 3
    assert _configs(params, 20, 0) == _configs(params, None, 0)  # more draws than points: the whole grid


def test_a_sweep_records_the_test_size_and_the_folder_its_trials_were_scored_on(tmp_path, made_store):
    """The spec file and the sweep's run held the split and limit but not test_size (a random split of another
    size cuts other training images, so other held-out parts), named a folder dataset by its last name alone and
    left out the held-out share. Recorded as the sweep does once its trials are back (no Ray needed here)."""

    from mnistlab.data.load import load_mnist
    from mnistlab.lab.sweep import _chosen_on, _record
    from mnistlab.lab.tracking import SWEEP_EXPERIMENT, Tracker
    from mnistlab.testing import write_idx_folder

    digits = load_mnist("digits")
    n = digits.details["n_train"]
    folder = write_idx_folder(
        tmp_path / "data" / "my-digits",
        {
            "train_images": digits.images[:n],
            "train_labels": digits.target[:n],
            "test_images": digits.images[n:],
            "test_labels": digits.target[n:],
        },
        gzip=False,
    )
    options = RunOptions(split="random", test_size=0.25, seed=7, limit=100, n_jobs=1)
    name, bunch = open_dataset(str(folder))
    chosen = _chosen_on(split_for(name, bunch, options), options, [7, 8])
    assert chosen == {
        "seeds": [7, 8], "dataset": "my-digits", "data_sha256": bunch.details["data_sha256"],
        "data_dir": str(folder), "split": "random", "test_size": 0.25, "limit": 100, "held_out": HELD_OUT,
    }  # fmt: skip
    config = {"knn__n_neighbors": 3}
    spec = {"recipe": "knn", "name": "knn-tuned", "params": config, "val_accuracy": 0.9, **chosen}
    trial = {"config": config, "seed": 7, "history": [0.9], "epochs": 1, "stopped": False, "error": None}
    plan = {"grid": {"knn__n_neighbors": [3]}, "samples": None, "dataset": name, "max_concurrent": None}
    uri = made_store(tmp_path / "mlflow.db")
    tracker = Tracker(uri, SWEEP_EXPERIMENT)
    run_id = _record(tracker, spec, plan, [trial], {"config": config, "val_accuracy": 0.9}, str(tmp_path / "b.json"))
    params = tracker.client.get_run(run_id).data.params
    assert (params["test_size"], params["split"], params["limit"], params["seeds"]) == (
        "0.25",
        "random",
        "100",
        "[7, 8]",
    )
    assert params["data_dir"] == str(folder) and params["data_sha256"] == bunch.details["data_sha256"]
    assert params["held_out"] == "0.1" and params["version.scikit-learn"] and params["version.ray"]
    # Each trial's run names its data and package versions too (it held its configuration and seed alone): a
    # search of trials across sweeps finds them by their data, as it finds compare's fits.
    trial_params = tracker.client.get_run(trial["run_id"]).data.params
    versions = {k: v for k, v in params.items() if k.startswith("version.")}
    assert trial_params == {"knn__n_neighbors": "3", "seed": "7", **versions} | {
        k: params[k] for k in ("data_sha256", "data_dir")
    }


def _limited_memory() -> None:  # in the child: at most 3 GiB of address space, so a runaway grid fails, not the host
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ([], "The grid of --param values has 100,000,000 points, over 1000; use --samples N."),
        (["--samples", "2"], "The grid of --param values has 100,000,000 points, over 1,000,000 to draw --samples"),
    ],
)
def test_a_huge_grid_is_one_sentence_before_its_points_are_made(tmp_path, extra, says):
    """Every point of the grid was made before its size was checked: four parameters of 100 values each (10**8
    points), with or without --samples, ended in a MemoryError traceback (without a memory limit, the machine's
    memory) instead of the sentence."""
    values = ",".join(str(v) for v in range(1, 101))
    names = ("logreg__C", "logreg__tol", "logreg__max_iter", "logreg__intercept_scaling")
    args = [x for name in names for x in ("--param", f"{name}={values}")]
    spec = tmp_path / "b.json"
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab.cli", "sweep", "logreg", *args, *extra, "--limit", "200", "--out", str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_memory,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], done.stderr[-2000:]
    assert not spec.exists()


def test_a_drawn_sample_is_the_same_points_as_before_the_grid_was_counted():
    """The points --samples draws from a grid are those the whole grid's permutation picked: a sweep run again
    draws the configurations it drew before."""
    import itertools

    import numpy as np

    from mnistlab.lab.sweep import _configs

    params = {"a": [1, 2, 3, 4, 5], "b": ["x", "y", "z"], "c": [0.1, 0.2], "d": [True, False, None, 7]}
    grid = [dict(zip(params, values)) for values in itertools.product(*params.values())]
    for seed in (0, 1, 42):
        picked = np.random.default_rng(seed).permutation(len(grid))[:7]
        assert _configs(params, 7, seed) == [grid[i] for i in sorted(picked)]
    assert _configs(params, None, 0) == grid


def test_a_pipeline_steps_seed_is_not_swept_over_the_trials_seeds(tmp_path):
    """--param logreg__random_state=1,2 replaced each trial's seed (the trial recorded seed 42 for a model seeded
    1), and the spec then gave every seed of a compare the same random_state."""
    spec = tmp_path / "b.json"
    args = ["sweep", "logreg", "--param", "logreg__random_state=1,2", "--limit", "200", "--out", str(spec)]
    done = runner.invoke(app, args)
    assert done.exit_code == 2, done.output
    assert done.stderr.strip().splitlines() == [
        "Error: --param logreg__random_state is set by each trial's seed; use --seed and --seeds to sweep seeds."
    ]
    assert not spec.exists()


def test_the_ensemble_recipe_is_not_scored_as_its_first_net(tmp_path):
    """A trial reports one net's held-out accuracy per epoch: an ensemble's trial reported each member's epochs in
    turn, and ASHA ended it at the recipe's epochs, after its first member, as "completed"."""
    spec = tmp_path / "b.json"
    done = runner.invoke(app, ["sweep", "ensemble", "--param", "lr=0.1,0.2", "--limit", "500", "--out", str(spec)])
    assert done.exit_code == 2, done.output
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: ensemble averages 10 nets, which a trial would score as its first net;"), line
    assert not spec.exists()


def test_a_spec_file_that_cannot_be_written_after_the_trials_is_one_sentence(runtime, tmp_path, made_store):
    """The best configuration was written unguarded once the trials were done: a place that could not take it
    then (a full disk; here a folder made in its place meanwhile) was a traceback (IsADirectoryError)."""
    from mnistlab.lab.sweep import sweep

    spec = tmp_path / "b.json"

    def progress(step: str) -> None:
        if step.startswith("running"):  # checked writable before; something takes its place while trials run
            spec.mkdir()

    with pytest.raises(ParameterError) as caught:
        sweep(
            "knn",
            {"knn__n_neighbors": [1, 3]},
            RunOptions(limit=200),
            cluster=runtime,
            tracking_uri=made_store(),
            out=spec,
            progress=progress,
        )
    assert (
        caught.value.named("--out")
        == f"Cannot write --out {spec} (Is a directory); free space there, or choose another file."
    )
    assert spec.is_dir() and list(spec.iterdir()) == []


def test_a_cnn_that_gets_every_held_out_image_right_is_not_called_stopped_early(runtime, tmp_path, capsys, made_store):
    """A CNN trial ends once its held-out accuracy reaches 1.0 (the loop's target): it was labelled "stopped
    early", as if ASHA had stopped it, and lost ties for the best to trials that ran on. Two classes no net can
    mix up (ink in the top half, ink in the bottom half)."""
    from mnistlab.cli.sweep import _print
    from mnistlab.testing import write_idx_folder

    def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 2
        images = np.zeros((n, 28, 28), np.uint8)
        images[labels == 0, 4:12, 6:22] = 255
        images[labels == 1, 16:24, 6:22] = 255
        return images, labels

    (train, train_labels), (test, test_labels) = halves(400), halves(40)
    folder = write_idx_folder(
        tmp_path / "halves",
        {"train_images": train, "train_labels": train_labels, "test_images": test, "test_labels": test_labels},
    )
    args = ["sweep", "cnn-fast", "--dataset", str(folder), "--param", "epochs=3", "--param", "lr=0.05"]
    args += ["--tracking-uri", made_store(tmp_path / "mlflow.db"), "--out", str(tmp_path / "best.json")]
    done = runner.invoke(app, [*args, "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    (trial,) = result["trials"]
    assert trial["val_accuracy"] == 1.0 and trial["epochs"] < 3 and trial["stopped"] is False
    _print(result, "cnn-fast", ["epochs", "lr"])  # the table `mnistlab sweep` prints without --json
    table = capsys.readouterr().out
    assert "held-out 100%" in table and "stopped early" not in table, table


def test_the_compare_command_a_sweep_suggests_works_pasted_into_a_shell(tmp_path, made_store):
    """`sweep ... --out "my best #1.json"` ended with "`mnistlab compare .../my best #1.json logreg` tests it": pasted
    into a shell, the space split the path and the # made the rest a comment."""
    import shlex

    spec = tmp_path / "my best #1.json"
    args = ["sweep", "logreg", "--param", "logreg__C=1", "--limit", "200", "--out", str(spec)]
    done = runner.invoke(app, [*args, "--tracking-uri", made_store(tmp_path / "s.db")])
    assert done.exit_code == 0, done.output
    (line,) = [line for line in done.stdout.splitlines() if line.endswith(" tests it")]
    command = line.split("`")[1]
    assert shlex.split(command) == ["mnistlab", "compare", str(spec), "logreg"], line


def test_the_compare_command_a_sweep_suggests_tests_on_the_data_it_was_tuned_on(tmp_path, made_store):
    """`sweep knn --dataset digits ...` ended with "`mnistlab compare best.json knn` tests it": run as shown, that
    fitted and tested the configuration chosen on digits on MNIST instead."""
    import shlex

    spec, store = tmp_path / "best.json", made_store(tmp_path / "s.db")
    args = ["sweep", "knn", "--param", "knn__n_neighbors=1,3", "--dataset", "digits", "--out", str(spec)]
    done = runner.invoke(app, [*args, "--tracking-uri", store])
    assert done.exit_code == 0, done.output
    (line,) = [line for line in done.stdout.splitlines() if line.endswith(" tests it")]
    command = shlex.split(line.split("`")[1])
    assert command == ["mnistlab", "compare", str(spec), "knn", "--dataset", "digits"], line
    extra = ["--json", "--tracking-uri", store, "--out", str(tmp_path / "report"), "--n-jobs", "1"]
    compared = runner.invoke(app, [*command[1:], *extra])
    assert compared.exit_code == 0, compared.output
    assert {row["dataset"] for row in json.loads(compared.stdout)["results"]} == {"digits"}
