"""Dynamic batching: N concurrent unseeded MusicGen requests, batched vs one at a time, through one warm host.

One host serves the same random-weight MusicGen checkpoint under two names: ``batched`` (the default,
up to 8 rows per pass, 5 ms window) and ``single`` (``max_batch_size = 1``: the host before batching).
For N = 1, 2, 4, 8, N client threads (each its own connection, like N WebUIs) send one request each
at the same moment; the two ways alternate within each repetition, so both see the same machine.
Figures per N and way: wall time for all N, throughput (seconds of audio made per second of wall
time), the median and max per-request latency (submit to result), and the rows the host put in each
pass (``info["batch_rows"]``). Ratios: batched / single throughput at each N, and each way's scaling,
throughput(N) / throughput(1) (the issue's target: >= 0.7 N at N = 4 on a GPU).
Checkpoints as in benchmarks/warm_start.py (``--size real``: MusicGen-small's shape, random weights).
Usage: python -m benchmarks.batching [--size tiny|real] [--reps N] [--concurrency 1,2,4,8] [--duration S] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import machine, warm_start
from benchmarks.timing import together

WAYS = ("batched", "single")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", default="1,2,4,8", help="numbers of concurrent requests, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of audio per request")
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def _round(clients: list, model: str, duration_s: float) -> dict:
    """Each client sends one unseeded request at once; the latencies, the wall time and the batch sizes."""
    n = len(clients)
    latencies: list[float] = [0.0] * n
    rows: list[int] = [0] * n

    def one(i: int) -> None:
        started = time.perf_counter()
        result = clients[i].generate(model, f"an upbeat tune number {i}", params={"duration": duration_s, "seed": -1},
                                     timeout_s=3600)
        latencies[i] = time.perf_counter() - started
        rows[i] = int(result.info.get("batch_rows", 1))

    wall_s = together([lambda i=i: one(i) for i in range(n)])
    return {"wall_s": wall_s, "latencies_s": latencies, "batch_rows": rows}


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    from modelhost.client import Client
    from modelhost.host.config import cache_dir
    from tests.support.launch import short_tmp, start_host

    counts = [int(n) for n in args.concurrency.split(",")]
    files = warm_start.build(args.size, cache_dir() / "bench")
    host = start_host(f"""
        preload = ["batched", "single"]
        [models.batched]
        backend = "musicgen"
        checkpoint = "{files['musicgen']}"
        [models.single]
        backend = "musicgen"
        checkpoint = "{files['musicgen']}"
        max_batch_size = 1
    """, folder=short_tmp("mh-batching-"), timeout_s=600)
    runs: dict[str, dict[int, list[dict]]] = {way: {n: [] for n in counts} for way in WAYS}
    try:
        clients = [Client(host.address) for _ in range(max(counts))]
        try:
            for way in WAYS:  # one unmeasured round each: one-time costs (kernels for this length, allocator growth)
                _round(clients[:max(counts)], way, args.duration)
            for rep in range(args.reps):
                for n in counts:
                    order = WAYS if rep % 2 == 0 else WAYS[::-1]
                    for way in order:
                        runs[way][n].append(_round(clients[:n], way, args.duration))
        finally:
            for c in clients:
                c.close()
    finally:
        host.stop()
    med = statistics.median
    results: dict[str, dict] = {}
    for n in counts:
        r: dict = {}
        for way in WAYS:
            rounds = runs[way][n]
            wall = med(x["wall_s"] for x in rounds)
            r[way] = {"wall_s": wall, "throughput_audio_s_per_s": n * args.duration / wall,
                      "latency_p50_s": med(lat for x in rounds for lat in x["latencies_s"]),
                      "latency_max_s": max(lat for x in rounds for lat in x["latencies_s"]),
                      "batch_rows_seen": sorted({b for x in rounds for b in x["batch_rows"]})}
        r["batched_over_single"] = r["batched"]["throughput_audio_s_per_s"] / r["single"]["throughput_audio_s_per_s"]
        results[str(n)] = r
    base = results[str(counts[0])]
    for r in results.values():
        for way in WAYS:
            r[way]["scaling"] = r[way]["throughput_audio_s_per_s"] / base[way]["throughput_audio_s_per_s"]
    report = {"machine": machine.describe(), "size": args.size, "reps": args.reps, "duration_s": args.duration,
              "results": results}
    print(machine.line())
    print(f"size {args.size}, {args.duration:g} s of audio per request, unseeded, {args.reps} reps, medians; "
          f"throughput = seconds of audio per second; scaling = throughput(N) / throughput({counts[0]})")
    print(f"{'N':>3} {'way':>8} {'wall':>8} {'throughput':>11} {'scaling':>8} {'latency p50':>12} {'max':>8} {'rows':>10}"
          f" {'batched/single':>15}")
    for n, r in results.items():
        for way in WAYS:
            w = r[way]
            ratio = f"{r['batched_over_single']:.2f}x" if way == "batched" else ""
            print(f"{n:>3} {way:>8} {w['wall_s']:>7.2f}s {w['throughput_audio_s_per_s']:>11.2f} {w['scaling']:>7.2f}x "
                  f"{w['latency_p50_s']:>11.2f}s {w['latency_max_s']:>7.2f}s {','.join(map(str, w['batch_rows_seen'])):>10}"
                  f" {ratio:>15}")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
