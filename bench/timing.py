"""Timing shared by the original's sides of `wico bench NAME --against` (bench/*_against.py)."""
import statistics
import time


def median_time(fn, repeats, warmup):
    """Median wall time of `repeats` calls of fn after `warmup` untimed ones (as the C++ side's
    median_seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
