"""The research bench end to end: your classifiers through `compare`, tracked in a real MLflow store, reused, refused.

One SQLite tracking store (MLflow's import and migrations take seconds) serves the
whole module; the tests after the first build on the runs it recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnistlab.cli import app
from mnistlab.data.cache import cache_root
from mnistlab.data.idx import write_idx
from mnistlab.data.load import load_mnist
from mnistlab.errors import ParameterError, RecipeError
from mnistlab.lab.compare import compare
from mnistlab.lab.specs import recorded_name, resolve_spec
from mnistlab.lab.tracking import Tracker
from mnistlab.models.cnn.onnx import OnnxPredictor
from mnistlab.models.files import default_model_dir, load_model
from mnistlab.testing import write_idx_folder

runner = CliRunner()
RESULT_KEYS = {"model", "dataset", "seeds", "test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci95", "reused"}
COMPARISON_KEYS = {"a", "b", "dataset", "p_value", "p_holm", "verdict"}
VERDICTS = {"better", "worse", "not distinguishable at 5%"}

USER_FILE = '''
"""A researcher's models."""
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

CONSTANT = 3


def build(seed):
    """Standardised pixels into logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=100, random_state=seed))


def net():
    """A one-convolution net, trained by mnistlab's loop."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 49, 10))


def not_a_classifier(seed, n_jobs):
    return "hello"


def wrong_net():
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(784, 3))


class _Fails(LogisticRegression):
    def fit(self, X, y):
        raise RuntimeError("boom in fit")


class _TooFew(LogisticRegression):
    def predict(self, X):
        return super().predict(X)[:3]


def fails_to_fit(seed):
    return _Fails()


def predicts_too_few(seed):
    return _TooFew(max_iter=20)


class _Blanks(LogisticRegression):
    def predict(self, X):
        X[:] = 0  # changes the test images every model of the comparison shares
        return super().predict(X)


class _Words(LogisticRegression):
    def predict(self, X):
        return super().predict(X).astype(str)


def blanks_its_input(seed):
    return _Blanks(max_iter=20)


def predicts_words(seed):
    return _Words(max_iter=20)


class Own(LogisticRegression):
    """A class of the user's file: outside the safe format's allow-list."""


def own_class(seed):
    return Own(max_iter=20)
