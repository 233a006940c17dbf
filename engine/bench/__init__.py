"""Benchmarks: they print figures (JSON lines) and assert nothing."""
