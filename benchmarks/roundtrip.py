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

import json

from benchmarks import machine
from benchmarks.timing import compare, pct_ms, time_calls

MODEL = {"backend": "synth", "width": 64, "depth": 2, "hop": 320, "channels": 2, "sample_rate": 32000}
CASES = {"small": 0.01, "10s_stereo": 10.0}


def _catalog() -> str:
    return "[models.bench]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in MODEL.items())


def _in_process(duration_s: float, reps: int) -> list[int]:
    from modelhost.host.backends import GenerateRequest, RunContext
    from modelhost.host.backends.synth import SynthBackend
    from modelhost.host.backends import ModelSpec

    backend = SynthBackend(ModelSpec("bench", "synth", options={k: v for k, v in MODEL.items() if k != "backend"}))
    backend.load("cpu")
    ctx = RunContext.detached()
    return time_calls(lambda: backend.generate(GenerateRequest("bench", {"duration_s": duration_s, "seed": 1}), ctx), reps)


def run(reps: int) -> dict:
    from modelhost.client import Client
    from tests.support.launch import start_host

    host = start_host(_catalog())
    results: dict[str, dict] = {}
    try:
        with Client(host.address) as client:
            client.load("bench")
            health = time_calls(client.health, reps)
            results["health"] = {"host_p50_ms": pct_ms(health, 0.5), "host_p99_ms": pct_ms(health, 0.99)}
            for name, duration_s in CASES.items():
                local = _in_process(duration_s, reps)
                params = {"duration_s": duration_s, "seed": 1}
                remote = time_calls(lambda: client.generate("bench", "bench", params=params), reps)
                results[name] = compare(local, remote)
    finally:
        host.stop()
    return {"machine": machine.describe(), "reps": reps, "model": MODEL, "results": results}


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=100)
    report = run(args.reps)
    print(machine.line())
    print(f"{'case':<12} {'in-proc p50':>12} {'p99':>8} {'host p50':>10} {'p99':>8} {'ratio':>7} {'overhead':>9}  (ms)")
    r = report["results"]
    print(f"{'health':<12} {'-':>12} {'-':>8} {r['health']['host_p50_ms']:>10.3f} {r['health']['host_p99_ms']:>8.3f}")
    for name in CASES:
        c = r[name]
        print(f"{name:<12} {c['in_process_p50_ms']:>12.3f} {c['in_process_p99_ms']:>8.3f} {c['host_p50_ms']:>10.3f} "
              f"{c['host_p99_ms']:>8.3f} {c['ratio_p50']:>7.2f} {c['overhead_p50_ms']:>9.3f}")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
