"""What this machine is and has: cores (usable, idle), the CPU's name, library versions, process age."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from importlib import metadata


def usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit on Linux; every core elsewhere)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def idle_cores(samples: int = 5, interval: float = 0.02, loadavg: str = "/proc/loadavg") -> int:
    """Usable cores not already busy with other work, at least 1 (Linux: /proc/loadavg's running tasks).

    A PyTorch op's threads wait for the one another process switched out (docs/speed.md, "Shared cores"); the
    median of a few samples, since one look may catch a process that is about to sleep."""
    running = []
    for _ in range(samples):
        try:
            with open(loadavg) as f:
                running.append(int(f.read().split()[3].split("/")[0]) - 1)  # minus this process
        except (OSError, ValueError, IndexError):
            return usable_cores()
        time.sleep(interval)
    return max(1, usable_cores() - sorted(running)[len(running) // 2])


def process_age() -> float | None:
    """Seconds since this process started (Linux, from /proc), so that start-up and imports can be counted."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def cpu_model() -> str:
    """The CPU's marketing name (absolute times mean little without it), or the platform's word for it."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The instruction-set flags the CPU reports (x86 "flags", Arm "Features"); empty where there is no such file."""
    with contextlib.suppress(OSError), open(cpuinfo) as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def versions(*packages: str) -> dict:
    """Python, platform and installed package versions, for run records."""
    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": usable_cores(),
    }
    for name in packages:
        out[name] = None
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def cores_phrase(n: int) -> str:
    """ "1 core", "2 cores": for the lines under the tables."""
    return f"{n} core{'s' * (n != 1)}"
