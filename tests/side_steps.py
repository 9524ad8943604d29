"""Steps for the child processes of tests/test_processes.py and tests/test_interrupts.py: a module of its own, so
that a spawned child imports only this (and not experiment.py, torch and all)."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

from mnistlab.errors import ProjectError, run_cli
from mnistlab.files import atomic_path
from mnistlab.processes import run_side_by_side


def write_after(path: str, seconds: float) -> None:
    time.sleep(seconds)
    with open(path, "w") as f:
        f.write("done")


def fail(message: str) -> None:
    raise ProjectError(message)


def crash() -> None:
    raise ZeroDivisionError("a bug")


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def interrupt() -> None:
    raise KeyboardInterrupt


def write_slowly(path: str, seconds: float) -> None:
    """A file written over ``seconds``, the way every output is written (a temporary file renamed at the end)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("begun")
        f.flush()
        time.sleep(seconds)
        f.write(" and done")


def fail_once_begun(folder: str) -> None:
    """Fail once another step has begun writing in ``folder`` (its temporary file is there)."""
    deadline = time.monotonic() + 60
    while not any(Path(folder).iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    raise ProjectError("the other step began")


def _main(argv=None) -> int:
    """Two slow writes side by side, as experiment.py runs the classical families: python side_steps.py FOLDER."""
    folder = Path((argv or sys.argv[1:])[0])
    run_side_by_side([[(name, functools.partial(write_slowly, str(folder / name), 60.0))] for name in ("a", "b")])
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_main))
