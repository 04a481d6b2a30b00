"""Many clients on one resident model: throughput and latency with 1, 4 and 16 concurrent clients.

Each client is its own process (like separate WebUI instances) with its own connection, sending
requests back to back for a fixed number of requests; the host serves one synth model (the request
cost is the model's, so the figures show how the host shares it). Also the host's resident memory
with no clients and with 16 connected. Usage: python -m benchmarks.clients [--reps N] [--json OUT]
(--reps: requests per client).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks import machine
from benchmarks.timing import pct_ms

CLIENT = """
import json, sys, time
from modelhost.client import Client
address, reps = sys.argv[1], int(sys.argv[2])
with Client(address) as c:
    c.health()
    print("connected", flush=True)
    sys.stdin.readline()  # start together
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        c.generate("bench", "x", params={"duration_s": 0.25, "seed": 1})
        times.append(time.perf_counter_ns() - t0)
    print(json.dumps(times), flush=True)
    sys.stdin.readline()  # stay connected until told
"""

CONCURRENCY = (1, 4, 16)


def _round(address: str, n: int, reps: int, host_pid: int) -> dict:
    from tests.support.launch import ROOT

    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, address, str(reps)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "connected"
        rss_connected = machine.rss_bytes(host_pid)
        start = time.perf_counter()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        latencies = [t for p in procs for t in json.loads(p.stdout.readline())]
        elapsed = time.perf_counter() - start
        for p in procs:
            p.stdin.write("bye\n")
            p.stdin.flush()
            p.wait(60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return {"clients": n, "requests": len(latencies), "throughput_rps": len(latencies) / elapsed,
            "p50_ms": pct_ms(latencies, 0.5), "p99_ms": pct_ms(latencies, 0.99), "host_rss_bytes": rss_connected}


def run(reps: int) -> dict:
    from tests.support.launch import start_host

    host = start_host('preload = ["bench"]\n[models.bench]\nbackend = "synth"\nwidth = 256\nchannels = 2\n')
    try:
        idle_rss = machine.rss_bytes(host.proc.pid)
        rounds = [_round(host.address, n, reps, host.proc.pid) for n in CONCURRENCY]
    finally:
        host.stop()
    return {"machine": machine.describe(), "requests_per_client": reps, "host_rss_idle_bytes": idle_rss, "rounds": rounds}


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=40)
    report = run(args.reps)
    print(machine.line())
    print(f"host RSS with no clients: {report['host_rss_idle_bytes'] / 2**20:.1f} MiB")
    print(f"{'clients':>8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'host RSS MiB':>13}")
    for r in report["rounds"]:
        print(f"{r['clients']:>8} {r['requests']:>9} {r['throughput_rps']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['host_rss_bytes'] / 2**20:>13.1f}")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
