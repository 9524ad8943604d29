"""The benchmark's documented command (python bench.py), run as written with --quick (tests/documented.py)."""

from __future__ import annotations

import pytest

from documented import run_group


@pytest.mark.slow
def test_every_documented_bench_command_runs(full_mnist, tmp_path, monkeypatch, capsys):
    run_group("bench", full_mnist[0], tmp_path, monkeypatch, capsys)
