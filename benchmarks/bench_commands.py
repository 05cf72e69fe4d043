"""How long a command takes from the shell, start-up included: this tree against another git revision.

    MNISTLAB_DATA=../shared/data/mnist .venv/bin/python benchmarks/bench_commands.py [--against main] [--rounds 5]

Each command runs as a user runs it, ``python -m mnistlab ARGS`` in a fresh
process, with ``HOME`` and ``XDG_*`` in a folder of each tree's own (a model
one tree trained is never read by the other). Each tree runs the commands once
untimed first, as a user's first run on a machine: that run compiles the
tree's modules and caches the reader's scores of the test digits that
``train`` calibrates with, both of which later runs read back. Then ``--rounds`` timed rounds, the trees taking turns
command by command. Printed: wall seconds, mean and standard deviation, and
the ratio ours / theirs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import machine
from argtypes import at_least_one
from mnistlab import load_split

ROOT = Path(__file__).resolve().parent.parent

# (what the table calls it, the arguments): {home} is the tree's home folder, {photo} a drawing of a digit
COMMANDS = [
    ("--help", ["--help"]),
    ("recipes", ["recipes"]),
    ("data info", ["data", "info"]),
    ("show --ascii --first 1", ["show", "--ascii", "--first", "1"]),
    ("predict photo.png", ["predict", "{photo}"]),
    ("train logreg --limit 300", ["train", "logreg", "--limit", "300", "--cv", "0", "--out", "{home}/logreg"]),
    ("predict --model logreg", ["predict", "--model", "{home}/logreg", "{photo}"]),
]


def run(src: Path, home: Path, args: list[str]) -> tuple[float, str | None]:
    """Wall seconds of ``python -m mnistlab ARGS`` on the tree ``src``, and its last line of error if it failed."""
    env = {**os.environ, "PYTHONPATH": str(src), "HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the first run compiles the tree's modules once, as a user's does
    env.update({f"XDG_{kind}_HOME": str(home / kind.lower()) for kind in ("DATA", "CACHE", "CONFIG", "STATE")})
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mnistlab", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    return wall, None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["(nothing said)"])[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="main", help="the git revision to compare with")
    ap.add_argument("--rounds", type=at_least_one, default=5, help="timed runs of each command per tree")
    args = ap.parse_args()
    archive = subprocess.run(["git", "archive", args.against, "src"], cwd=ROOT, capture_output=True)
    if archive.returncode != 0:
        ap.error(f"--against {args.against}: git archive refused it ({archive.stderr.decode().strip()})")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        digit = load_split()[1][0].reshape(28, 28)  # a 7: dark ink on white, drawn 280 px wide as on the canvas
        Image.fromarray(np.uint8(255 - digit)).resize((280, 280), Image.Resampling.BILINEAR).save(photo)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        trees = {"theirs": Path(tmp) / "src", "ours": ROOT / "src"}
        homes = {name: Path(tmp) / f"home-{name}" for name in trees}
        commands = [(label, [a.format(photo=photo, home="{home}") for a in argv]) for label, argv in COMMANDS]
        walls: dict[tuple[str, str], list[float]] = {}
        failed: dict[tuple[str, str], str] = {}
        for round_ in range(args.rounds + 1):  # round 0: the untimed first run
            for label, argv in commands:
                for name in trees:
                    wall, error = run(trees[name], homes[name], [a.format(home=homes[name]) for a in argv])
                    if error is not None:
                        failed[(label, name)] = error
                    elif round_ > 0:
                        walls.setdefault((label, name), []).append(wall)
    print(f"machine: {machine.describe()}; "
          f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")  # fmt: skip
    print(f"ours: this tree, theirs: {args.against}; {args.rounds} timed runs per command and tree, wall seconds")
    print(f"{'command':26s} {'theirs':>14s} {'ours':>14s} {'ours/theirs':>12s}")
    for label, _ in COMMANDS:
        cells, means = [], []
        for name in trees:
            times = walls.get((label, name), [])
            if (label, name) in failed or not times:
                cells.append(f"{'failed':>14s}")
                continue
            sd = statistics.stdev(times) if len(times) > 1 else 0.0
            cells.append(f"{statistics.mean(times):7.2f} ± {sd:4.2f}")
            means.append(statistics.mean(times))
        ratio = f"{means[1] / means[0]:12.2f}" if len(means) == 2 else f"{'':12s}"
        print(f"{label:26s} {cells[0]:>14s} {cells[1]:>14s} {ratio}")
    for (label, name), error in failed.items():
        print(f"{label} failed on {name}: {error}")


if __name__ == "__main__":
    main()
