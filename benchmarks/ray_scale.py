"""Scale-out on Ray Serve: N clients against one vs two replicas, and the Ray hop's added latency, beside the direct host.

One Ray cluster on this machine (`ray start --head`), one front end (`serve --ray`) serving the same synth
model (same weights) twice: ``one`` (1 replica) and ``two`` (2 replicas); and a direct host (no Ray)
serving it as ``direct``. Throughput: N client threads (each its own connection) send ``--requests``
generations each, back to back; requests per second for direct, one and two, the ways alternating
within each repetition so all see the same machine. Latency: a small call (10 ms of audio from a tiny
model) one at a time, through the direct host and through Ray, median and p90. Ratios: two / one
throughput at each N; Ray's small-call latency minus (and over) the direct host's.
Usage: python -m benchmarks.ray_scale [--reps N] [--concurrency 1,2,4] [--requests R] [--duration S] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import machine
from benchmarks.timing import pct_ms, time_calls, together

WORK = 'backend = "synth"\nwidth = 512\ndepth = 4\nhop = 32\ninit_seed = 3'
SMALL = 'backend = "synth"\nwidth = 64\ninit_seed = 3'
WAYS = ("direct", "one", "two")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", default="1,2,4", help="numbers of concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=4, help="requests per client per round")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of audio per request")
    parser.add_argument("--small-calls", type=int, default=200, help="small calls per way for the latency figure")
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def _round(clients: list, model: str, requests: int, duration_s: float) -> float:
    """Every client sends ``requests`` generations back to back, all clients at once; the wall time."""

    def one(c) -> None:
        for _ in range(requests):
            c.generate(model, params={"duration_s": duration_s}, timeout_s=600)

    return together([lambda c=c: one(c) for c in clients])


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    from modelhost.client import Client
    from tests.support.launch import short_tmp, start_host, start_ray_cluster

    counts = [int(n) for n in args.concurrency.split(",")]
    cluster = start_ray_cluster(num_cpus=4)
    hosts = []
    try:
        hosts.append(start_host(f"[models.direct]\n{WORK}\n[models.small]\n{SMALL}\n", folder=short_tmp("mh-rs-d-"),
                                timeout_s=300))
        hosts.append(start_host(f"""
            [models.one]
            {WORK}
            [models.two]
            {WORK}
            [models.small]
            {SMALL}
            [ray.models.one]
            num_cpus = 1
            [ray.models.two]
            num_replicas = 2
            num_cpus = 1
            [ray.models.small]
            num_cpus = 0.5
        """, folder=short_tmp("mh-rs-r-"), args=("--ray", cluster.address), timeout_s=300))
        direct, ray = hosts
        address = {"direct": direct.address, "one": ray.address, "two": ray.address}
        clients = {way: [Client(address[way]) for _ in range(max(counts))] for way in WAYS}
        try:
            for way in WAYS:  # one unmeasured round: kernels, allocator, Serve's routers warm
                _round(clients[way][:max(counts)], way, 1, args.duration)
            walls: dict[str, dict[int, list[float]]] = {way: {n: [] for n in counts} for way in WAYS}
            for rep in range(args.reps):
                for n in counts:
                    for way in (WAYS if rep % 2 == 0 else WAYS[::-1]):
                        walls[way][n].append(_round(clients[way][:n], way, args.requests, args.duration))
            small = {}
            for way, c in (("direct", clients["direct"][0]), ("ray", clients["one"][0])):
                small[way] = time_calls(lambda c=c: c.generate("small", params={"duration_s": 0.01}), args.small_calls, warmup=20)
        finally:
            for group in clients.values():
                for c in group:
                    c.close()
    finally:
        for h in hosts:
            h.stop()
        cluster.stop()
    med = statistics.median
    results: dict[str, dict] = {}
    for n in counts:
        r = {way: {"wall_s": med(walls[way][n]), "requests_per_s": n * args.requests / med(walls[way][n])} for way in WAYS}
        r["two_over_one"] = r["two"]["requests_per_s"] / r["one"]["requests_per_s"]
        r["one_over_direct"] = r["one"]["requests_per_s"] / r["direct"]["requests_per_s"]
        results[str(n)] = r
    latency = {way: {"p50_ms": pct_ms(s, 0.5), "p90_ms": pct_ms(s, 0.9)} for way, s in small.items()}
    latency["added_p50_ms"] = latency["ray"]["p50_ms"] - latency["direct"]["p50_ms"]
    latency["ray_over_direct_p50"] = latency["ray"]["p50_ms"] / latency["direct"]["p50_ms"]
    report = {"machine": machine.describe(), "reps": args.reps, "requests": args.requests, "duration_s": args.duration,
              "results": results, "small_call": latency}
    print(machine.line())
    print(f"synth (width 512, depth 4), {args.duration:g} s of audio per request, {args.requests} per client, "
          f"{args.reps} reps, medians; Ray: a one-node cluster on this machine")
    print(f"{'N':>3} {'direct':>10} {'1 replica':>10} {'2 replicas':>11} {'2 / 1':>7} {'1 / direct':>11}   (requests/s)")
    for n, r in results.items():
        print(f"{n:>3} {r['direct']['requests_per_s']:>10.2f} {r['one']['requests_per_s']:>10.2f} "
              f"{r['two']['requests_per_s']:>11.2f} {r['two_over_one']:>6.2f}x {r['one_over_direct']:>10.2f}x")
    print(f"small call (10 ms of audio), {args.small_calls} calls: direct p50 {latency['direct']['p50_ms']:.2f} ms "
          f"(p90 {latency['direct']['p90_ms']:.2f}), through Ray p50 {latency['ray']['p50_ms']:.2f} ms "
          f"(p90 {latency['ray']['p90_ms']:.2f}): the Ray hop adds {latency['added_p50_ms']:.2f} ms "
          f"({latency['ray_over_direct_p50']:.1f}x)")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
