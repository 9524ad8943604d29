"""The verified dataset cache: IDX files in, ``<data-dir>/<dataset>/cache.npz`` and ``manifest.json`` out.

``build_cache`` checks the four IDX files and writes the cache (and JSON splits), then a manifest of checksums;
``load_cache`` checks the cache against it (and a known dataset's manifest against its original files' checksums)
before any array is used: a changed or foreign bundled MNIST is rebuilt from its archives, anything else refused.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mnistlab.datasets import CACHE_KEYS, DATASETS, IDX_NAMES, SIDE, known_classes, sha256
from mnistlab.errors import ProjectError
from mnistlab.files import (
    atomic_path,
    check_output_dirs,
    is_regular,
    read_bytes,
    read_json,
    remove_stale_temps,
    write_error,
    write_json,
)
from mnistlab.paths import BUNDLED

MAX_IDX_BYTES = 1 << 30  # an IDX file of 1 million 28x28 images is 784 MB
FORMAT = 2  # bump when the outputs' layout changes, so old outputs are rebuilt


# ---------------------------------------------------------------- sources and checks
def read_sums(path: Path) -> dict:
    """Parse a ``sha256sum``-style file into {file name: digest}; empty if absent."""
    if not is_regular(path, "checksum file"):
        return {}
    sums = {}
    for line in read_bytes(path, 1 << 20, "checksum file").decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def check_sum(path: Path, expected: str | None, fix: str) -> str:
    digest = sha256(path)
    if expected and digest != expected:
        raise ProjectError(
            f"checksum mismatch for {path} (sha256 {digest[:12]}..., expected {expected[:12]}...); {fix}"
        )
    return digest


def check_source_folder(src: Path) -> None:
    """A --source that is not a folder (missing, a file, a loop of links) is one line naming it as the folder."""
    try:
        if not src.is_dir():
            what = (
                "is a broken symbolic link (or a loop of them)"
                if src.is_symlink()
                else "is a file, not a folder"
                if src.exists()
                else "does not exist"
            )
            raise ProjectError(f"source folder {src} {what}; pass --source DIR with the four IDX files")
        src.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a symlink loop, a path too long...
        raise ProjectError(f"cannot open the source folder {src} ({exc}); pass a real folder") from None


def find_source_files(src: Path) -> dict:
    """Map (split, kind) to the file in ``src`` (checked by ``locate``), accepting .gz or not and the dotted variant."""
    found = {}
    for key, base in IDX_NAMES.items():
        dotted = base.replace("-idx", ".idx")
        for name in (base + ".gz", base, dotted + ".gz", dotted):
            if is_regular(src / name, "source file"):
                found[key] = src / name
                break
        else:
            raise ProjectError(
                f"missing {src / (base + '.gz')} (or uncompressed {base}); "
                "restore the file (git checkout data/ for the bundled copy) or use --download / --source DIR"
            )
    return found


def download(dataset: str, data_dir: Path) -> Path:
    """Fetch a known dataset with torchvision's own downloader; return its raw folder."""
    if dataset not in DATASETS:
        raise ProjectError(f"unknown dataset {dataset!r}: pass --source DIR with its four IDX files")
    import torchvision.datasets as tvd  # here: slow to import, and only --download needs it

    cls = getattr(tvd, DATASETS[dataset]["torchvision"])
    root = data_dir / dataset / "download"
    try:
        cls(root=str(root), train=True, download=True)
        cls(root=str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError for network problems
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__  # torchvision's last line holds the cause
        raise ProjectError(
            f"could not download {dataset} through torchvision ({reason}); "
            f"put its four IDX files in a folder and pass --source DIR"
        ) from None
    return root / cls.__name__ / "raw"


def stage_raw(files: dict, raw_dir: Path, expected: dict, fix: str) -> dict:
    """Decompress (or copy) each file into ``raw_dir`` atomically, checked against ``expected``; {IDX name: sha256}."""
    sums = {}
    for key, src in files.items():
        base = IDX_NAMES[key]
        with atomic_path(raw_dir / base) as tmp:
            opener = gzip.open if src.suffix == ".gz" else open
            try:
                with opener(src, "rb") as fin:
                    data = fin.read(MAX_IDX_BYTES + 1)  # bounded: a gzip may inflate to gigabytes
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise ProjectError(f"{src} is not a valid gzip file or is truncated ({exc}); replace it") from None
            except OSError as exc:
                raise ProjectError(f"cannot read {src} ({exc.strerror or exc}); check its permissions") from None
            if len(data) > MAX_IDX_BYTES:
                raise ProjectError(f"{src} holds over {MAX_IDX_BYTES >> 20} MB of data, more than any MNIST-format "
                                   "file (60000 images are 47 MB); replace it")  # fmt: skip
            tmp.write_bytes(data)  # an OSError here (a full disk) is reported by atomic_path, naming the file
            sums[base] = check_sum(tmp, expected.get(base), fix=f"{src} has the wrong content; {fix}")
    return sums


def parse_split(raw_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse one split with torchvision's IDX readers; any malformed file is one clear line."""
    from torchvision.datasets.mnist import read_image_file, read_label_file  # here: torchvision is slow to import

    arrays = []
    for kind, reader in (("images", read_image_file), ("labels", read_label_file)):
        path = raw_dir / IDX_NAMES[(split, kind)]
        try:
            arrays.append(reader(str(path)).numpy())
        except (AssertionError, TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:
            detail = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
            raise ProjectError(
                f"{path} is not a valid IDX {kind} file ({detail}); truncated, corrupt "
                f"or the wrong kind of file: replace it"
            ) from None
    x, y = arrays[0].astype(np.uint8), arrays[1].astype(np.int64)
    if x.shape[1:] != (28, 28):
        raise ProjectError(f"{raw_dir}: {split} images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
    if len(x) != len(y):
        raise ProjectError(
            f"{raw_dir}: the {split} split has {len(x)} images but {len(y)} labels; the files do not belong together"
        )
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        bad = int(y[(y < 0) | (y >= n_classes)][0])
        raise ProjectError(f"{raw_dir}: {split} labels contain {bad}, outside 0-{n_classes - 1}; wrong labels file?")
    return x, y


# ---------------------------------------------------------------- outputs
def write_json_split(path: Path, x: np.ndarray, y: np.ndarray, quiet: bool = False) -> None:
    """Stream one split to JSON: an array with one record per line, so it is valid JSON and line-readable."""
    from tqdm import tqdm  # here: importing this module stays light (a Ctrl-C while a script starts, errors.py)

    with open(path, "w") as f:
        f.write("[\n")
        for i in tqdm(range(len(x)), desc=path.name, unit="img", disable=quiet or None, mininterval=0.5):
            record = json.dumps({"img": x[i].tolist(), "label": int(y[i])}, separators=(",", ":"))
            f.write(record + (",\n" if i + 1 < len(x) else "\n"))
        f.write("]\n")


def read_json_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a split written by ``write_json_split`` back into arrays (one line at a time)."""
    xs, ys = [], []
    try:
        with open(path) as f:
            if f.readline().strip() != "[":
                raise ValueError("does not start with '['")
            for line in f:
                line = line.strip().rstrip(",")
                if line == "]":
                    break
                rec = json.loads(line)
                xs.append(rec["img"])
                ys.append(rec["label"])
            else:
                raise ValueError("ends before the closing ']'")
        x = np.asarray(xs, dtype=np.int64)
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.min(initial=0) < 0 or x.max(initial=0) > 255:
            raise ValueError("images are not 28x28 integers in 0-255")
    except FileNotFoundError:
        raise ProjectError(f"{path} not found; run python data_prep.py") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProjectError(f"{path} is malformed ({exc}); rebuild it with python data_prep.py --force") from None
    return x.astype(np.uint8), np.asarray(ys, dtype=np.int64)


def outputs_valid(out: Path, fingerprint: dict, required: set) -> bool:
    """True when the manifest matches this source and format, lists every ``required`` output, and every output
    still has its recorded checksum."""
    try:
        manifest = read_json(out / "manifest.json", limit=1 << 20)
        if manifest.get("format") != FORMAT or manifest.get("source_sha256") != fingerprint:
            return False
        return required <= set(manifest["outputs"]) and all(
            is_regular(out / name) and sha256(out / name) == digest for name, digest in manifest["outputs"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError, ProjectError):
        return False


# ---------------------------------------------------------------- pipeline
def locate(dataset: str, source: Path | None, data_dir: Path, use_download: bool) -> tuple[Path, dict, str]:
    """The source folder, the checksums its files must have (uncompressed), and the fix to suggest."""
    if source is None and not use_download and dataset == "mnist":
        source = BUNDLED
    source = Path(source) if source is not None else download(dataset, data_dir)
    check_source_folder(source)  # before its checksum file is looked for: a loop of links is named as the folder
    expected = {**read_sums(source / "SHA256SUMS.uncompressed"), **DATASETS.get(dataset, {}).get("sha256", {})}
    fix = "restore the file (git checkout data/ for the bundled copy)"
    if dataset in DATASETS and "sha256" in DATASETS[dataset]:
        fix = f"these are not the original {dataset} files (swapped, modified or another dataset?); restore them"
    return source, expected, fix


def build_cache(
    dataset: str = "mnist",
    source: Path | None = None,
    data_dir: Path = BUNDLED,
    use_download: bool = False,
    force: bool = False,
    write_json_files: bool = True,
    quiet: bool = False,
) -> dict:
    """Build (or reuse) the verified outputs for one dataset in ``<data_dir>/<dataset>/``; return its manifest."""
    log = (lambda *a: None) if quiet else print
    data_dir, out = Path(data_dir), Path(data_dir) / dataset
    check_output_dirs({"--data-dir": out})  # before any work
    remove_stale_temps(out, out / "raw")
    source, expected, fix = locate(dataset, source, data_dir, use_download)
    files = find_source_files(source)
    sums_gz = read_sums(source / "SHA256SUMS")
    fingerprint = {f.name: check_sum(f, sums_gz.get(f.name), fix) for f in files.values()}
    if not sums_gz and not expected:
        log(f"note: no SHA256SUMS in {source}; validating the IDX files and labels only")
    required = {"cache.npz", "train.json", "test.json"} if write_json_files else {"cache.npz"}
    if not force and outputs_valid(out, fingerprint, required):  # a --no-json build lacks the JSON
        log(f"reusing verified outputs in {out}/ (use --force to rebuild)")
        return read_json(out / "manifest.json")
    manifest = build(dataset, source, files, out, expected, fix, fingerprint, write_json_files, quiet)
    log(f"wrote {out}/ ({manifest['n_train']} train, {manifest['n_test']} test)")
    return manifest


def build(dataset, source, files, out, expected, fix, fingerprint, write_json_files, quiet) -> dict:
    """Decompress, verify, parse and write every output; the manifest last, as its presence vouches for the rest."""
    idx_sums = stage_raw(files, out / "raw", expected, fix)
    classes = known_classes(dataset)
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"], arrays[f"y_{split}"] = parse_split(out / "raw", split, len(classes))
    # Every output is written beside its final name first; only when all of them are on disk is the old manifest
    # removed and are they renamed into place. A failure before that (a full disk) leaves the old build whole.
    names = ["cache.npz"] + (["train.json", "test.json"] if write_json_files else [])
    with contextlib.ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(out / name)) for name in names}
        for name in names:
            try:  # here, so that a failed write names its own file (not the one whose context it leaves first)
                if name == "cache.npz":
                    with open(tmp[name], "wb") as f:  # a file object: numpy adds no suffix
                        np.savez(f, **arrays, classes=np.array(classes))
                else:
                    split = name.removesuffix(".json")
                    write_json_split(tmp[name], arrays[f"x_{split}"], arrays[f"y_{split}"], quiet)
            except OSError as exc:
                raise write_error(out / name, exc) from None
        outputs = {name: sha256(tmp[name]) for name in names}
        try:
            (out / "manifest.json").unlink(missing_ok=True)  # from here until the new one, nothing is vouched for
        except OSError as exc:  # a folder named manifest.json
            raise write_error(out / "manifest.json", exc) from None
    manifest = {
        "format": FORMAT,
        "dataset": dataset,
        "source": str(source),
        "source_sha256": fingerprint,
        "idx_sha256": idx_sums,
        "checksums_verified": bool(expected),
        "n_train": len(arrays["y_train"]),
        "n_test": len(arrays["y_test"]),
        "classes": classes,
        "outputs": outputs,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


# ---------------------------------------------------------------- the verified cache
def cache_problem(folder: Path, dataset: str) -> str | None:
    """Why the cache in ``folder`` cannot be trusted, or None when its manifest vouches for it."""
    try:
        if not is_regular(folder / "manifest.json", "manifest"):
            return "it has no manifest.json (not built by data_prep.py, or its build was interrupted)"
        data = read_bytes(folder / "manifest.json", 1 << 20, "manifest")
    except ProjectError as exc:  # a folder, a FIFO, a loop or a huge file where the manifest should be
        return str(exc).split(";")[0]
    try:
        manifest = json.loads(data)
        recorded = manifest["outputs"]["cache.npz"]
        idx_sums = manifest.get("idx_sha256", {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return "its manifest.json is unreadable"
    known = DATASETS.get(dataset, {}).get("sha256")
    if known and idx_sums != known:
        return f"its manifest does not list the known {dataset} files"
    try:
        digest = sha256(folder / "cache.npz")
    except OSError as exc:
        return f"cache.npz cannot be read ({exc.strerror or exc})"
    if digest != recorded:
        return "cache.npz differs from what data_prep.py recorded (changed since it was built)"
    return None


def array_sizes(path: Path) -> None:
    """Check the cache's arrays by their headers, before any is read: a header that claims more than the file
    holds (or than any dataset of this project has) would otherwise make numpy allocate it all first."""
    with zipfile.ZipFile(path) as zf:
        for key in CACHE_KEYS:
            info = zf.getinfo(f"{key}.npy")  # KeyError: a missing array
            with zf.open(info) as f:
                fmt = np.lib.format
                version = fmt.read_magic(f)
                shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
                header = f.tell() if f.seekable() else None
            if dtype.hasobject:
                raise ValueError(f"{key} holds Python objects")
            size = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if size > MAX_IDX_BYTES or (header is not None and size != info.file_size - header):
                raise ValueError(f"{key} claims {size} bytes of data ({shape}); the file holds {info.file_size}")


def read_arrays(path: Path) -> dict:
    """The cache's arrays, checked for shape, type and label range; ProjectError when malformed."""
    try:
        array_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            cache = {k: npz[k] for k in CACHE_KEYS}
        classes = cache["classes"]
        n_classes = len(classes) if classes.ndim == 1 else 0
        if n_classes < 2 or len(set(classes.tolist())) != n_classes:
            raise ValueError(f"its class names are {classes.tolist()!r:.80}, not two or more distinct names")
        for split in ("train", "test"):
            x, y = cache[f"x_{split}"], cache[f"y_{split}"]
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (SIDE, SIDE):
                raise ValueError(f"{split} images are {x.dtype} {x.shape}, not uint8 (N, {SIDE}, {SIDE})")
            if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
                raise ValueError(f"{split} labels are {y.dtype} {y.shape}, not {len(x)} whole numbers")
            if not len(y):
                raise ValueError(f"its {split} split is empty")
            if y.min() < 0 or y.max() >= n_classes:
                raise ValueError(f"{split} labels fall outside 0-{n_classes - 1}")
            cache[f"y_{split}"] = y.astype(np.int64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise ProjectError(f"{path} is malformed ({exc}); rebuild it with python data_prep.py --force") from None
    return cache


def load_cache(dataset: str = "mnist", data_dir: Path = BUNDLED) -> dict:
    """The verified cache of a dataset. The bundled MNIST is (re)built on demand; anything else must be prepared."""
    folder = Path(data_dir) / dataset
    bundled = dataset == "mnist" and Path(data_dir).resolve() == BUNDLED.resolve()
    try:
        built = is_regular(folder / "cache.npz", "dataset cache")
        problem = cache_problem(folder, dataset) if built else "it has not been built"
    except ProjectError as exc:  # a folder, a FIFO or a loop of links named cache.npz
        built, problem = True, str(exc).split(";")[0]
    if problem and bundled:
        if built:
            print(f"note: rebuilding {folder}/ from the bundled archives: {problem}")
        build_cache(dataset, data_dir=data_dir, force=True, write_json_files=False, quiet=True)
    elif problem:
        raise ProjectError(
            f"cannot use the {dataset} data in {folder}/: {problem}; run python data_prep.py --dataset {dataset} "
            f"--data-dir {data_dir} --force (with --source DIR or --download where it is not bundled)"
        )
    return read_arrays(folder / "cache.npz")
