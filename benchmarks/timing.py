"""Timing helpers shared by the benchmarks: repeated calls after warm-up, percentiles in ms."""

from __future__ import annotations

import threading
import time
from typing import Callable


def time_calls(fn: Callable[[], object], reps: int, warmup: int = 3) -> list[int]:
    """Wall-clock ns of ``reps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return times


def pct_ms(samples_ns: list[int], q: float) -> float:
    """The ``q`` quantile (0..1, nearest rank) in milliseconds."""
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def compare(local_ns: list[int], remote_ns: list[int]) -> dict[str, float]:
    """p50/p99 of both paths, the host/in-process ratio and the absolute overhead at p50."""
    p50_local, p50_remote = pct_ms(local_ns, 0.5), pct_ms(remote_ns, 0.5)
    return {
        "in_process_p50_ms": p50_local, "in_process_p99_ms": pct_ms(local_ns, 0.99),
        "host_p50_ms": p50_remote, "host_p99_ms": pct_ms(remote_ns, 0.99),
        "ratio_p50": p50_remote / p50_local, "overhead_p50_ms": p50_remote - p50_local,
    }


def together(work: list[Callable[[], object]]) -> float:
    """Run each callable in its own thread, all released at once; the wall seconds until the last ends.
    The first exception any of them raised is raised here (a failed request fails the benchmark)."""
    barrier = threading.Barrier(len(work) + 1)
    errors: list[BaseException] = []

    def run(fn: Callable[[], object]) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,), name=f"bench-client-{i}") for i, fn in enumerate(work)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started

