"""A CNN ensemble on a real local Ray runtime, and `train` taking the spec file `sweep` writes.

The ensemble is a spec file over the ``ensemble`` recipe that makes it small
(two tiny nets, one epoch, on 300 images): under ``train --cluster`` its
members are Ray tasks, and the model must be the one a local fit (the
estimator's own process pool) gives. One Ray runtime with two CPUs serves
the module; the CLI runs in subprocesses that join it by address.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data.load import load_mnist
from mnistlab.lab.compare import compare
from mnistlab.lab.evaluate import evaluate_model
from mnistlab.lab.train import train_recipe
from mnistlab.models.files import load_model, read_card
from mnistlab.testing.cli import run_cli

ray = pytest.importorskip("ray")

# Architecture-relevant fields changed from the recipe's: the loaded config must rebuild these nets.
SMALL = {"arch": "tiny", "epochs": 1, "n_members": 2, "batch_size": 64, "augment": "none"}
SPEC = {"recipe": "ensemble", "name": "ensemble-small", "params": SMALL, "val_accuracy": 0.5}
SETTINGS = {"limit": 300, "n_jobs": 2}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "best.json"
    path.write_text(json.dumps(SPEC))
    return path


@pytest.fixture(scope="module")
def local_fit(spec_file, tmp_path_factory) -> dict:
    """The small ensemble trained here, its members in the estimator's own process pool (n_jobs=2)."""
    return train_recipe(str(spec_file), cv=0, out=tmp_path_factory.mktemp("local") / "model", **SETTINGS)


def _test_images(n: int = 500) -> np.ndarray:
    return load_mnist("mnist").data[-n:]  # the official test set's last images


def test_a_spec_file_trains_under_its_name_and_loads_back_to_the_same_predictions(local_fit, spec_file):
    assert local_fit["recipe"] == "ensemble-small" and local_fit["spec"] == str(spec_file)
    assert local_fit["tuned"] == {"recipe": "ensemble", "params": SMALL}
    card = read_card(local_fit["model_dir"])
    assert card["recipe"] == "ensemble-small" and card["spec"] == str(spec_file) and len(card["code_sha256"]) == 64
    assert {k: card["config"]["params"][k] for k in SMALL} == SMALL
    assert card["params"]["inputs"] == "mixed"  # the recipe's own settings stay where the spec sets nothing
    estimator, _ = load_model(local_fit["model_dir"])
    assert len(estimator.model_.members) == 2
    evaluated = evaluate_model(local_fit["model_dir"])
    assert evaluated["recipe"] == "ensemble-small" and evaluated["same_predictions_as_training"] is True


def test_train_cluster_fits_the_members_as_tasks_with_the_local_weights(runtime, local_fit, spec_file, tmp_path):
    there = tmp_path / "there"
    args = ["train", str(spec_file), "--limit", "300", "--n-jobs", "2", "--out", str(there)]
    done = run_cli([*args, "--cluster", runtime])
    assert done.returncode == 0, done.stderr
    assert "2 ensemble members submitted to the cluster" in done.stderr
    assert "ensemble-small: 2/2 member epochs done" in done.stderr  # counted as they come, in any order
    here_model, _ = load_model(local_fit["model_dir"])
    there_model, card = load_model(there)
    X = _test_images()
    np.testing.assert_allclose(there_model.predict_proba(X), here_model.predict_proba(X), rtol=0, atol=1e-6)
    # Each member's rows arrive once, whole, however the tasks finished.
    assert [(r["member"], r["epoch"]) for r in there_model.history_] == [(0, 1), (1, 1)]
    losses = [r["loss"] for r in there_model.history_]
    assert losses == [r["loss"] for r in here_model.history_]
    assert card["metrics"]["test_accuracy"] == local_fit["test_accuracy"]


def test_compare_on_the_cluster_fits_an_ensemble_unit_with_the_local_answer(
    runtime, local_fit, spec_file, tmp_path, made_store
):
    """Each unit is one task of n_jobs CPUs; the ensemble's members use the local pool on that node."""
    summary = compare(
        [str(spec_file)],
        tracking_uri=made_store(tmp_path / "mlflow.db"),
        out_dir=tmp_path / "report",
        cluster="local",
        cv=0,
        **SETTINGS,
    )
    (row,) = summary["results"]
    assert row["model"] == "ensemble-small" and row["test_accuracies"] == [local_fit["test_accuracy"]]
    assert summary["cluster"]["tasks"] == 1


def test_train_cluster_refuses_members_that_ask_for_more_cpus_than_any_node_has(runtime, tmp_path):
    """A member task asks for n_threads CPUs: on a cluster of 2-CPU nodes, n_threads 3 was queued without end."""
    spec = tmp_path / "wide.json"
    spec.write_text(json.dumps({**SPEC, "params": {**SMALL, "n_threads": 3}}))
    done = run_cli(
        ["train", str(spec), "--limit", "300", "--out", str(tmp_path / "m"), "--cluster", runtime], timeout=120
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        "Error: n_threads 3 asks for 3 CPUs per ensemble member, and the largest node of the cluster has 2; give "
        "n_threads 2 or less, or train without --cluster."
    ], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "m").exists()


