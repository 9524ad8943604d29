"""Markdown tables and the README's generated sections."""

from __future__ import annotations

from pathlib import Path

from mnistlab.errors import ProjectError
from mnistlab.files import atomic_path


def replace_section(path: Path, marker: str, body: str) -> None:
    """Replace what lies between ``<!-- marker:start -->`` and ``<!-- marker:end -->`` in a text file (the README's
    generated tables), atomically; one line naming the markers when they are missing."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, rest = require_section(path, marker).split(start, 1)
    tail = rest.split(end, 1)[1]
    with atomic_path(path) as tmp:
        tmp.write_text(f"{head}{start}\n{body}{end}{tail}")


def require_section(path: Path, marker: str) -> str:
    """The text of ``path``, which must hold a ``marker`` section (checked before long work that fills it in)."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    text = Path(path).read_text()
    if start not in text or end not in text:
        raise ProjectError(f"{path} has no '{start}' ... '{end}' section to fill in")
    return text


def markdown_table(header, rows) -> str:
    """The one table writer: a Markdown table of ``header`` and ``rows`` (lists of cells; a "|" in a cell is
    written as "/", so that it cannot split the row)."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "/") for c in line) + " |" for line in lines)
