"""Timing helpers for benchmarks: best-of-rounds throughput, baseline and subject interleaved.

Benchmarks report ratios against a baseline measured in the same run, so a slow
or busy machine moves both numbers together and the ratio stays meaningful. Time is
this process's CPU time (``time.process_time``): while another process holds the
core, neither side's clock runs, so a noisy neighbour does not skew one side.
"""

from __future__ import annotations

import gc
import time
from typing import Callable


def throughput(fn: Callable[[], object], iterations: int) -> float:
    """Calls per CPU-second of ``fn`` over ``iterations`` calls (garbage collector paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.process_time()
        for _ in range(iterations):
            fn()
        elapsed = time.process_time() - start
    finally:
        if enabled:
            gc.enable()
    return iterations / elapsed if elapsed > 0 else float("inf")


def best_of(pairs: dict[str, Callable[[], object]], iterations: int, rounds: int) -> dict[str, float]:
    """Best throughput of each callable over ``rounds`` interleaved rounds.

    Interleaving (A, B, A, B, ...) rather than (A, A, ..., B, B, ...) keeps a
    change in machine load from favouring one side.
    """
    best = {name: 0.0 for name in pairs}
    for _ in range(rounds):
        for name, fn in pairs.items():
            best[name] = max(best[name], throughput(fn, iterations))
    return best
