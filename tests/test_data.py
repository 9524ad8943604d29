"""data_prep.py on the real data: checksums, IDX parsing, JSON, subsets, bad input, atomicity."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

import data_prep
from conftest import SMALL_TEST, SMALL_TRAIN, write_idx, write_source
from data_prep import main, prepare
from mnistlab import cache
from mnistlab.cache import read_json_split, read_sums
from mnistlab.data import load_split, train_val_indices
from mnistlab.datasets import IDX_NAMES, sha256
from mnistlab.errors import ProjectError

DATA = Path(__file__).resolve().parent.parent / "data"


def run_cli(capsys, *args):
    """Run data_prep's CLI; return (exit code, stdout, stderr). Figures go beside --data-dir, never into the repo."""
    if "--plots-dir" not in args and "--data-dir" in args:
        args = (*args, "--plots-dir", Path(args[args.index("--data-dir") + 1]).parent / "plots")
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def prepared_tiny(tmp_path_factory, small_arrays) -> Path:
    """A data folder with the small slice prepared as dataset "tiny" without JSON files, built once per module."""
    root = tmp_path_factory.mktemp("prepared-tiny")
    source = write_source(root / "src", small_arrays)
    prepare("tiny", source=source, data_dir=root / "data", plots_dir=root, write_json_files=False, quiet=True)
    return root / "data"


def copy_of(prepared: Path, tmp_path: Path) -> Path:
    """A private copy of a prepared data folder, for a test to damage."""
    return Path(shutil.copytree(prepared, tmp_path / "data"))


def assert_clean_failure(code, err, *phrases):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


# ---------------------------------------------------------------- the bundled MNIST
def test_bundled_checksums_and_known_values(full_mnist):
    data_dir, manifest = full_mnist
    assert manifest["checksums_verified"] is True
    assert (manifest["n_train"], manifest["n_test"]) == (60000, 10000)
    sums = read_sums(DATA / "SHA256SUMS.uncompressed")
    for name in IDX_NAMES.values():
        assert sha256(data_dir / "mnist" / "raw" / name) == sums[name]
    x, y = load_split("train", data_dir=data_dir)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert y[0] == 5 and load_split("test", data_dir=data_dir)[1][0] == 7
    assert x[0].max() == 255 and x[0, 0].sum() == 0  # ink in the middle, empty border
    assert np.bincount(y).tolist()[1] == 6742  # the well-known count of ones in the training set


def test_checksum_mismatch_is_reported(bundled_copy, tmp_path, capsys):
    victim = bundled_copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "--source", bundled_copy, "--dataset", "mnist", "--data-dir", tmp_path / "out")
    assert_clean_failure(code, err, "checksum mismatch", "t10k-labels-idx1-ubyte.gz")
    assert not (tmp_path / "out" / "mnist" / "manifest.json").exists()


# ---------------------------------------------------------------- outputs
@pytest.mark.slow
def test_json_format_and_round_trip(small_source, tmp_path):
    data_dir = tmp_path / "data"
    manifest = prepare("tiny", source=small_source, data_dir=data_dir, plots_dir=tmp_path, quiet=True)
    assert manifest["checksums_verified"] is False and manifest["n_train"] == SMALL_TRAIN
    records = json.loads((data_dir / "tiny" / "train.json").read_text())  # valid JSON as a whole
    assert len(records) == SMALL_TRAIN
    first = records[0]
    assert set(first) == {"img", "label"} and first["label"] == 5
    assert len(first["img"]) == 28 and all(len(row) == 28 for row in first["img"])
    assert all(isinstance(v, int) and 0 <= v <= 255 for row in first["img"] for v in row)
    for split in ("train", "test"):
        x, y = read_json_split(data_dir / "tiny" / f"{split}.json")
        xc, yc = load_split(split, dataset="tiny", data_dir=data_dir)
        assert np.array_equal(x, xc) and np.array_equal(y, yc)
    assert (tmp_path / "tiny" / "samples.png").stat().st_size > 10_000


def test_uncompressed_source_and_folder_name(small_arrays, tmp_path, capsys):
    src = write_source(tmp_path / "My Digits", small_arrays, gz=False)
    code, out, _ = run_cli(capsys, "--source", src, "--data-dir", tmp_path / "d", "--plots-dir", tmp_path, "--no-json")
    assert code == 0 and "no SHA256SUMS" in out
    x, y = load_split("test", dataset="my-digits", data_dir=tmp_path / "d")
    assert np.array_equal(x, small_arrays["x_test"]) and np.array_equal(y, small_arrays["y_test"])
    assert not (tmp_path / "d" / "my-digits" / "train.json").exists()


def test_subset_selection(full_mnist):
    data_dir = full_mnist[0]
    x, y = load_split("train", data_dir=data_dir)
    xf, yf = load_split("train", data_dir=data_dir, size=6000)
    assert np.array_equal(xf, x[:6000]) and np.array_equal(yf, y[:6000])
    train, val = train_val_indices(60000, 5000, 10000)  # the one validation split of both mains
    assert len(val) == 10000 and len(train) == 5000 and not set(train) & set(val)
    assert np.array_equal(val, train_val_indices(60000, None, 10000)[1])  # the same draw whatever the train size
    with pytest.raises(ProjectError, match="asked for 10001 images but the mnist test split has 10000"):
        load_split("test", data_dir=data_dir, size=10001)
    with pytest.raises(ProjectError, match="choose a size from 1"):
        load_split("test", data_dir=data_dir, size=0)


