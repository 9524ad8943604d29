"""The benchmark's documented command (python bench.py), run as written with --quick (tests/documented.py)."""

from __future__ import annotations

import pytest

from documented import run_group


@pytest.mark.slow
def test_every_documented_bench_command_runs(full_mnist, tmp_path, monkeypatch, capsys):
    run_group("bench", full_mnist[0], tmp_path, monkeypatch, capsys)


def test_no_script_folder_shadows_a_standard_module():
    """bench.py runs benchmarks/tutorial.py as a script, so benchmarks/ is first on its sys.path: a file there named
    like a standard-library module (numbers.py) replaced it and broke numpy's import in the tutorial run."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for folder in (root, root / "benchmarks", root / "tests"):
        shadows = sorted(p.stem for p in folder.glob("*.py") if p.stem in sys.stdlib_module_names)
        assert not shadows, f"{folder.name}/ shadows the standard library: {shadows}"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "tutorial.py"), "--help"], capture_output=True)
    assert done.returncode == 0 and b"usage" in done.stdout, done.stderr.decode()[-500:]