# Train functions run on the workers. dies_once: the first attempt at member 0 kills its Ray worker
# process after sending a row, as a lost worker or node would; the member must rerun, and the lost
# attempt's row never arrive. stalls: member 1 never ends (Ctrl-C must cancel it).
HELPERS = """
import os
import time
from pathlib import Path

from mnistlab.models.cnn.loop import train_member

MARKS = Path({marks!r})


def dies_once(member, X, y, on_row):
    died = MARKS / "died"
    if member.index == 0 and not died.exists():
        on_row({{"member": 0, "epoch": -1}})
        died.write_text(str(os.getpid()))
        os._exit(1)
    (MARKS / f"{{member.index}}-{{os.getpid()}}.start").touch()
    return train_member(member, X, y, on_row)


def stalls(member, X, y, on_row):
    if member.index == 1:
        (MARKS / f"stalled-{{os.getpid()}}").touch()
        time.sleep(600)
    return train_member(member, X, y, on_row)
"""


@pytest.fixture()
def helpers(tmp_path):
    """HELPERS as a module whose code travels with the tasks (workers cannot import a test's folder); its marks."""
    import importlib.util

    from ray import cloudpickle

    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "helpers.py").write_text(HELPERS.format(marks=str(marks)))
    spec = importlib.util.spec_from_file_location("mnistlab_test_member_helpers", tmp_path / "helpers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cloudpickle.register_pickle_by_value(module)
    yield module, marks
    cloudpickle.unregister_pickle_by_value(module)
    del sys.modules[spec.name]


def _fit_on_cluster(train, settings: dict, X, y, on_row=None, progress=lambda _: None):
    """A CNNClassifier fit whose members are trained on the cluster by ``train`` instead of the estimator's own."""
    import functools

    from mnistlab.lab.cluster import run_members_on_cluster
    from mnistlab.models.cnn.estimator import CNNClassifier
    from mnistlab.models.cnn.parallel import members_run_by

    def runner(_, tasks, y, **kw):
        if on_row is not None:
            kw["on_row"] = on_row
        return run_members_on_cluster(train, tasks, y, **kw)

    with members_run_by(functools.partial(runner, progress=progress)):
        return CNNClassifier(**settings).fit(X, y)


def _small_data():
    bunch = load_mnist("mnist")
    return bunch.data[:300], bunch.target[:300]


def test_a_member_whose_worker_dies_reruns_and_its_rows_come_once(runtime, helpers):
    from mnistlab.models.cnn.estimator import CNNClassifier

    module, marks = helpers
    X, y = _small_data()
    settings = {**SMALL, "inputs": "mixed", "n_threads": 1, "n_jobs": 1, "random_state": 7}
    here = CNNClassifier(**settings).fit(X, y)
    there = _fit_on_cluster(module.dies_once, settings, X, y)
    assert (marks / "died").exists()  # the first attempt was lost with its worker ...
    assert sorted(p.name.split("-")[0] for p in marks.glob("*.start")) == ["0", "1"]  # ... and member 0 ran again
    assert [(r["member"], r["epoch"]) for r in there.history_] == [(0, 1), (1, 1)]
    a, b = here.model_.state_dict(), there.model_.state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def _until(condition, what: str, timeout: float = 60) -> None:
    """Wait for ``condition()`` to hold; fail, naming ``what``, when it has not within ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


def test_an_interrupted_ensemble_fit_cancels_its_member_tasks(runtime, helpers, process_running):
    """Ctrl-C in the driver (here: raised when the first member's rows arrive) stops the member still running."""
    module, marks = helpers
    X, y = _small_data()

    def free_cpus() -> float:
        return ray.available_resources().get("CPU", 0)

    def interrupt(row: dict) -> None:
        # Ctrl-C once the stalled member runs and the cluster counts its CPU as taken. available_resources is the
        # head's view, updated a moment after the node's: read at once, it could still say 2 of a held CPU.
        _until(lambda: any(marks.glob("stalled-*")) and free_cpus() == 1, "member 2 to run")
        raise KeyboardInterrupt

    settings = {**SMALL, "n_threads": 1, "random_state": 7}  # both members read the raw images
    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        _fit_on_cluster(module.stalls, settings, X, y, on_row=interrupt, progress=messages.append)
    # The images went into the object store once for both members (float32), and the labels (int64).
    assert messages == [
        f"2 ensemble members submitted to the cluster ({(300 * 784 * 4 + 300 * 8) / 2**20:.1f} MiB of data shared)"
    ]
    # The stalled member would sleep 10 minutes holding its CPU; cancelled, its worker process ends and both CPUs
    # are free again within seconds.
    (stalled,) = marks.glob("stalled-*")
    _until(lambda: not process_running(int(stalled.name.split("-")[1])), "the stalled member's process to end")
    _until(lambda: free_cpus() == 2, "both CPUs to be free")


BAD_SPECS = {
    "missing": None,
    "not-json": "{recipe: ensemble",
    "unknown-recipe": json.dumps({**SPEC, "recipe": "no-such-recipe"}),
    "unknown-param": json.dumps({**SPEC, "params": {"no_such_param": 1}}),
    "path-as-name": json.dumps({**SPEC, "name": "../../elsewhere"}),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_a_bad_spec_file_is_one_sentence_before_any_data_loads(tmp_path, case):
    spec = tmp_path / "best.json"
    if BAD_SPECS[case] is not None:
        spec.write_text(BAD_SPECS[case])
    # No data where MNIST is looked for: a command that got as far as loading it would fail otherwise.
    env = {"MNISTLAB_DATA": str(tmp_path / "no-data"), "XDG_DATA_HOME": str(tmp_path / "home")}
    done = run_cli(["train", str(spec), "--limit", "300", "--out", str(tmp_path / "model")], env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in done.stderr, done.stderr
    assert str(spec) in lines[0] or "no-such-recipe" in lines[0]
    assert not (tmp_path / "model").exists() and not (tmp_path / "no-data").exists()
