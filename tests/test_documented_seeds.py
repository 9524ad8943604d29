"""The documented experiment over several seeds (python experiment.py --recipe fast --seeds 3), run as written on
small slices (tests/documented.py)."""

from __future__ import annotations

import pytest

from documented import run_group


@pytest.mark.slow
def test_the_documented_experiment_over_seeds_runs(full_mnist, tmp_path, monkeypatch, capsys):
    run_group("seeds", full_mnist[0], tmp_path, monkeypatch, capsys)
