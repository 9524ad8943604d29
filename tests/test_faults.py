"""A full disk, mid-run: one line naming the file, exit code 1, no traceback, and no good file replaced.

The write failures are real ones: each script runs under a file-size limit (RLIMIT_FSIZE, lowered for the
call and raised back after it) too small for what it writes, so the kernel refuses the write exactly where
a full disk would (Python ignores SIGXFSZ, so the write fails with an error instead of killing the process).
"""

from __future__ import annotations

import pytest

import data_prep
import dl_main
import ml_main
from conftest import output_flags

resource = pytest.importorskip("resource", reason="file-size limits are a POSIX feature")


def run_limited(main, argv: list, max_bytes: int, capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``main(argv)`` with no file allowed to grow past ``max_bytes``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, hard))
    try:
        code = main([str(a) for a in argv])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return code, capsys.readouterr().err


def files(folder) -> dict:
    """Every file under ``folder`` (temporary ones included) with its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(result: tuple[int, str], *phrases: str) -> str:
    code, err = result[0], result[1].strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(p in err for p in phrases), err
    return err


@pytest.fixture
def dl_args(full_mnist, tmp_path):
    return [
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--train-size",
        "600",
        "--test-size",
        "100",
        "--data-dir",
        full_mnist[0],
        *output_flags(tmp_path),
    ]


def test_checkpoint_that_cannot_be_written_keeps_the_good_one(dl_args, tmp_path, capsys):
    assert dl_main.main([str(a) for a in dl_args]) == 0
    before = files(tmp_path)
    # The MLP's checkpoint is about 2 MB (weights and optimizer state): it cannot be written under 256 KB.
    full = run_limited(dl_main.main, dl_args, 256 << 10, capsys)
    one_line(full, "cannot write", ".pt")
    assert files(tmp_path) == before  # the good checkpoint, record and figures untouched, no temporary file left


def test_classical_run_on_a_full_disk(full_mnist, tmp_path, capsys):
    argv = [
        "--algo",
        "knn",
        "--recipe",
        "paper",
        "--train-size",
        "3000",
        "--test-size",
        "100",
        "--data-dir",
        full_mnist[0],
        *output_flags(tmp_path),
    ]
    full = run_limited(ml_main.main, argv, 64 << 10, capsys)  # the saved KNN holds its 3000 training images: 2+ MB
    one_line(full, "cannot write")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no partial record, model or figure


def test_data_prep_on_a_full_disk_blames_the_disk_not_the_archives(tmp_path, capsys):
    argv = ["--data-dir", tmp_path / "d", "--plots-dir", tmp_path / "p"]
    err = one_line(run_limited(data_prep.main, argv, 1 << 20, capsys), "cannot write", str(tmp_path / "d"))
    assert "gzip" not in err and "replace" not in err
    assert not list((tmp_path / "d").rglob("*.npz")) and not list((tmp_path / "d").rglob("manifest.json"))
