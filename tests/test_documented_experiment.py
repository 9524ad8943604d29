"""The experiment's documented commands (python experiment.py ..., then python report.py on its records), run as
written on small slices (tests/documented.py)."""

from __future__ import annotations

import pytest

from documented import run_group


@pytest.mark.slow
def test_every_documented_experiment_command_runs(full_mnist, tmp_path, monkeypatch, capsys):
    run_group("experiment", full_mnist[0], tmp_path, monkeypatch, capsys)
