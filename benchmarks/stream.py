"""Streaming: time to the first audio vs time to the whole result, MusicGen through a warm host.

In one run, for each duration (10 s and 30 s of audio by default), interleaved repetitions of:
  * a plain generate (the whole result at the end: what a client waits for without streaming);
  * the same request streamed (``Client.stream``): the time to its first chunk, and to its result.
Ratios: first audio / whole (target <= 0.2) and streamed whole / plain whole (what streaming costs:
the prefix decodes every ``--interval`` seconds of audio). Seeded, so both ways generate the same audio.
A first, unmeasured call of each way per duration is reported apart ("first time"): it pays one-time
costs (on CPU, oneDNN building kernels for each new decode length).
Checkpoints as in benchmarks/warm_start.py (``--size real``: MusicGen-small's shape, random weights).
Usage: python -m benchmarks.stream [--size tiny|real] [--reps N] [--durations 10,30] [--interval 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks import machine, warm_start


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "real"], default="real")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--durations", default="10,30", help="seconds of audio, comma-separated")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds of audio per chunk")
    parser.add_argument("--json", help="write the figures to this file")
    return parser.parse_args(argv)


def _one(client, duration_s: float, interval_s: float, stream: bool) -> dict[str, float]:
    params = {"duration": duration_s, "seed": 7}
    started = time.perf_counter()
    if not stream:
        client.generate("musicgen", "a calm piano melody", params=params, timeout_s=3600)
        return {"whole_s": time.perf_counter() - started}
    job = client.stream("musicgen", "a calm piano melody", params=params, interval_s=interval_s, timeout_s=3600)
    first_s = None
    chunks = 0
    for _ in job:
        chunks += 1
        if first_s is None:
            first_s = time.perf_counter() - started
    job.result()
    return {"first_s": first_s or 0.0, "whole_s": time.perf_counter() - started, "chunks": chunks}


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    from modelhost.client import Client
    from modelhost.host.config import cache_dir
    from tests.support.launch import short_tmp, start_host

    durations = [float(d) for d in args.durations.split(",")]
    files = warm_start.build(args.size, cache_dir() / "bench")
    host = start_host(f"""
        preload = ["musicgen"]
        [models.musicgen]
        backend = "musicgen"
        checkpoint = "{files['musicgen']}"
        max_duration_s = {max(durations) + 1}
    """, folder=short_tmp("mh-stream-"), timeout_s=600)
    results = {}
    try:
        with Client(host.address) as c:
            for duration_s in durations:
                # the first of each way pays one-time costs: on CPU oneDNN builds its kernels for each new decode
                # length (0.3-4.6 s each, measured); reported apart, the medians are a warm host's steady state
                cold_plain = _one(c, duration_s, args.interval, stream=False)
                cold_stream = _one(c, duration_s, args.interval, stream=True)
                plain, streamed = [], []
                for _ in range(args.reps):  # interleaved: both ways see the same machine state
                    plain.append(_one(c, duration_s, args.interval, stream=False))
                    streamed.append(_one(c, duration_s, args.interval, stream=True))
                med = statistics.median
                r = {"plain_whole_s": med(p["whole_s"] for p in plain),
                     "stream_first_s": med(s["first_s"] for s in streamed),
                     "stream_whole_s": med(s["whole_s"] for s in streamed),
                     "chunks": streamed[-1]["chunks"],
                     "first_time": {"plain_whole_s": cold_plain["whole_s"], "stream_first_s": cold_stream["first_s"],
                                    "stream_whole_s": cold_stream["whole_s"]}}
                r["first_over_whole"] = r["stream_first_s"] / r["plain_whole_s"]
                r["stream_cost"] = r["stream_whole_s"] / r["plain_whole_s"]
                results[f"{duration_s:g}s"] = r
    finally:
        host.stop()
    report = {"machine": machine.describe(), "size": args.size, "reps": args.reps, "interval_s": args.interval,
              "results": results}
    print(machine.line())
    print(f"size {args.size}, chunk every {args.interval:g} s of audio, {args.reps} reps, medians")
    print(f"{'audio':>6} {'plain whole':>12} {'first chunk':>12} {'stream whole':>13} {'first/whole':>12} {'stream cost':>12}")
    for name, r in results.items():
        print(f"{name:>6} {r['plain_whole_s']:>11.2f}s {r['stream_first_s']:>11.2f}s {r['stream_whole_s']:>12.2f}s "
              f"{r['first_over_whole']:>12.3f} {r['stream_cost']:>11.2f}x")
        ft = r["first_time"]
        print(f"{'':>6} first time for this length: plain {ft['plain_whole_s']:.2f}s, stream first chunk "
              f"{ft['stream_first_s']:.2f}s, stream whole {ft['stream_whole_s']:.2f}s")
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
