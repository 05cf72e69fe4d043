"""A Ray cluster of two worker nodes on this machine loses one mid-run: the run completes, each result recorded once.

``ray.cluster_utils.Cluster`` starts a head (no CPUs: it only holds the data)
and two one-CPU worker nodes as separate raylets, as on separate machines.
Six fits are queued on them; once the first result is in and a fit has
started on one node and not ended, that node is killed without warning, so the
fit is lost and Ray reruns it on the other node (``max_retries``): a model that
notes each start and end of its fit, with its node, shows the rerun. Recording happens in the driver once a fit
returns, so the rerun cannot record twice.
"""

from __future__ import annotations

import time

import pytest

from mnistlab.lab.compare import compare
from mnistlab.lab.tracking import Tracker

cluster_utils = pytest.importorskip("ray.cluster_utils")

SETTINGS = {"limit": 300, "n_jobs": 1, "cv": 0}
# Logistic regressions that note each start of their fit in a folder and, on the cluster, take a second more,
# so that a node removed mid-run is surely running one (Ray's own retries are otherwise invisible from outside).
COUNTED = """
import time
import uuid
from pathlib import Path

import ray
from sklearn.linear_model import LogisticRegression


class Counted(LogisticRegression):
    def fit(self, X, y):
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
        start = Path({starts!r}) / f"{{self.random_state}}-{{uuid.uuid4().hex}}-{{node}}.start"
        start.touch()
        if ray.is_initialized():  # the fits here, for the answers to compare with, need no second
            time.sleep(1)
        fitted = super().fit(X, y)
        start.with_suffix(".done").touch()
        return fitted


def build(seed):
    return Counted(max_iter=50, random_state=seed)


def build_strong(seed):
    return Counted(C=0.1, max_iter=50, random_state=seed)
"""


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs and two one-CPU worker nodes; shut down at the end."""
    # A killed node is declared dead after ~1.5 s of missed health checks rather than Ray's default ~30 s.
    health = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": health})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()


def test_a_node_lost_mid_run_still_gives_every_result_once(cluster, tmp_path, made_store):
    head, nodes = cluster
    starts = tmp_path / "starts"
    starts.mkdir()
    (tmp_path / "counted.py").write_text(COUNTED.format(starts=str(starts)))
    specs = [f"{tmp_path / 'counted.py'}:build", f"{tmp_path / 'counted.py'}:build_strong"]
    uri = made_store(tmp_path / "mlflow.db")
    removed = []

    def lose_a_node(row: dict) -> None:
        if removed:
            return
        # Kill the node while a fit has started there and not ended (its worker may still be starting
        # when the first result comes in from the other node): that fit is lost and must run again.
        target, deadline = nodes[0].node_id, time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(not p.with_suffix(".done").exists() for p in starts.glob(f"*-{target}.start")):
                break
            time.sleep(0.02)
        head.remove_node(nodes[0], allow_graceful=False)
        removed.append(row["run_id"])

    summary = compare(
        specs,
        seeds=3,
        tracking_uri=uri,
        out_dir=tmp_path / "cluster",
        cluster=head.address,
        on_result=lose_a_node,
        **SETTINGS,
    )
    assert removed
    fits_started = sorted(p.name.split("-")[0] for p in starts.glob("*.start"))
    assert set(fits_started) == {"42", "43", "44"} and len(fits_started) > 6  # a lost fit ran again elsewhere
    runs = Tracker(uri).runs()
    names = ["counted.py:build", "counted.py:build_strong"]
    assert sorted((r["model"], r["seed"]) for r in runs) == sorted((m, s) for m in names for s in (42, 43, 44))
    assert all(r["status"] == "FINISHED" for r in runs)
    here = compare(
        specs, seeds=3, tracking_uri=uri.replace("mlflow.db", "local.db"), out_dir=tmp_path / "local", **SETTINGS
    )
    accuracies = {r["model"]: r["test_accuracies"] for r in summary["results"]}
    assert accuracies == {r["model"]: r["test_accuracies"] for r in here["results"]}
