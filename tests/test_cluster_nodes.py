"""A Ray cluster of two worker nodes on this machine loses one mid-run: the run completes, each result recorded once.

``ray.cluster_utils.Cluster`` starts a head (no CPUs: it only holds the data)
and two one-CPU worker nodes as separate raylets, as on separate machines.
Six fits are queued on them; when the first result is in, one node is killed
without warning, so the fit it was running is lost and Ray reruns it on the
other node (``max_retries``). Recording happens in the driver once a fit
returns, so the rerun cannot record twice.
"""

from __future__ import annotations

import pytest

from mnistlab.lab.compare import compare
from mnistlab.lab.tracking import Tracker

cluster_utils = pytest.importorskip("ray.cluster_utils")

SETTINGS = {"limit": 300, "n_jobs": 1, "cv": 0}
SPECS = ["logreg", "knn"]


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


def test_a_node_lost_mid_run_still_gives_every_result_once(cluster, tmp_path):
    head, nodes = cluster
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    removed = []

    def lose_a_node(row: dict) -> None:
        if not removed:  # the other five fits are queued or running on the two nodes now
            head.remove_node(nodes[0], allow_graceful=False)
            removed.append(row["run_id"])

    summary = compare(
        SPECS,
        seeds=3,
        tracking_uri=uri,
        out_dir=tmp_path / "cluster",
        cluster=head.address,
        on_result=lose_a_node,
        **SETTINGS,
    )
    assert removed
    runs = Tracker(uri).runs()
    assert sorted((r["model"], r["seed"]) for r in runs) == sorted((m, s) for m in SPECS for s in (42, 43, 44))
    assert all(r["status"] == "FINISHED" for r in runs)
    here = compare(
        SPECS, seeds=3, tracking_uri=uri.replace("mlflow.db", "local.db"), out_dir=tmp_path / "local", **SETTINGS
    )
    accuracies = {r["model"]: r["test_accuracies"] for r in summary["results"]}
    assert accuracies == {r["model"]: r["test_accuracies"] for r in here["results"]}
