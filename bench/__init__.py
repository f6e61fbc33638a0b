"""Benchmarks: each prints JSON lines (figure, unit, baseline ratio); none pass or fail on time."""
