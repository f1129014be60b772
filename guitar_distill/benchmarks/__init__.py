"""Benchmarks: latency, accuracy, robustness, the side-by-side report, and stage benchmarks."""
