"""Round-trip cost of the host path vs the same call in-process, measured side by side in one run.

Cases (each run through a real host subprocess on an ipc:// socket and, in this process, through the
same backend class with the same options):
  * small    - a generate of 10 ms of mono audio (the fixed cost of a call)
  * 10s_stereo - a generate whose result is 10 s of 32 kHz stereo float32 (2.56 MB back)
plus ``health`` (a pure IPC round trip, no model work) for the host path.
Prints p50/p99 per path, the host/in-process ratio and the absolute overhead, and the machine.

Usage: python -m benchmarks.roundtrip [--reps N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import machine

MODEL = {"backend": "synth", "width": 64, "depth": 2, "hop": 320, "channels": 2, "sample_rate": 32000}
CASES = {"small": 0.01, "10s_stereo": 10.0}


def _catalog() -> str:
    return "[models.bench]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in MODEL.items())


def _pct(samples_ns: list[int], q: float) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def _in_process(duration_s: float, reps: int) -> list[int]:
    from host.backends import GenerateRequest, RunContext
    from host.backends.synth import SynthBackend
    from host.config import ModelSpec

    backend = SynthBackend(ModelSpec("bench", "synth", options={k: v for k, v in MODEL.items() if k != "backend"}))
    backend.load("cpu")
    ctx = RunContext(emit=lambda s, t: None, is_cancelled=lambda: None)
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter_ns()
        backend.generate(GenerateRequest("bench", {"duration_s": duration_s, "seed": 1}), ctx)
        if i >= 3:
            times.append(time.perf_counter_ns() - t0)
    return times


def _through_host(client, duration_s: float, reps: int) -> list[int]:
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter_ns()
        client.generate("bench", "bench", params={"duration_s": duration_s, "seed": 1})
        if i >= 3:
            times.append(time.perf_counter_ns() - t0)
    return times


def run(reps: int) -> dict:
    from client import Client
    from host.launch import start_host

    host = start_host(_catalog())
    results: dict[str, dict] = {}
    try:
        with Client(host.address) as client:
            client.load("bench")
            health = []
            for _ in range(reps + 3):
                t0 = time.perf_counter_ns()
                client.health()
                health.append(time.perf_counter_ns() - t0)
            results["health"] = {"host_p50_ms": _pct(health[3:], 0.5), "host_p99_ms": _pct(health[3:], 0.99)}
            for name, duration_s in CASES.items():
                local = _in_process(duration_s, reps)
                remote = _through_host(client, duration_s, reps)
                p50_local, p50_remote = _pct(local, 0.5), _pct(remote, 0.5)
                results[name] = {
                    "in_process_p50_ms": p50_local, "in_process_p99_ms": _pct(local, 0.99),
                    "host_p50_ms": p50_remote, "host_p99_ms": _pct(remote, 0.99),
                    "ratio_p50": p50_remote / p50_local, "overhead_p50_ms": p50_remote - p50_local,
                }
    finally:
        host.stop()
    return {"machine": machine.describe(), "reps": reps, "model": MODEL, "results": results}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    report = run(args.reps)
    print(machine.line())
    print(f"{'case':<12} {'in-proc p50':>12} {'p99':>8} {'host p50':>10} {'p99':>8} {'ratio':>7} {'overhead':>9}  (ms)")
    r = report["results"]
    print(f"{'health':<12} {'-':>12} {'-':>8} {r['health']['host_p50_ms']:>10.3f} {r['health']['host_p99_ms']:>8.3f}")
    for name in CASES:
        c = r[name]
        print(f"{name:<12} {c['in_process_p50_ms']:>12.3f} {c['in_process_p99_ms']:>8.3f} {c['host_p50_ms']:>10.3f} "
              f"{c['host_p99_ms']:>8.3f} {c['ratio_p50']:>7.2f} {c['overhead_p50_ms']:>9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
