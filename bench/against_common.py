"""What the original's sides of `wico bench NAME --against` (bench/*_against.py) share: their
command line and the timing."""
import os
import statistics
import sys
import time
import warnings

import torch


def against_arguments():
    """`script CHECKOUT OUT_DIR THREADS REPEATS WARMUP SIZE` (as core/benchmark's
    run_against_script passes them): returns (checkout, out_dir, threads, repeats, warmup, size),
    with torch's thread count set and the originals' deprecation warnings silenced."""
    root, out_dir = os.path.abspath(sys.argv[1]), sys.argv[2]
    threads, repeats, warmup, size = (int(a) for a in sys.argv[3:7])
    torch.set_num_threads(threads)
    warnings.filterwarnings('ignore')
    return root, out_dir, threads, repeats, warmup, size


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
