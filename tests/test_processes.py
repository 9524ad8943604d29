"""Steps side by side in child processes (mnistlab/processes.py), and experiment.py's two classical families run so:
half the threads each, the same records as one family after the other."""

from __future__ import annotations

import functools
import signal
import time

import pytest
from side_steps import crash, fail, fail_once_begun, interrupt, kill_self, write_after, write_slowly

import experiment
import ml_main
import mnistlab.processes
from mnistlab.errors import ProjectError
from mnistlab.files import read_json
from mnistlab.processes import run_side_by_side


def test_lanes_run_at_once_and_their_steps_in_order(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    start = time.perf_counter()
    lanes = [
        [("a", functools.partial(write_after, str(a), 1.0)), ("c", functools.partial(write_after, str(c), 0.5))],
        [("b", functools.partial(write_after, str(b), 2.0))],
    ]
    timings = run_side_by_side(lanes)
    wall = time.perf_counter() - start
    assert list(timings) == ["a", "c", "b"]  # as they finished: c after a in its lane, b beside them
    assert 0.9 < timings["a"] < 1.4 and 0.45 < timings["c"] < 0.9 and 1.9 < timings["b"] < wall
    assert a.stat().st_mtime < c.stat().st_mtime and a.read_text() == b.read_text() == c.read_text() == "done"
    assert wall < 3.5  # the lanes overlapped (one step after another: 3.5 s and the children's start-up)


@pytest.mark.parametrize(
    "step, raised, words",
    [
        (functools.partial(fail, "no such file; fix it"), ProjectError, "broken: no such file; fix it"),
        (crash, RuntimeError, "ZeroDivisionError: a bug"),
        (kill_self, ProjectError, "broken: its process ended without a result (killed by signal 9"),
        (interrupt, KeyboardInterrupt, ""),
    ],
)
def test_a_failing_step_stops_the_others_and_says_why(tmp_path, capfd, step, raised, words):
    late = tmp_path / "late"
    start = time.perf_counter()
    with pytest.raises(raised) as caught:
        run_side_by_side([[("broken", step)], [("slow", functools.partial(write_after, str(late), 30.0))]])
    assert words in str(caught.value)
    assert time.perf_counter() - start < 15 and not late.exists()  # the other step was stopped, not waited for
    assert "Traceback" not in capfd.readouterr().err  # the stopped child went quietly


def test_a_stopped_step_removes_its_temporary_file_though_this_process_ignores_ctrl_c(tmp_path, capfd, monkeypatch):
    """The other lane is stopped by a Ctrl-C, which removes its temporary file, not by SIGTERM after the grace
    period, even where this process ignores SIGINT (as a shell starts a background job): its children inherit that."""
    monkeypatch.setattr(mnistlab.processes, "GRACE", 60.0)  # a child that missed the Ctrl-C would be waited for
    out = tmp_path / "out"
    out.mkdir()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(ProjectError, match="broken: the other step began"):
            broken = ("broken", functools.partial(fail_once_begun, str(out)))
            run_side_by_side([[broken], [("slow", functools.partial(write_slowly, str(out / "slow.txt"), 20.0))]])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert list(out.iterdir()) == []  # neither the temporary file nor a finished one
    assert "Traceback" not in capfd.readouterr().err


def test_the_experiment_runs_the_two_families_and_the_cnn_side_by_side_on_half_the_threads(monkeypatch):
    monkeypatch.setattr(experiment, "usable_cores", lambda: 2)  # the test workers are pinned to one core each
    steps = experiment.plan(experiment.parse_args([]), 0.0)
    titles = [title for title, _ in steps]
    assert titles[0] == "data" and titles[2:] == ["report"] and len(steps) == 3
    first, second, third = steps[1][1]
    paper, tuned = "classical models, paper settings", "classical models, tuned settings"
    assert [t for t, _ in first] == [paper, "network mlp, paper recipe"] and [t for t, _ in second] == [tuned]
    assert [t for t, _ in third] == ["network cnn, paper recipe"]
    for _, run in (first[0], second[0]):
        assert run.func is ml_main.run_all and run.keywords == {"progress": False}
        assert {c["threads"] for c in run.args[0]} == {1}
    assert first[1][1].args[0]["threads"] == 1 and third[0][1].args[0]["threads"] == 1  # each network: one thread
    assert titles[1].endswith("beside classical models, tuned settings and network cnn, paper recipe (1 thread each)")
    no_cnn = experiment.plan(experiment.parse_args(["--skip", "cnn"]), 0.0)
    assert len(no_cnn[1][1]) == 2 and [t for t, _ in no_cnn][2:] == ["report"]  # no empty lane
    one = experiment.plan(experiment.parse_args(["--threads", "1"]), 0.0)
    assert [t for t, _ in one][1:5] == [paper, tuned, "network mlp, paper recipe", "network cnn, paper recipe"]
    assert one[4][1].args[0]["threads"] == 1
    assert all(run.keywords == {"progress": True} for _, run in one[1:3])
    alone = experiment.plan(experiment.parse_args(["--skip", "ml-tuned"]), 0.0)
    assert [t for t, _ in alone][1:3] == [paper, "network mlp, paper recipe"]  # one family: nothing beside it


def test_classical_runs_in_a_child_write_the_records_of_this_process(full_mnist, tmp_path):
    """ml_main.run_all as experiment.py hands it to a child (a partial, no progress bar): the same files and
    predictions as in this process."""
    common = {"data_dir": full_mnist[0], "train_size": 300, "test_size": 100, "threads": 1}
    records = {}
    for way in ("child", "here"):
        out = {f"{d}_dir": str(tmp_path / way / d) for d in ("results", "plots", "checkpoint")}
        configs = [ml_main.make_configs(algo=algo, recipe="paper", **common, **out)[0] for algo in ("knn", "svm")]
        if way == "child":
            timings = run_side_by_side([[("paper", functools.partial(ml_main.run_all, configs, progress=False))]])
            assert list(timings) == ["paper"]
        else:
            ml_main.run_all(configs)
        records[way] = {p.name: read_json(p) for p in (tmp_path / way / "results" / "mnist").glob("*.json")}
        assert len(records[way]) == 2 and len(list((tmp_path / way / "checkpoint" / "mnist").glob("*.skops"))) == 2
    for name, rec in records["child"].items():
        assert rec["predictions"] == records["here"][name]["predictions"], name
