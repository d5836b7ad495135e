"""The machine the benchmark runs on: what it is (for the report), and how busy other processes
keep its cores (a run during which they used more than ``CONTENDED_CORES`` is contended)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from pathlib import Path

from .base import ROOT, log

CONTENDED_CORES = 0.3  # other processes using more than this during a run: the run is contended
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_jiffies() -> tuple[int, int]:
    """(busy, all) jiffies of the whole machine so far, from /proc/stat."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = f[3] + (f[4] if len(f) > 4 else 0)  # idle + iowait
    busy = sum(f[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy, busy + idle


def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_wait`` seconds) until other processes use less than ``threshold`` of
    a core over 2 seconds; returns the cores they were using when we stopped waiting."""
    deadline = time.perf_counter() + max_wait
    announced = False
    while True:
        b0, _ = cpu_jiffies()
        time.sleep(2)
        b1, _ = cpu_jiffies()
        cores = (b1 - b0) / CLK_TCK / 2
        if cores < threshold or time.perf_counter() > deadline:
            return cores
        if not announced:
            log(f"  other processes use {cores:.1f} cores: waiting up to {max_wait:.0f}s for a quieter machine")
            announced = True


def machine_info() -> dict:
    import duckdb
    import numpy
    import psutil
    import scipy

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = ""
    try:  # read, never run, git
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            p = ROOT / ".git" / ref
            if p.exists():
                commit = p.read_text().strip()
            else:
                for line in (ROOT / ".git" / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        commit = line.split()[0]
        else:
            commit = head
    except OSError:
        pass
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": psutil.virtual_memory().total,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "scipy": scipy.__version__,
        "numpy": numpy.__version__,
        "commit": commit[:12],
    }
