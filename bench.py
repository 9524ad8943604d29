"""Benchmarks on the full data, printed as a table with speed-ups against baselines run alongside.

    python bench.py                        # every CPU suite: data, ml, dl, predict
    python bench.py --suite data ml        # some suites
    python bench.py --suite dl --update-readme   # time to 99% on the CPU, and the README's speed table from it
    python bench.py --suite gpu            # the GPU check: CUDA-path tests and timings, under 5 min on an H100
    python bench.py --suite gpu --device cpu --quick   # the GPU check run on the CPU on small slices (tests)

Each suite lives in benchmarks/<name>.py. The CPU suites return rows; their table is also saved to
results/bench.json (with the machine and library versions) and results/bench.md. The gpu suite makes its own
table of checks (pass / FAIL / skip, figures, goals) in results/bench-gpu.md and bench-gpu.json, and the exit
code is 1 when one of its checks failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from mnistlab.errors import ProjectError, run_cli
from mnistlab.files import atomic_path, check_output_dirs, write_json
from mnistlab.flags import path_type
from mnistlab.machine import cores_phrase, versions
from mnistlab.paths import BUNDLED, REPO, RESULTS
from mnistlab.tables import markdown_table, replace_section, require_section

SUITES = ("data", "ml", "dl", "predict")  # the default: every suite that runs on the CPU
ALL_SUITES = (*SUITES, "gpu")
COLUMNS = ("suite", "name", "accuracy", "seconds", "baseline", "speedup", "note")
SPEED_PAGE = REPO / "docs" / "speed.md"  # where --update-readme writes each suite's table


def cell(row: dict, key: str) -> str:
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


def format_table(rows: list[dict], columns: tuple = COLUMNS) -> str:
    return markdown_table(columns, [[cell(r, k) for k in columns] for r in rows])


def add_speedups(rows: list[dict]) -> None:
    """Fill ``speedup`` = baseline seconds / row seconds, for rows that name a baseline row and set none."""
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        base = by_name.get(r.get("baseline"))
        if base and r.get("seconds") and "speedup" not in r:
            r["speedup"] = base["seconds"] / r["seconds"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--suite",
        nargs="+",
        choices=ALL_SUITES,
        default=list(SUITES),
        help=f"suites to run (default: {' '.join(SUITES)}; gpu only when named)",
    )
    p.add_argument(
        "--results-dir",
        type=path_type,
        default=RESULTS,
        help="where bench.json/.md and bench-gpu.json/.md go (default: the repo's results/)",
    )
    p.add_argument("--data-dir", type=path_type, default=BUNDLED, help="data folder (default: the repo's data/)")
    p.add_argument(
        "--device",
        choices=("cuda", "cpu", "mps", "auto"),
        help="device of the gpu suite (default: cuda; cpu runs the same checks on the CPU)",
    )
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="also write each CPU suite's table into docs/speed.md, between its bench:<suite> markers",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small slices, to test a suite itself in seconds (gpu: 2000 train, 500 test images, 1 epoch, 2 seeds, "
        "no process timings); its goals are then not judged",
    )
    return p.parse_args(argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    cpu_suites = [s for s in dict.fromkeys(args.suite) if s != "gpu"]  # in the order given, each once
    if args.update_readme and not cpu_suites:
        raise ProjectError("--update-readme writes the CPU suites' tables (the gpu suite has its own file): add one")
    for suite in cpu_suites if args.update_readme else ():  # before the work, not after it
        require_section(SPEED_PAGE, f"bench:{suite}")
    check_output_dirs({"--results-dir": args.results_dir})  # before any work, not after it
    if cpu_suites:
        run_suites(cpu_suites, args)
    if "gpu" not in args.suite:
        return 0
    print("== gpu", flush=True)
    return importlib.import_module("benchmarks.gpu").main(args)


def run_suites(suites: list[str], args) -> None:
    """The CPU suites: their rows in one table with speed-ups, saved to bench.json and bench.md."""
    rows, start = [], time.perf_counter()
    for suite in suites:
        print(f"== {suite}", flush=True)
        rows += [{**r, "suite": suite} for r in importlib.import_module(f"benchmarks.{suite}").run(args)]
    add_speedups(rows)
    table = format_table(rows)
    print(table)
    env = versions("numpy", "torch", "torchvision", "scikit-learn", "scikit-learn-intelex")
    config = {"only": suites, "data_dir": str(args.data_dir)}
    write_json(
        args.results_dir / "bench.json",
        {"rows": rows, "config": config, "environment": env, "seconds_total": time.perf_counter() - start},
    )
    with atomic_path(args.results_dir / "bench.md") as tmp:
        tmp.write_text(table + "\n")
    if args.update_readme:
        for suite in suites:
            section = suite_section(suite, [r for r in rows if r["suite"] == suite], env)
            replace_section(SPEED_PAGE, f"bench:{suite}", section)
        print(f"{SPEED_PAGE.relative_to(REPO)}: the tables of {', '.join(suites)} updated")


def suite_section(suite: str, rows: list[dict], env: dict) -> str:
    """A suite's table for the docs: the dl suite writes its own (goals beside each figure), the others the rows."""
    module = importlib.import_module(f"benchmarks.{suite}")
    if hasattr(module, "readme"):
        return module.readme(rows, env)
    table = format_table(rows, COLUMNS[1:])
    libraries = ", ".join(f"{name} {env[name]}" for name in ("scikit-learn", "scikit-learn-intelex") if env.get(name))
    return (
        f"Measured by `python bench.py --suite {suite} --update-readme` on {env['cpu']} ({cores_phrase(env['cpus'])}), "
        f"{libraries}, in one run:\n\n{table}\n"
    )


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
