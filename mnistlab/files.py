"""Reading and writing files safely: atomic writes, writable output folders, JSON records."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from mnistlab.errors import ProjectError


def temp_name(path: Path) -> str:
    """A hidden temporary name beside ``path`` that carries this process's id, so a later run can tell a file
    left by a killed run (its process is gone) from one that a running process is still writing."""
    return f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp{path.suffix}"


TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{6}\.tmp")


def remove_stale_temps(*folders: Path) -> None:
    """Delete temporary files that killed runs left in ``folders`` (their process no longer exists)."""
    for folder in map(Path, folders):
        for path in folder.glob(".*.tmp*") if folder.is_dir() else ():
            match = TEMP_PATTERN.match(path.name)
            if match and not process_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    path.unlink()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:  # any but "no such process": it is someone else's (or we cannot tell), so leave its file
        return not isinstance(exc, ProcessLookupError)
    return True


def write_error(path: Path, exc: OSError) -> ProjectError:
    """One line for a failed write, naming the file, the cause and what to do about it."""
    space, move = "free some space or choose another output folder", "move it or choose another output folder"
    in_the_way = ("a file stands where a folder of this path should be", move)
    causes = {
        errno.ENOSPC: ("no space left on the device", space),
        errno.EDQUOT: ("disk quota exceeded", space),
        errno.EFBIG: ("the file grew past this process's file-size limit (ulimit -f)", "raise the limit or " + space),
        errno.EROFS: ("the file system is read-only", "choose another output folder"),
        errno.EACCES: ("permission denied", "choose another output folder"),
        errno.EPERM: ("permission denied", "choose another output folder"),
        errno.ENOTDIR: in_the_way,
        errno.EEXIST: in_the_way,
        errno.EISDIR: ("a folder has this file's name", "move the folder away or choose another output folder"),
        errno.ENAMETOOLONG: ("a name in the path is too long", "choose a shorter path"),
    }
    cause, fix = causes.get(exc.errno, (exc.strerror or str(exc), space))
    return ProjectError(f"cannot write {path}: {cause}; {fix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """The one way files are written: yield a temporary path beside ``path``; on success fsync it and rename it
    over ``path``, on any failure (exception, Ctrl-C, a full disk) remove it, so no half-written file ever has the
    final name; an ``OSError`` becomes one line naming the file."""
    path = Path(path)
    tmp = path.parent / temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the kernel applies the umask
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    except RuntimeError as exc:  # torch.save reports a failed write as RuntimeError ("enforce fail ...")
        if "enforce fail" not in str(exc):
            raise
        raise write_error(path, OSError(errno.EIO, "the write failed (disk full?)")) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


MIN_FREE_MB = 50  # room that a run needs for its records, figures and checkpoints


def check_output_dirs(folders: dict) -> None:
    """Fail before any work, not after minutes of training, when an output folder cannot be written.

    ``folders`` maps each folder's flag to the folder: each is created, written to, checked for free space and
    cleaned of the temporary files a killed run left there."""
    for flag, folder in folders.items():
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder) as f:
                f.write(b"x")
                f.flush()
            free_mb = shutil.disk_usage(folder).free / 2**20
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            reason = getattr(exc, "strerror", None) or str(exc)
            if isinstance(exc, (FileExistsError, NotADirectoryError)):
                reason = "a file stands where the folder (or one above it) should be"
            raise ProjectError(f"cannot write to {folder}/: {reason}; choose a writable folder with {flag}") from None
        if free_mb < MIN_FREE_MB:
            raise ProjectError(f"only {free_mb:.0f} MB free in {folder}/; free some space or choose another {flag}")
        remove_stale_temps(folder)


def is_regular(path, what: str = "") -> bool:
    """The one way a user's file is looked at before it is opened: True for a regular file, False when there is
    none; a FIFO, a device or a folder (reading one could block forever or never end), a folder that may not be
    entered and a name too long for the file system are each one ProjectError line naming the path."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        cause = {errno.EACCES: "permission denied", errno.ENAMETOOLONG: "a name in it is too long",
                 errno.ELOOP: "a loop of symbolic links"}.get(exc.errno, exc.strerror or str(exc))  # fmt: skip
        raise ProjectError(f"{what or 'file'} {path}: {cause}; choose a path this user can read") from None
    if not stat.S_ISREG(mode):
        kinds = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
        kind = kinds.get(stat.S_IFMT(mode), "a device")
        raise ProjectError(f"{what or 'file'} {path} is {kind}, not a regular file; give a regular file")
    return True


def read_bytes(path, limit: int, what: str = "file") -> bytes:
    """A regular file's bytes, at most ``limit`` of them; every problem is one ProjectError line."""
    if not is_regular(path, what):
        raise ProjectError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ProjectError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ProjectError(f"{what} {path} is over {limit / 2**20:.0f} MB; this is not a file this project wrote")
    return data


MAX_JSON_BYTES = 512 << 20  # a results record of the full test set is about 2 MB; a JSON split 200 MB


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=jsonable)
        f.write("\n")


def read_json(path, limit: int = MAX_JSON_BYTES):
    if not is_regular(path, "JSON file"):
        raise ProjectError(f"{path} not found")
    try:
        return json.loads(read_bytes(path, limit, "JSON file"))
    except ValueError as exc:
        raise ProjectError(f"{path} is unreadable or not valid JSON ({exc}); delete it and rerun") from None


def jsonable(obj):
    """The one ``default=`` for json: numpy and torch scalars and arrays, and paths, as plain JSON."""
    if hasattr(obj, "item"):  # numpy and torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