# ---------------------------------------------------------------- idempotency and atomicity
@pytest.mark.slow
def test_second_run_reuses_and_force_rebuilds(small_source, tmp_path, capsys):
    args = ("--source", small_source, "--dataset", "tiny", "--data-dir", tmp_path / "d", "--plots-dir", tmp_path)
    assert run_cli(capsys, *args)[0] == 0
    cache = tmp_path / "d" / "tiny" / "cache.npz"
    before = cache.stat().st_mtime_ns
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "reusing verified outputs" in out and cache.stat().st_mtime_ns == before
    code, out, _ = run_cli(capsys, *args, "--force")
    assert code == 0 and "wrote" in out and cache.stat().st_mtime_ns != before
    # An output that no longer matches the manifest is never trusted.
    (tmp_path / "d" / "tiny" / "test.json").write_text("[\n]\n")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "wrote" in out
    assert len(read_json_split(tmp_path / "d" / "tiny" / "test.json")[1]) == SMALL_TEST


@pytest.mark.slow
def test_interrupted_write_leaves_no_trusted_output(small_source, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_dumps = json.dumps

    def dumps_then_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 50:
            raise KeyboardInterrupt
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(cache.json, "dumps", dumps_then_interrupt)
    out_dir = tmp_path / "d" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        prepare("tiny", source=small_source, data_dir=tmp_path / "d", plots_dir=tmp_path, quiet=True)
    assert not (out_dir / "train.json").exists() and not (out_dir / "manifest.json").exists()
    assert not [p for p in out_dir.rglob("*") if ".tmp" in p.name]  # temporary files cleaned up
    monkeypatch.undo()
    code, out, _ = run_cli(capsys, "--source", small_source, "--dataset", "tiny", "--data-dir", tmp_path / "d")
    assert code == 0 and "reusing" not in out and (out_dir / "manifest.json").exists()


# ---------------------------------------------------------------- bad input
def test_missing_file(small_source, tmp_path, capsys):
    (small_source / "train-labels-idx1-ubyte.gz").unlink()
    code, _, err = run_cli(capsys, "--source", small_source, "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "missing", "train-labels-idx1-ubyte", "--source")


def test_missing_source_folder(tmp_path, capsys):
    code, _, err = run_cli(capsys, "--source", tmp_path / "nowhere", "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "does not exist")


def test_truncated_gzip(small_source, tmp_path, capsys):
    victim = small_source / "train-images-idx3-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-400])
    code, _, err = run_cli(capsys, "--source", small_source, "--dataset", "tiny", "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "not a valid gzip file or is truncated", "train-images-idx3-ubyte.gz")
    assert not (tmp_path / "d" / "tiny" / "raw" / "train-images-idx3-ubyte").exists()


def test_not_gzip_at_all(small_source, tmp_path, capsys):
    (small_source / "t10k-images-idx3-ubyte.gz").write_bytes(b"this is not gzip data at all")
    code, _, err = run_cli(capsys, "--source", small_source, "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "not a valid gzip file")


def test_truncated_idx_content(small_source, tmp_path, capsys):
    victim = small_source / "t10k-images-idx3-ubyte.gz"
    content = gzip.decompress(victim.read_bytes())
    victim.write_bytes(gzip.compress(content[:-100]))
    code, _, err = run_cli(capsys, "--source", small_source, "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "not a valid IDX images file", "truncated, corrupt")


def test_wrong_magic_number(small_source, small_arrays, tmp_path, capsys):
    write_idx(small_source / "train-images-idx3-ubyte", small_arrays["x_train"], magic=0x801)
    code, _, err = run_cli(capsys, "--source", small_source, "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "not a valid IDX images file")


def test_counts_disagree(small_source, small_arrays, tmp_path, capsys):
    write_idx(small_source / "train-labels-idx1-ubyte", small_arrays["y_train"][:-1])
    code, _, err = run_cli(capsys, "--source", small_source, "--dataset", "tiny", "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, f"{SMALL_TRAIN} images but {SMALL_TRAIN - 1} labels")
    assert not (tmp_path / "d" / "tiny" / "cache.npz").exists()


def test_labels_out_of_range(small_source, small_arrays, tmp_path, capsys):
    labels = small_arrays["y_test"].copy()
    labels[7] = 12
    write_idx(small_source / "t10k-labels-idx1-ubyte", labels)
    code, _, err = run_cli(capsys, "--source", small_source, "--data-dir", tmp_path / "d")
    assert_clean_failure(code, err, "labels contain 12", "outside 0-9")


def test_unwritable_output_folder(small_source, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(capsys, "--source", small_source, "--data-dir", blocker / "data")
    assert_clean_failure(code, err, "cannot write to", "writable")


@pytest.mark.parametrize("content", ['[\n{"img": [[1, 2]], "label": 3}\n]\n', '[\n{"img": ', "not json"])
def test_malformed_json(tmp_path, content):
    path = tmp_path / "train.json"
    path.write_text(content)
    with pytest.raises(ProjectError, match="malformed"):
        read_json_split(path)


def test_malformed_cache(prepared_tiny, tmp_path):
    data_dir = copy_of(prepared_tiny, tmp_path)
    cache = data_dir / "tiny" / "cache.npz"
    cache.write_bytes(cache.read_bytes()[:1000])
    with pytest.raises(ProjectError, match="differs from what data_prep.py recorded.*--force"):
        load_split("train", dataset="tiny", data_dir=data_dir)


@pytest.mark.slow
def test_json_written_after_a_no_json_build(small_source, tmp_path):
    prepare("tiny", source=small_source, data_dir=tmp_path, plots_dir=tmp_path, write_json_files=False, quiet=True)
    assert not (tmp_path / "tiny" / "train.json").exists()
    manifest = prepare("tiny", source=small_source, data_dir=tmp_path, plots_dir=tmp_path, quiet=True)
    assert {"train.json", "test.json"} <= set(manifest["outputs"])
    x, y = read_json_split(tmp_path / "tiny" / "test.json")
    assert len(y) == 100


def test_unprepared_data_dir_is_an_error_not_a_new_copy(tmp_path):
    with pytest.raises(ProjectError, match="cannot use the mnist data in .*not been built; run python data_prep.py"):
        load_split("train", data_dir=tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_download_failure_points_to_source(tmp_path, monkeypatch, capsys):
    import torchvision.datasets.mnist as tv_mnist

    def offline(*args, **kwargs):
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    code, _, err = run_cli(capsys, "--dataset", "fashion-mnist", "--data-dir", tmp_path)
    assert_clean_failure(code, err, "could not download fashion-mnist", "--source DIR")


def test_bad_dataset_name(capsys):
    code, _, err = run_cli(capsys, "--dataset", "Bad Name!")
    assert_clean_failure(code, err, "--dataset 'Bad Name!'")


# ---------------------------------------------------------------- a tampered cache is never used
def tamper(npz_path, change):
    with np.load(npz_path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    with open(npz_path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.update(y_train=(a["y_train"] + 1) % 10),  # labels shifted
        lambda a: a["x_test"].__setitem__(0, 255 - a["x_test"][0]),  # an image changed
        lambda a: a.update(x_train=a["x_test"], y_train=a["y_test"], x_test=a["x_train"], y_test=a["y_train"]),
    ],
)
def test_tampered_cache_is_refused(prepared_tiny, tmp_path, change):
    data_dir = copy_of(prepared_tiny, tmp_path)
    good = load_split("train", "tiny", data_dir)
    tamper(data_dir / "tiny" / "cache.npz", change)
    with pytest.raises(ProjectError, match="differs from what data_prep.py recorded"):
        load_split("train", "tiny", data_dir)  # not a bundled dataset: refused with one line
    assert good[0].shape[1:] == (28, 28)


@pytest.mark.slow
def test_tampered_bundled_cache_is_rebuilt(bundled_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mnistlab.cache.BUNDLED", bundled_copy)
    x, y = load_split("test", data_dir=bundled_copy, size=100)  # built on first use
    tamper(bundled_copy / "mnist" / "cache.npz", lambda a: a.update(y_test=(a["y_test"] + 1) % 10))
    x2, y2 = load_split("test", data_dir=bundled_copy, size=100)
    assert "rebuilding" in capsys.readouterr().out
    assert np.array_equal(y, y2) and np.array_equal(x, x2)


def test_swapped_known_files_are_refused(tmp_path, capsys):
    src = tmp_path / "swapped"
    src.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        other = name.replace("train", "t10k")
        (src / f"{name}.gz").write_bytes((DATA / f"{other}.gz").read_bytes())
        (src / f"{other}.gz").write_bytes((DATA / f"{name}.gz").read_bytes())
    code, _, err = run_cli(capsys, "--dataset", "mnist", "--source", src, "--data-dir", tmp_path / "d", "--no-json")
    assert_clean_failure(code, err, "not the original mnist files")
    assert not (tmp_path / "d" / "mnist" / "cache.npz").exists()


@pytest.mark.slow
def test_killed_build_leaves_nothing_behind(small_source, tmp_path, capsys):
    out = tmp_path / "d" / "tiny"
    out.mkdir(parents=True)
    stale = out / ".cache.npz.999999999.abcdef.tmp.npz"  # a temporary file whose process is gone
    stale.write_bytes(b"x" * 1000)
    code, _, _ = run_cli(
        capsys,
        "--source",
        small_source,
        "--dataset",
        "tiny",
        "--data-dir",
        tmp_path / "d",
        "--plots-dir",
        tmp_path,
        "--no-json",
    )
    assert code == 0 and not stale.exists()


def test_importing_does_nothing(tmp_path):
    import importlib

    before = set(Path(".").iterdir())
    importlib.reload(data_prep)
    assert set(Path(".").iterdir()) == before
