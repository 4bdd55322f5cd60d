"""Benchmarks: possim layers measured against a baseline run in the same process."""
