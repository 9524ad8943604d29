"""Ctrl-C, an ASCII-only terminal and a refused rebuild: one line and a clean exit, never a traceback or lost data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep import main as data_prep_main

REPO = Path(__file__).resolve().parent.parent


def as_in_a_terminal() -> None:
    """In the child, before it starts: Ctrl-C delivered and at its default, as in a terminal. A child inherits
    the parent's blocked signals and ignored ones; in a full run on Python 3.13 the test worker's left SIGINT so
    that data_prep.py never saw it (exit 0), while the same test alone passed."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def script(*argv, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, argv)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
                            preexec_fn=as_in_a_terminal, **kwargs)  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_in_data_prep_is_one_line(tmp_path):
    proc = script("data_prep.py", "--data-dir", tmp_path / "d", "--plots-dir", tmp_path / "p", "--force")
    # Ctrl-C once the build has begun (its folder exists), not after a fixed wait that a loaded machine outlasts.
    deadline = time.monotonic() + 60
    while not (tmp_path / "d" / "mnist").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # decompressing and writing the splits takes several seconds more
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "data_prep.py: interrupted (Ctrl-C); nothing half-written was kept"
    assert not (tmp_path / "d" / "mnist" / "manifest.json").exists()
    assert not [p for p in (tmp_path / "d").rglob("*.tmp*")]  # no temporary file left behind


@pytest.mark.slow
def test_ascii_terminal_gets_plus_minus_replaced_not_a_crash(full_mnist, tmp_path):
    out = {k: tmp_path / k for k in ("r", "p", "c")}
    proc = script("ml_main.py", "--algo", "dt", "--seeds", "2", "--train-size", "300", "--test-size", "100",
                  "--data-dir", full_mnist[0], "--results-dir", out["r"], "--plots-dir", out["p"], "--checkpoint-dir",
                  out["c"], env={"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""})  # fmt: skip
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "test accuracy" in stdout and "% ? " in stdout  # the "±" the terminal cannot show


def test_refused_source_keeps_the_good_prepared_dataset(tmp_path, small_source, capsys):
    from mnistlab.data import load_split

    args = ["--dataset", "tiny", "--data-dir", tmp_path / "d", "--plots-dir", tmp_path / "p", "--no-json"]
    assert data_prep_main([str(a) for a in ["--source", small_source, *args]]) == 0
    manifest = (tmp_path / "d" / "tiny" / "manifest.json").read_text()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for f in small_source.iterdir():  # the same files, one of them damaged
        (wrong / f.name).write_bytes(f.read_bytes()[:-7] if "labels" in f.name else f.read_bytes())
    code = data_prep_main([str(a) for a in ["--source", wrong, "--force", *args]])
    assert code == 1 and "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "d" / "tiny" / "manifest.json").read_text() == manifest  # still vouched for
    assert json.loads(manifest)["n_train"] == len(load_split("train", "tiny", tmp_path / "d")[1])


@pytest.mark.parametrize("seed", ["4294967296", "18446744073709551616"])
def test_seed_beyond_the_generators_range_is_refused_by_argparse(seed, capsys):
    import ml_main

    with pytest.raises(SystemExit) as exc:
        ml_main.make_configs(["--seed", seed])
    assert exc.value.code == 2 and "--seed: must be from 0 to 4294967295" in capsys.readouterr().err


def test_ctrl_c_stops_the_steps_side_by_side_with_one_line(tmp_path):
    """A terminal's Ctrl-C reaches the whole process group: the parent and its two children (experiment.py's classical
    families run so; here two slow writes, tests/side_steps.py) stop, with one line and exit 130, neither file
    half-written and no process left running."""
    proc = script(REPO / "tests" / "side_steps.py", tmp_path, env={"PYTHONPATH": str(REPO)}, start_new_session=True)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob(".*.tmp"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until both children are writing
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["side_steps.py: interrupted (Ctrl-C); nothing half-written was kept"]
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits once it reads the end of its pipe
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not group_alive(proc.pid)
    assert list(tmp_path.iterdir()) == []  # no file, whole or temporary


@pytest.mark.slow
def test_the_steps_side_by_side_stop_when_their_parent_is_killed(tmp_path):
    """kill -9 of the parent alone (`kill -9 PID`, the out-of-memory killer): its children stop as after a Ctrl-C,
    their temporary files removed, instead of going on for minutes (experiment.py's classical families would fit
    on and write their records after it was gone)."""
    proc = script(REPO / "tests" / "side_steps.py", tmp_path, env={"PYTHONPATH": str(REPO)}, start_new_session=True)
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob(".*.tmp"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until both children are writing
    proc.kill()  # the parent only, not its process group
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 15  # their steps would write for 60 s more
    while (list(tmp_path.iterdir()) or group_alive(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.iterdir()) == [] and not group_alive(proc.pid)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
