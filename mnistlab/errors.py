"""The one way a script fails: a ProjectError becomes one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path


class ProjectError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def one_line(text: str) -> str:
    """``text`` with its control characters written as escapes (a newline in a file name as \\n), so that a
    message stays one line and a name cannot move the cursor or recolour the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _interrupted_at_import(kind, value, tb, previous=sys.excepthook):
    """sys.excepthook: a Ctrl-C while a script is still importing its libraries (torch takes seconds), before
    run_cli is running, is the same one line; Python still exits as interrupted (status 130)."""
    if issubclass(kind, KeyboardInterrupt):
        print(f"{Path(sys.argv[0]).name}: interrupted (Ctrl-C) while starting; nothing was written", file=sys.stderr)
    else:
        previous(kind, value, tb)


if sys.excepthook is sys.__excepthook__:  # not under a tool that installed its own
    sys.excepthook = _interrupted_at_import


class _Watched:
    """Standard output, as it was, that remembers the error of a write that failed (a closed pipe, a full disk), so
    that run_cli can tell that error from any other OSError."""

    def __init__(self, stream):
        self._stream, self.failure = stream, None

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            self.failure = exc
            raise

    def flush(self):
        try:
            return self._stream.flush()
        except OSError as exc:
            self.failure = exc
            raise

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _output_failed(exc: OSError) -> str:
    """The cause of a failed write to standard output; the stream is then pointed at the null device, so that
    Python's own flush at exit does not fail a second time with a traceback."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a stream without a file descriptor: no flush
        fd = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    if isinstance(exc, BrokenPipeError):
        return "it was closed (the reading end of a pipe, such as head, exited)"
    return "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)


def run_cli(main_fn, argv=None) -> int:
    """Run ``main_fn(argv)``: a ProjectError is one stderr line and exit 1, Ctrl-C one line and exit 130.

    Output that the terminal cannot encode (a "±" under LC_ALL=C) is written with replacements, not a crash;
    standard output that cannot be written (``| head``, ``> /dev/full``) is one line and exit 1.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # a replaced stream (pytest's capture) may not
            stream.reconfigure(errors="replace")
    prog = Path(sys.argv[0]).name if argv is None else main_fn.__module__
    stdout = sys.stdout = _Watched(sys.stdout) if sys.stdout is not None else None
    try:
        code = main_fn(argv) or 0
        if stdout is not None:
            stdout.flush()  # here, not at exit: a failed write is then reported like any other
        return code
    except ProjectError as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl-C); nothing half-written was kept", file=sys.stderr)
        return 130
    except OSError as exc:
        if stdout is None or stdout.failure is not exc:  # not the output stream: a real fault, shown as such
            raise
        cause = _output_failed(exc)
        print(f"{prog}: error: cannot write to standard output: {cause}; the output was cut short", file=sys.stderr)
        return 1
    finally:
        if stdout is not None and sys.stdout is stdout:
            sys.stdout = stdout._stream


def hard_exit(code: int):
    """End the process with ``code`` now, its output flushed, skipping the interpreter's slow teardown of torch.

    For dl_main.py's ``__main__`` only, when every file is written and closed, no child process runs and tqdm's
    thread is a daemon (docs/speed.md)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)
