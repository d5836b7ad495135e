"""Each method runs in a child process of its own: starting it, stopping it at the time limit
(by its pid), and measuring its memory and the CPU other processes used meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .base import ROOT
from .machine import CLK_TCK, cpu_jiffies


def vm_hwm() -> int | None:
    """Peak resident set of this process image (VmHWM), reset at exec: not inflated by the
    parent's memory at fork time the way ``ru_maxrss`` of a child is."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def spawn(cmd: list[str], timeout: float) -> dict:
    """Run a child in its own session; poll its RSS; stop it (by pid) after ``timeout``. Also
    measures how much CPU other processes used meanwhile (a noise indicator)."""
    import psutil

    busy0, _ = cpu_jiffies()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        ps = psutil.Process(proc.pid)
    except psutil.Error:
        ps = None
    sampled, timed_out = 0, False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if ps is not None:
            try:
                sampled = max(sampled, ps.memory_info().rss)
            except psutil.Error:
                pass
        if time.perf_counter() - started > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            timed_out = True
            break
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    busy1, _ = cpu_jiffies()
    own = usage.ru_utime + usage.ru_stime
    others = max(0.0, (busy1 - busy0) / CLK_TCK - own) / wall if wall > 0 else 0.0
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "wall": wall,
        "sampled_rss": sampled,
        "ru_maxrss": usage.ru_maxrss * 1024,
        "cpu_seconds": own,
        "others_cores": others,
    }