'''
SETTINGS = {"limit": 1000, "n_jobs": 1, "cv": 0}
SETTING_FLAGS = ["--limit", "1000", "--n-jobs", "1", "--cv", "0"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory, mnist_full, _empty_store):
    """A user file, a store (a copy of a new one: no migrations again), and one recorded CLI comparison of four
    models (file, module:callable, torch, recipe)."""
    root = tmp_path_factory.mktemp("bench")
    (root / "mine.py").write_text(USER_FILE)
    uri = f"sqlite:///{root / 'store' / 'mlflow.db'}"
    (root / "store").mkdir()
    shutil.copyfile(_empty_store, root / "store" / "mlflow.db")
    specs = ["knn-deskew", f"{root / 'mine.py'}:build", "sklearn.naive_bayes:GaussianNB", f"{root / 'mine.py'}:net"]
    # The user's own full-size model, which a small comparison must leave alone.
    default_card = default_model_dir("knn-deskew") / "model.json"
    default_card.parent.mkdir(parents=True, exist_ok=True)
    default_card.write_text('{"format_version": 2, "note": "the user\'s full-size model"}')
    before = default_card.read_text()
    args = ["compare", *specs, *SETTING_FLAGS, "--out", str(root / "report"), "--tracking-uri", uri, "--json"]
    result = runner.invoke(app, [*args, "--baseline", "knn-deskew"])
    assert result.exit_code == 0, result.output
    after = default_card.read_text()
    return {
        "root": root,
        "uri": uri,
        "specs": specs,
        "summary": json.loads(result.stdout),
        "default_card": (before, after),
    }


def _run_count(uri: str) -> int:
    return len(Tracker(uri).runs())


def test_your_classifiers_run_through_compare_with_statistics(bench):
    summary = bench["summary"]
    results = {r["model"]: r for r in summary["results"]}
    assert list(results) == ["knn-deskew", "mine.py:build", "sklearn.naive_bayes:GaussianNB", "mine.py:net"]
    for r in results.values():
        assert RESULT_KEYS <= r.keys() and r["dataset"] == "mnist" and r["seeds"] == [42] and r["reused"] == 0
        low, high = r["test_accuracy_ci95"]
        assert low < r["test_accuracy_mean"] < high and r["n_train"] == 1000 and r["n_test"] == 10_000
    assert results["knn-deskew"]["test_accuracy_mean"] > 0.9 and results["mine.py:net"]["test_accuracy_mean"] > 0.3
    comparisons = summary["comparisons"]
    assert comparisons and all(COMPARISON_KEYS <= c.keys() and c["verdict"] in VERDICTS for c in comparisons)
    assert all(0 <= c["p_value"] <= c["p_holm"] <= 1 for c in comparisons)
    best = max(results.values(), key=lambda r: r["test_accuracy_mean"])["model"]
    assert {c["a"] for c in comparisons if c["b"] == best} == set(results) - {best}
    page = Path(summary["report"]).read_text()
    for ref in re.findall(r'src="([^"]*)"', page):
        assert (Path(summary["report"]).parent / ref).is_file(), ref
    assert "Every pair" in page and "mine.py:net" in page and "<script" not in page
    # compare saved into its own folder: the user's default model folders are untouched.
    assert bench["default_card"][0] == bench["default_card"][1]


def test_a_torch_module_is_exported_to_onnx_beside_its_weights(bench, mnist_full):
    run = next(r for r in Tracker(bench["uri"]).runs() if r["model"] == "mine.py:net")
    folder = Path(run["model_dir"])  # mine.py-net and a digest of mine.py:net (lab.folders)
    assert folder.parent.parent == bench["root"] / "report" / "models" / "mnist" and folder.name == "seed-42"
    assert folder.parent.name.startswith("mine.py-net-"), folder
    card = json.loads((folder / "model.json").read_text())
    assert card["params"]["module"].startswith("Sequential(") and "onnx_sha256" in card
    recorded = Tracker(bench["uri"]).predictions(run["run_id"])
    X_test = mnist_full.data[60_000:]
    assert np.mean(OnnxPredictor(folder / "model.onnx").predict(X_test) == recorded) > 0.999
    with pytest.raises(Exception, match="your own torch module"):
        load_model(folder)


def test_runs_land_in_the_store_and_runs_lists_them(bench):
    listed = json.loads(runner.invoke(app, ["runs", "--tracking-uri", bench["uri"], "--json"]).stdout)
    assert len(listed) >= 4
    assert all({"run_id", "model", "dataset", "seed", "test_accuracy"} <= r.keys() for r in listed)
    only = runner.invoke(app, ["runs", "--tracking-uri", bench["uri"], "--recipe", "knn-deskew", "--json"])
    assert {r["model"] for r in json.loads(only.stdout)} == {"knn-deskew"}
    none = runner.invoke(app, ["runs", "--tracking-uri", bench["uri"], "--dataset", "fashion-mnist", "--json"])
    assert json.loads(none.stdout) == []
    # What MLflow itself holds: params, per-run metrics and the artifacts.
    client = Tracker(bench["uri"]).client
    run = client.get_run(json.loads(only.stdout)[0]["run_id"])
    assert run.data.params["seed"] == "42" and run.data.params["knn__n_neighbors"] == "4"
    assert {"test_accuracy", "fit_seconds", "predict_seconds"} <= run.data.metrics.keys()
    assert run.data.tags["mnistlab_data_sha256"] and run.data.params["version.scikit-learn"]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.json", "confusion.json", "report.json", "predictions.npy"} <= names
    human = runner.invoke(app, ["runs", "--tracking-uri", bench["uri"]])
    assert human.exit_code == 0 and "knn-deskew" in human.stdout and "mlflow ui" in human.stdout


def test_runs_finds_a_users_model_by_the_spec_compare_was_given(bench):
    """``runs --recipe path/mine.py:build``, the spec as compare was given it, listed nothing: the runs are
    recorded as ``mine.py:build``."""
    for spec in (f"{bench['root'] / 'mine.py'}:build", "mine.py:build"):
        only = runner.invoke(app, ["runs", "--tracking-uri", bench["uri"], "--recipe", spec, "--json"])
        assert only.exit_code == 0, only.output
        assert {r["model"] for r in json.loads(only.stdout)} == {"mine.py:build"}, spec


def test_a_spec_file_is_recorded_under_its_own_name(tmp_path):
    spec = tmp_path / "best.json"
    spec.write_text(json.dumps({"recipe": "logreg", "params": {"logreg__C": 0.5}, "name": "logreg-c05"}))
    assert recorded_name(str(spec)) == "logreg-c05" == resolve_spec(str(spec)).name
    assert recorded_name("knn-deskew") == "knn-deskew" and recorded_name("sklearn.svm:SVC") == "sklearn.svm:SVC"


def test_a_second_compare_reuses_every_recorded_fit(bench):
    n_runs = _run_count(bench["uri"])
    steps: list[str] = []
    again = compare(
        bench["specs"], tracking_uri=bench["uri"], out_dir=bench["root"] / "again", progress=steps.append, **SETTINGS
    )
    assert all(r["reused"] == 1 for r in again["results"])
    assert not [s for s in steps if "fitting on" in s], steps  # nothing was fitted
    assert _run_count(bench["uri"]) == n_runs  # and nothing recorded twice
    first = {r["model"]: r["test_accuracy_mean"] for r in bench["summary"]["results"]}
    assert {r["model"]: r["test_accuracy_mean"] for r in again["results"]} == first


def _comparisons(uri: str) -> list:
    """The comparisons' parent runs in a store, oldest first."""
    tracker = Tracker(uri)
    return tracker.client.search_runs(
        [tracker.experiment_id], "tags.mnistlab_kind = 'comparison'", order_by=["attributes.start_time ASC"]
    )


def test_each_comparison_is_a_parent_run_of_the_fits_it_made(bench):
    tracker, summary = Tracker(bench["uri"]), bench["summary"]
    first = _comparisons(bench["uri"])[0]  # the fixture's comparison; later tests add theirs
    assert first.info.status == "FINISHED" and first.data.tags["mnistlab_datasets"] == "mnist"
    assert first.data.tags["mnistlab_models"] == ", ".join(r["model"] for r in summary["results"])
    fits = {run_id for r in summary["results"] for run_id in r["run_ids"]}
    nested = tracker.client.search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{first.info.run_id}'")
    assert {run.info.run_id for run in nested} == fits and len(fits) == 4
    accuracy = {r["model"]: r["test_accuracy_mean"] for r in summary["results"]}
    assert first.data.metrics["test_accuracy/mine.py:build/mnist"] == accuracy["mine.py:build"]
    recorded = json.loads(tracker.artifact(first.info.run_id, "comparison.json"))
    assert {r["run_id"] for r in recorded["runs"]} == fits and recorded["comparisons"] == summary["comparisons"]
    assert first.info.run_id not in {r["run_id"] for r in tracker.runs()}  # `mnistlab runs` lists fits only


def test_a_comparison_that_reuses_its_fits_lists_them_and_one_that_fails_is_marked_failed(bench, tmp_path, made_store):
    again = compare(["knn-deskew"], tracking_uri=bench["uri"], out_dir=tmp_path / "again", **SETTINGS)
    last = _comparisons(bench["uri"])[-1]
    recorded = json.loads(Tracker(bench["uri"]).artifact(last.info.run_id, "comparison.json"))
    assert recorded["runs"] == [
        {k: again["runs"][0][k] for k in ("run_id", "model", "dataset", "seed")} | {"reused": True}
    ]
    uri = made_store(tmp_path / "fresh.db")
    failing = ["compare", f"{bench['root'] / 'mine.py'}:fails_to_fit", *SETTING_FLAGS, "--tracking-uri", uri]
    assert runner.invoke(app, [*failing, "--out", str(tmp_path / "r")]).exit_code == 2
    assert [run.info.status for run in _comparisons(uri)] == ["FAILED"]


def test_the_human_output_shows_the_table_and_where_things_are(bench):
    args = ["compare", "knn-deskew", *SETTING_FLAGS, "--tracking-uri", bench["uri"], "--out", str(bench["root"] / "h")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "knn-deskew" in result.stdout and "acc %" in result.stdout and "1/1" in result.stdout  # reused
    assert "report:" in result.stdout and "mlflow ui" in result.stdout
    assert "reusing recorded run" in result.output  # the step lines on stderr


def test_retrain_fits_again(bench):
    n_runs = _run_count(bench["uri"])
    steps: list[str] = []
    spec = "sklearn.naive_bayes:GaussianNB"
    out = compare(
        [spec], tracking_uri=bench["uri"], out_dir=bench["root"] / "re", retrain=True, progress=steps.append, **SETTINGS
    )
    assert out["results"][0]["reused"] == 0 and any("fitting on" in s for s in steps)
    assert _run_count(bench["uri"]) == n_runs + 1


def test_a_tampered_model_directory_is_not_reused(bench):
    folder = bench["root"] / "report" / "models" / "mnist" / "knn-deskew" / "seed-42"
    weights = folder / "model.skops"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    (built,) = folder.parent.parent.glob("mine.py-build-*")  # a digest of mine.py:build beside its slug
    card = built / "seed-42" / "model.json"
    card.write_text(card.read_text().replace('"limit": 1000', '"limit": 999'))
    n_runs = _run_count(bench["uri"])
    steps: list[str] = []
    specs = ["knn-deskew", f"{bench['root'] / 'mine.py'}:build"]
    out = compare(specs, tracking_uri=bench["uri"], out_dir=bench["root"] / "t", progress=steps.append, **SETTINGS)
    assert [r["reused"] for r in out["results"]] == [0, 0]
    assert len([s for s in steps if "not reused" in s]) == 2 and _run_count(bench["uri"]) == n_runs + 2
    assert not [s for s in steps if ".;" in s]  # each reason a clause before "; fitting again"


@pytest.mark.parametrize(("damage", "seed"), [("[]", 7), ('{"test_accuracy": "all of them"}', 8)])
def test_a_run_whose_report_was_damaged_is_not_reused(bench, damage, seed):
    """A run's report.json (what the table and the tests read of it) was not checked: one that still parsed but
    was not the report (a list, another object) was a traceback (TypeError, KeyError), not a fit again."""
    spec, settings = "sklearn.naive_bayes:GaussianNB", {**SETTINGS, "seed": seed}  # a seed of this test alone
    first = compare([spec], tracking_uri=bench["uri"], out_dir=bench["root"] / "r1", **settings)
    run_id = first["results"][0]["run_ids"][0]
    artifacts = Tracker(bench["uri"]).client.get_run(run_id).info.artifact_uri.removeprefix("file://")
    (Path(artifacts) / "report.json").write_text(damage)
    steps: list[str] = []
    out = compare([spec], tracking_uri=bench["uri"], out_dir=bench["root"] / "r1", progress=steps.append, **settings)
    assert out["results"][0]["reused"] == 0
    assert [s for s in steps if f"run {run_id} not reused: its report.json does not match" in s], steps


def test_update_models_installs_the_recipe_in_its_default_folder(bench):
    stale = default_model_dir("knn-deskew") / "confusion.png"  # drawn from the model the install replaces
    stale.write_bytes(b"the previous model's")
    out = compare(
        ["knn-deskew"],
        tracking_uri=bench["uri"],
        out_dir=bench["root"] / "u",
        update_models=True,
        **SETTINGS,
    )
    model_dir = default_model_dir("knn-deskew")
    assert out["results"][0]["reused"] == 1  # the refit of the tampered run, now reused
    estimator, card = load_model(model_dir)
    assert card["limit"] == 1000 and card["recipe"] == "knn-deskew"
    assert not stale.exists()


def test_update_models_leaves_the_default_folder_to_mnists_own_files(tmp_path, mnist_full, made_store):
    """A folder of other IDX files that is named mnist is no MNIST: its models stay in the report folder, where
    installed as the recipe's default they would be served as an MNIST model."""
    images, labels = mnist_full.images, mnist_full.target
    other = labels[:600].copy()
    other[:100] = (other[:100] + 1) % 10  # not MNIST's labels: its checksums fail, as any other data's would
    parts = {"train_images": images[:600], "train_labels": other, "test_images": images[-200:]}
    folder = write_idx_folder(tmp_path / "mnist", {**parts, "test_labels": labels[-200:]})
    default = default_model_dir("logreg")
    out = compare(
        ["logreg"],
        datasets=[folder],
        tracking_uri=made_store(tmp_path / "mlflow.db"),
        out_dir=tmp_path / "report",
        update_models=True,
        limit=500,
        n_jobs=1,
        cv=0,
    )
    assert len(out["results"]) == 1
    assert len(list((tmp_path / "report" / "models").rglob("model.json"))) == 1
    assert not (default / "model.json").exists()


@pytest.fixture(scope="module")
def tiny_idx(tmp_path_factory):
    """scikit-learn's 8x8 digits written as a folder of four IDX files: "any IDX folder"."""
    digits = load_mnist("digits")
    n = digits.details["n_train"]
    return write_idx_folder(
        tmp_path_factory.mktemp("idx") / "tiny-digits",
        {
            "train_images": digits.images[:n],
            "train_labels": digits.target[:n],
            "test_images": digits.images[n:],
            "test_labels": digits.target[n:],
        },
        gzip=False,
    )


def test_a_dataset_of_one_class_is_one_sentence(tiny_idx, tmp_path):
    folder = tmp_path / "one-class"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(tiny_idx / name, folder / name)
    n = load_mnist("digits").details["n_train"]
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(n, np.uint8))  # every training label a 0
    for cv in ("0", "2"):
        args = ["compare", "logreg", "--dataset", str(folder), "--cv", cv, "--out", str(tmp_path / "r")]
        result = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "The training images of one-class hold one class only (0); a classifier needs two" in result.stderr


def test_datasets_whose_names_make_one_folder_name_keep_their_own_models_and_figures(tiny_idx, tmp_path, made_store):
    """ "my data" and "my-data": both datasets' models were saved in models/my-data (the second over the first),
    and both report sections showed the second one's figures."""
    first, second = tmp_path / "a" / "my data", tmp_path / "b" / "my-data"
    shutil.copytree(tiny_idx, first)
    shutil.copytree(tiny_idx, second)
    train = load_mnist(data_dir=tiny_idx)
    n = train.details["n_train"]
    write_idx(second / "train-images-idx3-ubyte", np.ascontiguousarray(train.images[:n][::-1]))
    write_idx(second / "train-labels-idx1-ubyte", np.ascontiguousarray(train.target[:n][::-1].astype(np.uint8)))
    settings = {
        "cv": 0,
        "n_jobs": 1,
        "limit": 200,
        "out_dir": tmp_path / "r",
        "tracking_uri": made_store(tmp_path / "s.db"),
    }
    summary = compare("knn", datasets=[first, second], **settings)
    dirs = {row["dataset"]: Path(row["model_dir"]) for row in summary["runs"]}
    assert set(dirs) == {"my data", "my-data"} and len(set(dirs.values())) == 2, dirs
    for dataset, folder in dirs.items():
        assert json.loads((folder / "model.json").read_text())["dataset"] == dataset
    page = Path(summary["report"]).read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == len(set(images)) == 4, images  # a chart and a mistakes grid per dataset
    again = compare("knn", datasets=[first, second], **settings)
    assert [r["reused"] for r in again["results"]] == [1, 1]  # each found its own model where it left it


def test_a_dataset_given_as_the_parent_folder_is_compared_and_recorded(tiny_idx, tmp_path, monkeypatch, made_store):
    """--dataset .. (run from a folder inside the data's): every fit ran, then recording the comparison failed,
    MLflow refusing the metric test_accuracy/knn/.. as a path that resolves to another."""
    shutil.copytree(tiny_idx, tmp_path / "data")
    (tmp_path / "data" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "data" / "sub")
    uri = made_store(tmp_path / "s.db")
    args = ["compare", "knn", "--dataset", "..", "--limit", "200", "--out", str(tmp_path / "r"), "--tracking-uri", uri]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    client = Tracker(uri).client
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("mnistlab-compare").experiment_id],
        filter_string="tags.mnistlab_kind = 'comparison'",
    )
    # The folder is named as it is (data), not "..": the metric reads as the dataset it is.
    assert parent.info.status == "FINISHED" and list(parent.data.metrics) == ["test_accuracy/knn/data"]


def test_a_folder_dataset_is_recorded_by_its_folder_so_that_the_run_can_be_redone(
    tiny_idx, tmp_path, monkeypatch, made_store
):
    """A run on --dataset FOLDER recorded only the folder's last name: the run could not be redone from its record."""
    shutil.copytree(tiny_idx, tmp_path / "data" / "tiny-digits")
    monkeypatch.chdir(tmp_path / "data")
    uri = made_store(tmp_path / "s.db")
    settings = {"limit": 200, "split": "random", "seed": 3, "n_jobs": 1, "tracking_uri": uri}
    first = compare("knn", datasets="tiny-digits", out_dir=tmp_path / "r", **settings)
    (run_id,) = first["results"][0]["run_ids"]
    run = Tracker(uri).client.get_run(run_id)
    folder = str(tmp_path / "data" / "tiny-digits")  # absolute, though it was given relative to the current folder
    card = json.loads((Path(run.data.tags["mnistlab_model_dir"]) / "model.json").read_text())
    assert run.data.params["data_dir"] == card["data_dir"] == folder and card["dataset"] == "tiny-digits"
    # Redone from another folder with what the run recorded: the same data, the same answers.
    monkeypatch.chdir(tmp_path)
    params = run.data.params
    again = compare(
        "knn", datasets=params["data_dir"], out_dir=tmp_path / "r2", retrain=True,
        **settings | {k: json.loads(params[k]) if k != "split" else params[k] for k in ("limit", "split", "seed")},
    )  # fmt: skip
    (rerun,) = again["runs"]
    assert rerun["data_sha256"] == params["data_sha256"] and not rerun["reused"]
    assert rerun["test_predictions_sha256"] == run.data.tags["mnistlab_test_predictions_sha256"]


def test_a_comparison_records_its_data_checksums_settings_and_versions(tiny_idx, tmp_path, mnist_full, made_store):
    """The comparison's own run and its --json held neither the data checksums nor the package versions (and
    --json no split or limit): only its fits did, and a comparison of reused fits names no data of its own."""
    uri = made_store(tmp_path / "s.db")
    args = ["compare", "knn", "--dataset", "mnist", "--dataset", str(tiny_idx), "--limit", "200", "--cv", "0"]
    done = runner.invoke(app, [*args, "--seed", "5", "--out", str(tmp_path / "r"), "--tracking-uri", uri, "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    mnist_sha, tiny_sha = mnist_full.details["data_sha256"], load_mnist(data_dir=tiny_idx).details["data_sha256"]
    data = [
        {"dataset": "mnist", "data_sha256": mnist_sha},
        {"dataset": "tiny-digits", "data_sha256": tiny_sha, "data_dir": str(tiny_idx)},
    ]
    assert summary["data"] == data
    assert {k: summary[k] for k in ("seeds", "split", "test_size", "limit", "cv")} == {
        "seeds": [5], "split": "official", "test_size": None, "limit": 200, "cv": 0,
    }  # fmt: skip
    versions = summary["versions"]
    assert versions["scikit-learn"] and versions["numpy"] and versions["mnistlab"] and versions["python"]
    client = Tracker(uri).client
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("mnistlab-compare").experiment_id],
        filter_string="tags.mnistlab_kind = 'comparison'",
    )
    params = parent.data.params
    assert params["data_sha256/mnist"] == mnist_sha and params["data_sha256/tiny-digits"] == tiny_sha
    assert params["data_dir/tiny-digits"] == str(tiny_idx) and "data_dir/mnist" not in params
    assert {k.removeprefix("version."): v for k, v in params.items() if k.startswith("version.")} == versions
    assert (params["split"], params["limit"], params["seeds"]) == ("official", "200", "[5]")
    # Each fit's run names the same data as the comparison that holds it.
    for row in summary["results"]:
        (run_id,) = row["run_ids"]
        fit_params = client.get_run(run_id).data.params
        assert fit_params["data_sha256"] == {"mnist": mnist_sha, "tiny-digits": tiny_sha}[row["dataset"]]
    record = json.loads(Tracker(uri).artifact(parent.info.run_id, "comparison.json"))
    assert record["data"] == data and record["versions"] == versions and record["limit"] == 200


def test_the_report_page_says_what_the_comparison_ran_on(tiny_idx, tmp_path, made_store):
    """index.html gave the seeds and image counts but not the split, the limit, the data's checksum or folder,
    nor the package versions: a page sent on its own did not say what its numbers came from."""
    uri = made_store(tmp_path / "s.db")
    summary = compare(
        "knn", datasets=str(tiny_idx), split="random", test_size=0.25, limit=300, cv=0, n_jobs=1,
        out_dir=tmp_path / "r", tracking_uri=uri,
    )  # fmt: skip
    page = Path(summary["report"]).read_text()
    (data,) = summary["data"]
    assert "Split random (test size 0.25); training images: 300; cross-validation folds: 0." in page
    assert f"tiny-digits ({tiny_idx}) sha256 <code>{data['data_sha256']}</code>" in page
    assert f"scikit-learn {summary['versions']['scikit-learn']}" in page and "mnistlab " in page
    # It said every model was trained and tested on the same images in every seed: each seed drew its own here.
    assert "Each seed drew its own split of the data into training and test images" in page
    assert "same test images" not in page
    assert "itself a sample of such images" in page and "digits at large" not in page  # Fashion-MNIST's too


def test_the_report_and_the_table_say_how_the_seeds_were_trained_and_tested(tiny_idx, tmp_path, made_store):
    uri = made_store(tmp_path / "s.db")
    for limit, said in ((None, "Every seed trained on the same training images"), (200, "its own subset")):
        summary = compare(
            "knn", datasets=str(tiny_idx), seeds=2, limit=limit, cv=0, n_jobs=1,
            out_dir=tmp_path / f"r{limit}", tracking_uri=uri,
        )  # fmt: skip
        page = Path(summary["report"]).read_text()
        assert said in page and "was tested on the same test images" in page
    shown = runner.invoke(
        app, ["compare", "knn", "--dataset", str(tiny_idx), "--split", "random", "--seeds", "2", "--cv", "0",
              "--tracking-uri", uri, "--out", str(tmp_path / "cli")],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "t with the seeds' spread and the dataset's" in " ".join(shown.output.split())


def test_a_comparison_records_the_statsmodels_its_p_values_came_from(tiny_idx, tmp_path, made_store):
    """The p-values and their Holm correction are statsmodels' (McNemar's exact test, multipletests), but what a
    comparison recorded of its packages (--json, comparison.json, its run's version.* parameters, the report's
    "Packages:") named scipy and not statsmodels: a verdict an upgrade changed could not be told apart."""
    import importlib.metadata

    uri = made_store(tmp_path / "s.db")
    summary = compare(
        ["knn", "logreg"], datasets=str(tiny_idx), limit=300, cv=0, n_jobs=1, out_dir=tmp_path / "r", tracking_uri=uri
    )
    version = importlib.metadata.version("statsmodels")
    assert summary["versions"]["statsmodels"] == version
    assert f"statsmodels {version}" in Path(summary["report"]).read_text()
    client = Tracker(uri).client
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("mnistlab-compare").experiment_id],
        filter_string="tags.mnistlab_kind = 'comparison'",
    )
    assert parent.data.params["version.statsmodels"] == version
    record = json.loads(Tracker(uri).artifact(parent.info.run_id, "comparison.json"))
    assert record["versions"]["statsmodels"] == version


def test_a_dataset_folder_with_a_long_name_gets_its_report_and_its_cache(tiny_idx, tmp_path, made_store):
    """A folder named with 240 characters: compare fitted every model, then ended in a traceback writing the
    report's PNGs (their names 257 characters and more), and its arrays were never cached ("File name too long")."""
    folder = shutil.copytree(tiny_idx, tmp_path / ("d" * 240))
    uri = made_store(tmp_path / "s.db")
    summary = compare("knn", datasets=str(folder), limit=300, cv=0, n_jobs=1, out_dir=tmp_path / "r", tracking_uri=uri)
    pngs = sorted(p.name for p in (tmp_path / "r").glob("*.png"))
    assert len(pngs) == 2 and all(len(name) < 120 for name in pngs), pngs
    assert all(name in Path(summary["report"]).read_text() for name in pngs)
    (cached,) = (cache_root() / "arrays").glob("d" * 64 + "-*")
    assert (cached / "manifest.json").is_file()


def test_a_model_of_stretched_digits_records_what_its_pixels_were_stretched_from(tmp_path, made_store):
    """compare stretches scikit-learn's 0-16 digits to 0-255, but the card and the run recorded only the checksum
    of the digits as published: nothing said the model read them stretched, so fed the published pixels it
    answered otherwise. They now record stretched_from, with which the recorded predictions come back."""
    uri = made_store(tmp_path / "s.db")
    summary = compare("knn", datasets="digits", cv=0, n_jobs=1, out_dir=tmp_path / "r", tracking_uri=uri)
    (run_id,) = summary["results"][0]["run_ids"]
    run = Tracker(uri).client.get_run(run_id)
    model, card = load_model(Path(run.data.tags["mnistlab_model_dir"]))
    digits = load_mnist("digits")
    assert card["stretched_from"] == 16 and run.data.params["stretched_from"] == "16"
    assert card["data_sha256"] == digits.details["data_sha256"]
    n = digits.details["n_train"]
    scale = np.float32(255 / card["stretched_from"])
    X_test = np.rint(np.asarray(digits.data[n:], np.float32) * scale).astype(np.uint8)
    y_pred = np.asarray(model.predict(X_test), np.int64)
    assert hashlib.sha256(y_pred.tobytes()).hexdigest() == card["metrics"]["test_predictions_sha256"]


def test_an_empty_dataset_name_is_refused_not_read_as_the_current_folder(tiny_idx, tmp_path, monkeypatch):
    # An unset $DATA in --dataset "$DATA": Path("") is ".", and the IDX files of the current folder were compared.
    shutil.copytree(tiny_idx, tmp_path / "here")
    monkeypatch.chdir(tmp_path / "here")
    uri = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(
        app, ["compare", "knn", "--dataset", "", "--limit", "200", "--out", "r", "--tracking-uri", uri]
    )
    assert result.exit_code == 2 and "dataset's name is empty" in result.output, result.output
    assert not (tmp_path / "here" / "r").exists()


def test_datasets_and_seeds_with_random_splits(bench, tiny_idx):
    specs = ["sklearn.naive_bayes:GaussianNB", "sklearn.neighbors:NearestCentroid"]
    out = compare(
        specs,
        datasets=["digits", str(tiny_idx)],
        seeds=3,
        split="random",
        test_size=0.25,
        cv=2,
        n_jobs=1,
        tracking_uri=bench["uri"],
        out_dir=bench["root"] / "ds",
    )
    assert [(r["model"], r["dataset"]) for r in out["results"]] == [
        (m, d)
        for d in ("digits", "tiny-digits")
        for m in ("sklearn.naive_bayes:GaussianNB", "sklearn.neighbors:NearestCentroid")
    ]
    for r in out["results"]:
        assert r["seeds"] == [42, 43, 44] and r["test_accuracy_std"] is not None
        low, high = r["test_accuracy_ci95"]
        assert low <= r["test_accuracy_mean"] <= high
        assert len(set(r["test_accuracies"])) > 1  # each seed drew its own split
    assert {c["dataset"] for c in out["comparisons"]} == {"digits", "tiny-digits"}
    runs = out["runs"]
    assert all(len(r["cv_scores"]) == 2 for r in runs) and len({r["run_id"] for r in runs}) == 12


def nearest_centroid(seed: int, n_jobs: int):
    """A callable spec from Python: gets the seed and n_jobs it asks for."""
    from sklearn.neighbors import NearestCentroid

    assert isinstance(seed, int) and isinstance(n_jobs, int)
    return NearestCentroid()


def test_python_compare_takes_callables_estimators_and_recipe_names(bench):
    from sklearn.linear_model import LogisticRegression

    steps: list[str] = []
    out = compare(
        [nearest_centroid, LogisticRegression(max_iter=50), "knn-deskew"],
        datasets=["digits"],
        seeds=2,
        cv=0,
        n_jobs=1,
        tracking_uri=bench["uri"],
        out_dir=bench["root"] / "py",
        progress=steps.append,
    )
    assert [r["model"] for r in out["results"]] == ["nearest_centroid", "LogisticRegression", "knn-deskew"]
    runs = {(r["model"], r["seed"]): r for r in out["runs"]}
    # The estimator was cloned per seed with its random_state set to the seed.
    card = json.loads((Path(runs[("LogisticRegression", 43)]["model_dir"]) / "model.json").read_text())
    assert card["params"]["random_state"] == 43 and card["seed"] == 43
    assert all(r["reused"] is False for r in out["runs"]) and len(steps) > 6


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_such_module_xyz:make", "Cannot import module 'no_such_module_xyz'"),
        ("{root}/missing.py:build", "No file"),
        ("{root}/mine.py:nothing", "names no 'nothing'"),
        ("{root}/mine.py:CONSTANT", "is not callable (it is an int)"),
        ("{root}/mine.py:not_a_classifier", "returned a str, not a classifier"),
        ("knn-deskw", "Unknown recipe 'knn-deskw'"),
        ("{root}/mine.py:wrong_net", "returned shape (2, 3) for 2 images, expected (2, 10)"),
    ],
)
def test_bad_specs_are_refused_before_anything_trains(bench, tmp_path, spec, message):
    store = tmp_path / "fresh.db"
    args = ["compare", "knn-deskew", spec.format(root=bench["root"]), "--tracking-uri", f"sqlite:///{store}"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not store.exists()  # refused before the store was opened, let alone anything fitted


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds", "0"], "--seeds must be a whole number from 1 to 100"),
        (["--seeds", "3", "--seed", "4294967294"], "--seeds 3 from seed 4294967294 runs past 4294967295"),
        (["--baseline", "svm-rbf"], "--baseline 'svm-rbf' is not among the compared models"),
        (["--dataset", "nowhere-set"], "Unknown dataset 'nowhere-set'"),
        (["--dataset", "mnist", "--dataset", "digits", "--limit", "5000"], "--limit must be between 20 and 1437"),
    ],
)
def test_bad_settings_are_refused(tmp_path, extra, message):
    store = tmp_path / "fresh.db"
    args = ["compare", "knn-deskew", *extra, "--tracking-uri", f"sqlite:///{store}", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    assert not store.exists()


def test_two_models_of_one_name_are_refused_with_how_to_tell_them_apart(tmp_path):
    """Two sweeps' spec files of one recipe are both named 'logreg-tuned': the sentence said "name each one
    once", though each was named once; it now names both and what to change."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name, c in (("b1.json", 0.5), ("b2.json", 2.0)):
        (tmp_path / name).write_text(json.dumps({"recipe": "logreg", "params": {"logreg__C": c}}))
    for folder in ("a", "b"):
        (tmp_path / folder / "model.py").write_text("from sklearn.svm import SVC\n\n\ndef build():\n    return SVC()\n")
    cases = [
        ([tmp_path / "b1.json", tmp_path / "b2.json"], 'give each spec file its own "name"'),
        ([tmp_path / "a" / "model.py:build", tmp_path / "b" / "model.py:build"], "rename one of the files"),
    ]
    for (first, second), says in cases:
        result = runner.invoke(app, ["compare", str(first), str(second), "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("Error: Two models are named ") and f"({first} and {second})" in line, line
        assert says in line, line


@pytest.mark.parametrize("blocker", ["index.html", "models"])
def test_an_out_folder_with_the_reports_names_taken_is_refused_before_any_fit(tmp_path, blocker):
    """index.html a folder: a traceback (IsADirectoryError) once every fit had run; models a file: an error after
    the first fit."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "index.html").mkdir() if blocker == "index.html" else (out / "models").write_text("")
    store = tmp_path / "s.db"
    args = ["compare", "knn", "--dataset", "digits", "--out", str(out), "--tracking-uri", f"sqlite:///{store}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: --out {out} holds a ") and f"named {blocker}" in line, line
    assert not store.exists()


def test_numpy_numbers_are_taken_as_numbers(tmp_path, made_store):
    """seed=np.int64(3) (a loop over np.arange) failed after the fit, in saving the card ("int64 is not JSON
    serializable"); seeds=np.int64(2) was refused as not a whole number."""
    summary = compare(
        "knn",
        datasets="digits",
        seeds=np.int64(2),
        seed=np.int64(3),
        limit=np.int64(200),
        cv=np.int64(0),
        n_jobs=np.int64(1),
        tracking_uri=made_store(tmp_path / "s.db"),
        out_dir=tmp_path / "r",
    )
    (result,) = summary["results"]
    assert result["seeds"] == [3, 4] and result["n_train"] == 200
    card = json.loads((Path(summary["runs"][0]["model_dir"]) / "model.json").read_text())
    assert (card["seed"], card["limit"]) == (3, 200)


def test_the_baseline_may_be_named_by_the_spec_it_was_given_as(tmp_path, made_store):
    """--baseline path/mine.py:build, as the model was given, was refused: "not among the compared models
    (knn, mine.py:build)"."""
    (tmp_path / "mine.py").write_text("from sklearn.svm import SVC\n\n\ndef build():\n    return SVC()\n")
    spec = f"{tmp_path / 'mine.py'}:build"
    args = ["compare", "knn", spec, "--dataset", "digits", "--limit", "200", "--baseline", spec, "--json"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--tracking-uri", made_store(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    against = {(c["a"], c["b"], c["against"]) for c in json.loads(result.stdout)["comparisons"]}
    assert ("knn", "mine.py:build", "baseline") in against or ("knn", "mine.py:build", "best and baseline") in against


def test_compare_takes_one_spec_or_dataset_without_a_list(tmp_path):
    with pytest.raises(RecipeError, match="Unknown recipe 'knn-deskw'"):  # the name, not its first letter
        compare("knn-deskw", datasets="mnist", out_dir=tmp_path / "r")
    with pytest.raises(ParameterError, match="specs is empty"):
        compare([], out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_target_is_refused_by_compare_not_ignored(tmp_path):
    """compare took target= (a RunOptions field) and fitted the CNN for its full epochs all the same; a later
    compare with another target even reused that fit."""
    store = tmp_path / "fresh.db"
    with pytest.raises(ParameterError, match="target is not used by compare"):
        compare(
            "cnn-fast",
            datasets="digits",
            target=0.05,
            cv=0,
            n_jobs=1,
            tracking_uri=f"sqlite:///{store}",
            out_dir=tmp_path / "r",
        )
    assert not store.exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fails_to_fit", "mnist seed 42: mine.py:fails_to_fit failed (RuntimeError: boom in fit); fix the classifier"),
        ("predicts_too_few", "predict returned shape (3,) for 10,000 test images; it must return one label per image"),
        ("blanks_its_input", "mine.py:blanks_its_input failed: it changed the images or labels it was given"),
        ("predicts_words", "predict returned labels the training labels do not hold (such as '"),
    ],
)
def test_a_classifier_that_fails_in_its_run_is_one_sentence(bench, tmp_path, spec, message, made_store):
    args = ["compare", f"{bench['root'] / 'mine.py'}:{spec}", *SETTING_FLAGS, "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--tracking-uri", made_store(tmp_path / "fresh.db")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and message in result.stderr, result.stderr


def test_one_dataset_named_two_ways_is_refused(tmp_path, mnist_dir):
    args = ["compare", "knn-deskew", "--dataset", "mnist", "--dataset", str(mnist_dir), *SETTING_FLAGS]
    result = runner.invoke(
        app, [*args, "--out", str(tmp_path / "r"), "--tracking-uri", f"sqlite:///{tmp_path / 's.db'}"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "names the dataset 'mnist' twice ('mnist' and" in result.stderr


def test_a_fit_is_not_reused_once_code_in_another_file_has_changed(tmp_path, monkeypatch, made_store):
    # models.py builds the net; its class lives in layers.py, which the spec does not name.
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text(_LAYERS.format(scale=1))
    (package / "models.py").write_text("from mypkg.layers import Net\n\n\ndef make(seed):\n    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    store = made_store(tmp_path / "s.db")

    def reused() -> int:
        for name in [m for m in sys.modules if m.startswith("mypkg")]:
            del sys.modules[name]  # a new process would import the files as they are now
        (row,) = compare("mypkg.models:make", tracking_uri=store, out_dir=tmp_path / "r", **SETTINGS)["results"]
        return row["reused"]

    assert reused() == 0 and reused() == 1
    (package / "layers.py").write_text(_LAYERS.format(scale=16))
    assert reused() == 0


_LAYERS = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool, self.fc = nn.MaxPool2d(4), nn.Linear(49, 10)

    def forward(self, x):
        return self.fc({scale} * self.pool(x).flatten(1))
"""


def test_digits_are_read_on_mnists_pixel_scale(tmp_path, made_store):
    # scikit-learn's digits run 0-16; every mnistlab model reads integer pixels as 0-255, and logreg read the
    # digits as faint as 0-0.06 (70% right) and cnn-fast near chance, before the split stretched them.
    from mnistlab.lab.fitting import open_dataset, split_for
    from mnistlab.lab.options import RunOptions

    d = split_for(*open_dataset("digits"), RunOptions(seed=0))
    assert d.X_train.dtype == np.uint8 and d.X_train.max() == 255 and d.stretched_from == 16
    out = compare(
        ["logreg"],
        datasets=["digits"],
        cv=0,
        n_jobs=1,
        out_dir=tmp_path / "r",
        tracking_uri=made_store(tmp_path / "s.db"),
    )
    assert out["results"][0]["test_accuracy_mean"] > 0.85


def test_an_estimators_parameter_named_as_a_run_setting_is_recorded_beside_it(tmp_path, made_store):
    """LogisticRegressionCV(cv=2): the run's parameter cv said 0 (the run's folds) and the estimator's 2 was lost."""
    (tmp_path / "cvmodel.py").write_text(
        "from sklearn.linear_model import LogisticRegressionCV\n\n\n"
        "def build(seed):\n    return LogisticRegressionCV(cv=2, Cs=2, max_iter=50, random_state=seed)\n"
    )
    uri = made_store(tmp_path / "s.db")
    summary = compare(
        f"{tmp_path / 'cvmodel.py'}:build", datasets="digits", n_jobs=1, tracking_uri=uri, out_dir=tmp_path / "r"
    )
    (run_id,) = summary["results"][0]["run_ids"]
    params = Tracker(uri).client.get_run(run_id).data.params
    assert (params["cv"], params["estimator.cv"], params["seed"], params["random_state"]) == ("0", "2", "42", "42")


def test_the_report_marks_no_single_winner_among_models_that_tie(tmp_path, made_store):
    """Two models with the same answers: the report highlighted the first one alone as the best."""
    (tmp_path / "twins.py").write_text(
        "from sklearn.neighbors import KNeighborsClassifier\n\n\n"
        "def one():\n    return KNeighborsClassifier(1)\n\n\n"
        "def two():\n    return KNeighborsClassifier(1)\n"
    )
    specs = [f"{tmp_path / 'twins.py'}:one", f"{tmp_path / 'twins.py'}:two"]
    summary = compare(
        specs, datasets="digits", n_jobs=1, tracking_uri=made_store(tmp_path / "s.db"), out_dir=tmp_path / "r"
    )
    (a, b) = summary["results"]
    assert a["test_accuracy_mean"] == b["test_accuracy_mean"]
    results_table = Path(summary["report"]).read_text().split("<h3>Against")[0]
    rows = re.findall(r"<tr( class=\"best\")?><td>(twins\.py:(?:one|two))</td>", results_table)
    assert sorted(rows) == [(' class="best"', "twins.py:one"), (' class="best"', "twins.py:two")], rows


def test_a_model_the_safe_format_cannot_hold_is_tested_and_said_to_be_unsaved(bench, tmp_path, made_store):
    store = made_store(tmp_path / "s.db")
    args = ["compare", f"{bench['root'] / 'mine.py'}:own_class", *SETTING_FLAGS, "--out", str(tmp_path / "r")]
    said = runner.invoke(app, [*args, "--tracking-uri", store])
    assert said.exit_code == 0, said.output
    assert "own_class: not saved: its types are outside mnistlab's safe model format" in said.stderr
    again = runner.invoke(app, [*args, "--tracking-uri", store, "--json"])
    (row,) = json.loads(again.stdout)["results"]
    assert row["reused"] == 0 and row["test_accuracy_mean"] > 0.5  # tested, and fitted again: none reused
    (folder,) = (tmp_path / "r" / "models" / "mnist").glob("mine.py-own_class-*")
    assert list((folder / "seed-42").iterdir()) == []


PIPED_CNN = """
from sklearn.pipeline import Pipeline
from mnistlab.models.cnn.estimator import CNNClassifier


def piped(seed):
    return Pipeline([("cnn", CNNClassifier(arch="tiny", epochs=1, batch_size=64, n_threads=1, random_state=seed))])
"""


def test_a_pipeline_holding_a_cnn_is_tested_and_recorded_not_a_traceback(tmp_path, made_store):
    # skops has no form for the CNN's torch tensors: compare ended in a traceback from inside skops, after the fit.
    # Its run then recorded neither the device the CNN trained on nor its epochs: the Pipeline says neither.
    import torch

    from mnistlab.models.cnn.estimator import device_name

    (tmp_path / "piped.py").write_text(PIPED_CNN)
    store = made_store(tmp_path / "s.db")
    args = ["compare", f"{tmp_path / 'piped.py'}:piped", "--limit", "200", "--n-jobs", "1", "--cv", "0"]
    said = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--tracking-uri", store])
    assert said.exit_code == 0, said.output
    assert "piped: not saved: its types are outside mnistlab's safe model format" in said.stderr
    (run,) = Tracker(store).runs()
    assert run["model"] == "piped.py:piped" and run["test_accuracy"] is not None
    recorded = Tracker(store).client.get_run(run["run_id"]).data
    expected = device_name(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert recorded.params["device"] == expected and recorded.params["cnn__device"] == "auto"
    assert recorded.metrics["epochs"] == 1 and recorded.metrics["train_seconds"] > 0


def test_runs_record_where_the_model_is_from_any_folder(tmp_path, monkeypatch, made_store):
    monkeypatch.chdir(tmp_path)  # --out relative to here
    store = made_store(tmp_path / "s.db")
    done = runner.invoke(app, ["compare", "knn", *SETTING_FLAGS, "--out", "rel", "--tracking-uri", store])
    assert done.exit_code == 0, done.output
    (run,) = json.loads(runner.invoke(app, ["runs", "--tracking-uri", store, "--json"]).stdout)
    assert run["model_dir"] == str(tmp_path / "rel" / "models" / "mnist" / "knn" / "seed-42")


def test_an_unusable_store_is_one_sentence(tmp_path):
    (tmp_path / "x.db").write_text("not a database " * 100)
    uri = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["runs", "--tracking-uri", uri])
    assert result.exit_code == 2 and "Cannot open the tracking store" in result.output, result.output


def test_the_environment_names_the_store_too(bench, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", bench["uri"])
    listed = json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
    assert {r["run_id"] for r in listed} == {r["run_id"] for r in Tracker(bench["uri"]).runs()}


def test_a_user_module_trains_from_its_seed_not_from_how_it_was_built(mnist_small):
    import torch
    from torch import nn

    from mnistlab.models.cnn.estimator import CNNClassifier

    X_train, X_test, y_train, y_test = mnist_small

    def net(torch_seed: int) -> nn.Module:
        torch.manual_seed(torch_seed)  # the user's own (or no) seeding must not matter
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))

    def fit(torch_seed: int, seed: int):
        return CNNClassifier(module=net(torch_seed), epochs=1, batch_size=64, random_state=seed).fit(
            X_train[:600], y_train[:600]
        )

    a, b, c = fit(1, 7), fit(2, 7), fit(1, 8)
    assert np.array_equal(a.predict_proba(X_test[:200]), b.predict_proba(X_test[:200]))
    assert not np.array_equal(a.predict_proba(X_test[:200]), c.predict_proba(X_test[:200]))
    assert a.score(X_test[:200], y_test[:200]) > 0.5


def test_a_random_split_is_tested_as_a_sample_of_the_datasets_images(tmp_path, made_store):
    """--split random: every seed draws its test set from the same 1,797 digits, so the comparison's tests are
    those of ``paired_test`` with that pool, not of the seeds' spread alone (too sure with many seeds)."""
    from mnistlab.data.load import load_split
    from mnistlab.lab.stats import paired_test

    uri = made_store(tmp_path / "s.db")
    specs = ["sklearn.naive_bayes:GaussianNB", "sklearn.neighbors:NearestCentroid"]
    summary = compare(
        specs, datasets="digits", seeds=3, split="random", cv=0, n_jobs=1, tracking_uri=uri, out_dir=tmp_path / "r"
    )
    tracker, digits = Tracker(uri), load_mnist("digits")
    preds = {r["model"]: [tracker.predictions(run_id) for run_id in r["run_ids"]] for r in summary["results"]}
    y = [load_split(split="random", seed=seed, bunch=digits)[3] for seed in (42, 43, 44)]
    (row,) = summary["comparisons"]
    expected = paired_test(y, preds[row["a"]], preds[row["b"]], pool=len(digits.target))
    assert (row["test"], row["n"], row["a_only"], row["b_only"]) == (
        "t over seeds",
        1080,
        expected["a_only"],
        expected["b_only"],
    )
    assert (row["p_value"], row["diff_ci95"]) == (expected["p_value"], expected["diff_ci95"])
    assert row["p_value"] != paired_test(y, preds[row["a"]], preds[row["b"]])["p_value"]


def test_the_tables_legend_names_the_test_that_ran(tmp_path, made_store):
    """Deterministic models on the official split repeat their first seed, so they are tested by McNemar's exact
    test of one seed; the legend under the table said "the t test of the mean difference over several" all the
    same (--seeds 2)."""
    store, out = made_store(tmp_path / "s.db"), str(tmp_path / "r")
    args = ["compare", "knn", "sklearn.naive_bayes:GaussianNB", "--dataset", "digits", "--seeds", "2", "--cv", "0"]
    result = runner.invoke(app, [*args, "--n-jobs", "1", "--tracking-uri", store, "--out", out], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    summary = compare(
        ["knn", "sklearn.naive_bayes:GaussianNB"],
        datasets="digits",
        seeds=2,
        cv=0,
        n_jobs=1,
        tracking_uri=store,
        out_dir=out,
    )
    assert {c["test"] for c in summary["comparisons"]} == {"McNemar exact"}
    legend = result.stdout[result.stdout.index("vs:") : result.stdout.index("Interval:")]
    assert "McNemar" in legend and re.search(r"\bt test", legend) is None, legend


def test_a_callable_that_takes_no_seed_is_seeded_as_an_estimator_is(tmp_path):
    # Its classifier's random_state, None (no run repeats) or a number (one model at every seed), is the seed,
    # as for an unfitted classifier given itself; a callable that takes the seed seeds its classifier itself.
    (tmp_path / "unseeded.py").write_text(
        "from sklearn.linear_model import SGDClassifier\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n\n"
        "def plain():\n    return SGDClassifier()\n\n"
        "def fixed():\n    return make_pipeline(StandardScaler(), SGDClassifier(random_state=7))\n\n"
        "def own(seed):\n    return SGDClassifier(random_state=seed + 1000)\n"
    )
    built = {
        name: resolve_spec(f"{tmp_path}/unseeded.py:{name}").recipe.build(43, 1) for name in ("plain", "fixed", "own")
    }
    assert built["plain"].random_state == 43
    assert built["fixed"].get_params()["sgdclassifier__random_state"] == 43
    assert built["own"].random_state == 1043
