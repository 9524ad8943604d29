"""Benchmarks on the full data, printed as a table with speed-ups against baselines run alongside.

    python bench.py                 # every suite
    python bench.py --only data ml  # some suites

Each suite lives in benchmarks/<name>.py and returns rows; the table is also saved to
results/bench.json (with the machine and library versions) and results/bench.md.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from data_prep import BUNDLED
from utils import atomic_path, run_cli, versions, write_json

SUITES = ("data", "ml", "dl", "predict")
COLUMNS = ("suite", "name", "accuracy", "seconds", "baseline", "speedup", "note")


def format_table(rows: list[dict]) -> str:
    def cell(row, key):
        value = row.get(key)
        if value is None:
            return ""
        if key == "accuracy":
            return f"{100 * value:.2f}%"
        if key == "seconds":
            return f"{value:.2f}"
        if key == "speedup":
            return f"{value:.1f}x"
        return str(value)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r, k) for k in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def add_speedups(rows: list[dict]) -> None:
    """Fill ``speedup`` = baseline seconds / row seconds, for rows that name a baseline row and set none."""
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        base = by_name.get(r.get("baseline"))
        if base and r.get("seconds") and "speedup" not in r:
            r["speedup"] = base["seconds"] / r["seconds"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=SUITES, default=list(SUITES), help="suites to run (default: all)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where bench.json/bench.md go")
    p.add_argument("--data-dir", type=Path, default=BUNDLED, help="data folder (default: data/)")
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    rows, start = [], time.perf_counter()
    for suite in args.only:
        print(f"== {suite}", flush=True)
        suite_rows = importlib.import_module(f"benchmarks.{suite}").run(args)
        for r in suite_rows:
            r.setdefault("suite", suite)
        rows += suite_rows
    add_speedups(rows)
    table = format_table(rows)
    print(table)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    env = versions("numpy", "torch", "torchvision", "scikit-learn", "scikit-learn-intelex")
    config = {"only": args.only, "data_dir": str(args.data_dir)}
    write_json(
        args.results_dir / "bench.json",
        {"rows": rows, "config": config, "environment": env, "seconds_total": time.perf_counter() - start},
    )
    with atomic_path(args.results_dir / "bench.md") as tmp:
        tmp.write_text(table + "\n")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
