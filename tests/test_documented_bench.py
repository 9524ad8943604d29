"""The benchmark's documented command (python bench.py), run as written with --quick (tests/documented.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest

from benchmarks.dl import BURN
from documented import run_group


@pytest.mark.slow
def test_every_documented_bench_command_runs(full_mnist, tmp_path, monkeypatch, capsys):
    run_group("bench", full_mnist[0], tmp_path, monkeypatch, capsys)


def test_no_script_folder_shadows_a_standard_module():
    """bench.py runs benchmarks/tutorial.py as a script, so benchmarks/ is first on its sys.path: a file there named
    like a standard-library module (numbers.py) replaced it and broke numpy's import in the tutorial run."""
    root = Path(__file__).resolve().parent.parent
    for folder in (root, root / "benchmarks", root / "tests"):
        shadows = sorted(p.stem for p in folder.glob("*.py") if p.stem in sys.stdlib_module_names)
        assert not shadows, f"{folder.name}/ shadows the standard library: {shadows}"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "tutorial.py"), "--help"], capture_output=True)
    assert done.returncode == 0 and b"usage" in done.stdout, done.stderr.decode()[-500:]


def proc_stat(pid: int) -> list[str]:
    """A process's /proc/PID/stat fields after its name: [state (R running, Z ended, not yet reaped), ...]; [] once
    it is gone."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.read_text().rsplit(") ", 1)[1].split() if stat.exists() else []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_the_contention_rows_busy_processes_end_with_bench():
    """The dl suite's contention rows start processes that keep a core busy; a bench.py killed with kill -9 must not
    leave them spinning for ever: each one ends once its parent is gone."""
    code = (
        f"import os, subprocess, sys, time; busy = [sys.executable, '-c', {BURN!r}, str(os.getpid())]; "
        "print(subprocess.Popen(busy).pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=PIPE)  # it starts a busy process, as bench.py does
    busy = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while sum(map(int, proc_stat(busy)[11:13])) < 30 and time.monotonic() < deadline:  # utime + stime, in ticks
        time.sleep(0.02)
    assert proc_stat(busy)[:1] == ["R"]  # busy: 0.3 s of CPU or more, well past its start-up
    parent.kill()
    parent.wait()
    while proc_stat(busy)[:1] not in ([], ["Z"]) and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert proc_stat(busy)[:1] in ([], ["Z"])  # ended (a zombie until its new parent reaps it)
