"""A 2-seed comparison on this machine's process pool, on a local Ray runtime and on a simulated 2-node Ray cluster.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_cluster.py [--limit N] [--seeds 2]
        [--models logreg knn-deskew] [--cpus 2] [--sweep-recipe logreg --sweep-param logreg__C=0.01,0.1,1,10]

Runs the same ``compare`` three ways, each against a fresh MLflow SQLite
store in a temp folder (so every unit is fitted, none reused):

- pool: without ``--cluster`` (the units one after the other in this process,
  CV folds and parallel models on the local process pool, ``--n-jobs``);
- ray: a local Ray runtime with ``--cpus`` CPUs (``ray.init``), units as tasks;
- 2 nodes: ``ray.cluster_utils.Cluster``, a head without CPUs and two worker
  nodes of ``--cpus // 2`` CPUs each, separate raylets and object stores as
  on two machines (but sharing this machine's cores).

Prints each way's wall time (Ray's start-up apart), whether the accuracies
are the same as the pool's, the bytes put into the object store, Ray's
overhead per task measured on 200 empty tasks, and the wall time of a small
``sweep`` (``--sweep-recipe``, ``--sweep-param``; Ray only, so no pool figure). On a 2-core machine the
cluster cannot be faster than the pool; the point is the overhead, which
decides how small a unit may be before the cluster stops paying.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import machine  # benchmarks/machine.py, beside this script
from argtypes import at_least_one


def run(args, root: Path, name: str, cluster: str | None) -> tuple[float, dict]:
    from mnistlab.lab.compare import compare

    start = time.perf_counter()
    summary = compare(
        args.models,
        seeds=args.seeds,
        limit=args.limit,
        n_jobs=args.n_jobs,
        cv=0,
        tracking_uri=f"sqlite:///{root / name / 'mlflow.db'}",
        out_dir=root / name / "report",
        cluster=cluster,
    )
    return time.perf_counter() - start, summary


def run_sweep(args, root: Path, name: str, cluster: str) -> float:
    """Seconds of ``sweep`` over ``--sweep-param`` (its trials on the Ray runtime already joined)."""
    from mnistlab.lab.options import RunOptions
    from mnistlab.lab.sweep import parse_params, sweep

    start = time.perf_counter()
    options = RunOptions(limit=args.limit, n_jobs=1)
    store = f"sqlite:///{root / name / 'mlflow.db'}"  # compare's (set up already), not the user's default store
    grid = parse_params(args.sweep_param)
    sweep(args.sweep_recipe, grid, options, cluster=cluster, tracking_uri=store, out=root / f"{name}.json")
    return time.perf_counter() - start


def task_overhead(n: int = 200) -> float:
    """Seconds per empty task, submitted all at once and waited for (scheduling, a worker's call, the result)."""
    import ray

    @ray.remote
    def empty(i: int) -> int:
        return i

    ray.get([empty.remote(i) for i in range(8)])  # workers started before the clock runs
    start = time.perf_counter()
    ray.get([empty.remote(i) for i in range(n)])
    return (time.perf_counter() - start) / n


def main() -> None:  # long: three set-ups measured one after the other, then one table
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["logreg", "knn-deskew"])
    parser.add_argument("--seeds", type=at_least_one, default=2)
    parser.add_argument("--limit", type=int, default=None, help="training images per fit (default: all 60,000)")
    parser.add_argument("--n-jobs", type=int, default=1, help="processes per fit (pool) and CPUs per task (Ray)")
    parser.add_argument("--cpus", type=at_least_one, default=os.cpu_count() or 2)
    parser.add_argument("--sweep-recipe", default="logreg")
    parser.add_argument("--sweep-param", nargs="+", default=["logreg__C=0.01,0.1,1,10"], metavar="NAME=V1,V2")
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from mnistlab.errors import ParameterError

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        try:  # compare checks its options before it fits anything: --limit 5, --n-jobs 0...
            pool_s, pool = run(args, root, "pool", None)
        except ParameterError as exc:
            parser.error(str(exc))
        accuracies = {r["model"]: r["test_accuracies"] for r in pool["results"]}
        rows.append(("pool (no --cluster)", 0.0, pool_s, True, 0, None, None))

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        up = time.perf_counter() - start
        ray_s, on_ray = run(args, root, "ray", "local")
        same = {r["model"]: r["test_accuracies"] for r in on_ray["results"]} == accuracies
        shipped, sweep_s = on_ray["cluster"]["shipped_bytes"], run_sweep(args, root, "ray", "local")
        rows.append((f"local Ray ({args.cpus} CPUs)", up, ray_s, same, shipped, task_overhead(), sweep_s))
        ray.shutdown()

        start = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(2):
            cluster.add_node(num_cpus=max(1, args.cpus // 2))
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        up = time.perf_counter() - start
        nodes_s, on_nodes = run(args, root, "nodes", cluster.address)
        same = {r["model"]: r["test_accuracies"] for r in on_nodes["results"]} == accuracies
        shipped, sweep_s = on_nodes["cluster"]["shipped_bytes"], run_sweep(args, root, "nodes", cluster.address)
        rows.append(("2 nodes (simulated)", up, nodes_s, same, shipped, task_overhead(), sweep_s))
        ray.shutdown()
        cluster.shutdown()

    tasks = len(args.models) * args.seeds
    print(
        f"\n{tasks} fits ({', '.join(args.models)} x {args.seeds} seeds), limit {args.limit or 'none'}, "
        f"n_jobs {args.n_jobs}; machine: {machine.describe()}"
    )
    trials = len(list(itertools.product(*(p.split("=", 1)[1].split(",") for p in args.sweep_param))))
    print(f"sweep: {args.sweep_recipe} over {' '.join(args.sweep_param)} ({trials} trials; Ray only)")
    head = f"{'set-up':<24}{'start s':>9}{'compare s':>11}{'vs pool':>9}{'same acc':>10}{'put MB':>9}{'ms/task':>9}"
    print(head + f"{'sweep s':>9}")
    for name, up, seconds, same, shipped, overhead, sweep_s in rows:
        ms = "" if overhead is None else f"{1000 * overhead:.2f}"
        sweep_text = "" if sweep_s is None else f"{sweep_s:.1f}"
        print(
            f"{name:<24}{up:>9.1f}{seconds:>11.1f}{seconds / pool_s:>8.2f}x{'yes' if same else 'NO':>10}"
            f"{shipped / 1e6:>9.1f}{ms:>9}{sweep_text:>9}"
        )
    print("put MB: the datasets put into the object store, once per run (each node pulls them once).")


if __name__ == "__main__":
    main()
