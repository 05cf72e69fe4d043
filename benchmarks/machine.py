"""The machine a benchmark ran on, in one line: every benchmark prints it beside its figures.

Times from two machines differ by more than most changes do (the same tree
read a photo in 3.7 CPU-ms on one 2-core machine and 5.8 on another), so the
line names the processor as well as its architecture and core count.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["describe"]


def _processor() -> str:
    """The processor's model name and clock as Linux reports them ("AMD EPYC, 2596 MHz"), else what
    ``platform.processor`` says, else "unknown processor"."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fields: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown processor"
    mhz = fields.get("cpu MHz")
    return f"{name}, {float(mhz):.0f} MHz" if mhz else name


def _cores() -> str:
    """The CPU cores this process may run on ("2 CPU cores"), and the machine's where it may use fewer
    (``taskset``, a container's cpuset: "1 of 2 CPU cores"), as the figures depend on the former."""
    total = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    return f"{total} CPU cores" if usable == total else f"{usable} of {total} CPU cores"


def describe() -> str:
    """What a benchmark's figures were measured on, as "x86_64 (AMD EPYC, 2596 MHz), 2 CPU cores, Python 3.11.7"."""
    return f"{platform.machine()} ({_processor()}), {_cores()}, Python {platform.python_version()}"
