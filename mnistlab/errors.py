"""The one way a script fails: a ProjectError becomes one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


class ProjectError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def run_cli(main_fn, argv=None) -> int:
    """Run ``main_fn(argv)``: a ProjectError is one stderr line and exit 1, Ctrl-C one line and exit 130.

    Output that the terminal cannot encode (a "±" under LC_ALL=C) is written with replacements, not a crash.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # a replaced stream (pytest's capture) may not
            stream.reconfigure(errors="replace")
    prog = Path(sys.argv[0]).name if argv is None else main_fn.__module__
    try:
        return main_fn(argv) or 0
    except ProjectError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl-C); nothing half-written was kept", file=sys.stderr)
        return 130
