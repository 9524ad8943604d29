"""Every command the README documents, run as written on small slices (tests/documented.py): here the README's
list itself and the commands that prepare data, train, predict and measure other writers' digits; the
experiment's and the benchmark's commands run in test_documented_experiment.py, test_documented_seeds.py and
test_documented_bench.py."""

from __future__ import annotations

import pytest

from documented import COVERED_ELSEWHERE, GROUPS, SCRIPTS, commands_of, documented, group_of, run_group


def test_the_readme_documents_the_main_commands():
    scripts = {argv[0] for argv in documented()}
    assert set(SCRIPTS) | {c[0] for c in COVERED_ELSEWHERE} <= scripts, scripts


def test_every_documented_command_is_run_by_one_group():
    commands = [c for c in documented() if not any(tuple(c[: len(e)]) == e for e in COVERED_ELSEWHERE)]
    assert all(group_of(c) in GROUPS for c in commands), [c for c in commands if group_of(c) not in GROUPS]
    run = [c for group in GROUPS for c in commands_of(group)]
    assert sorted(run) == sorted({tuple(c): c for c in commands}.values())  # each distinct command once
    assert all(commands_of(group) for group in GROUPS)  # no group left without a command
    assert {c[0] for c in run} == set(SCRIPTS)


@pytest.mark.slow
def test_every_documented_command_runs(full_mnist, tmp_path, monkeypatch, capsys):
    run_group("models", full_mnist[0], tmp_path, monkeypatch, capsys)
