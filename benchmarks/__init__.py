"""Benchmark suites for bench.py: each module has ``run(args) -> list[dict]`` rows."""
