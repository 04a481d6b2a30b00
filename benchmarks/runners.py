"""Runner processes vs inline: the same models once in a runner process (the default) and once in the host's
own process (``runner = "inline"``), on one host, measured side by side in one run.

* ``small_call``: a generate that makes almost nothing (32 samples), in interleaved rounds: wall time per call,
  and the host's overhead (wall minus the backend's own ``run_ns``);
* ``10s_result`` and ``5min_result``: 10 s and 5 min of 32 kHz stereo coming back (2.6 MB and 77 MB) through
  shared memory: overhead as above (the runner writes the audio into the host's segment; the host hands it on);
* ``cold_load``: an unloaded model to ready (a runner's start and imports, vs a thread in a process that has
  them already);
* ``stream_first_audio``: a random-weight MusicGen (audiocraft's builders) streaming 6 s: time to the first chunk
  and to the whole result;
* ``batch``: 4 unseeded requests to that MusicGen at once: rows per pass and the wall time.

Usage: python -m benchmarks.runners [--reps N] [--results 10,300] [--stream 6] [--json OUT]
(``--results``: the result lengths in seconds, ``--stream``: the streamed length; small ones for a smoke run)
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks import machine
from benchmarks.timing import pct_ms, together
from modelhost.client import Client
from tests.support.launch import short_tmp, start_host

SYNTH = 'backend = "synth"\nwidth = 8\ndepth = 1\nhop = 4096\nchannels = 2'


def _catalog(musicgen: Path) -> str:
    return f"""
        [host]
        heartbeat_s = 0.5
        [models.runner]
        {SYNTH}
        [models.inline]
        {SYNTH}
        runner = "inline"
        [models.mg-runner]
        backend = "musicgen"
        checkpoint = "{musicgen}"
        [models.mg-inline]
        backend = "musicgen"
        checkpoint = "{musicgen}"
        runner = "inline"
    """


def _overhead_ns(c: Client, model: str, duration_s: float) -> tuple[int, int]:
    """(wall ns, wall minus the backend's run ns) of one generate."""
    t0 = time.perf_counter_ns()
    result = c.generate(model, "x", params={"duration_s": duration_s, "seed": 1})
    wall = time.perf_counter_ns() - t0
    return wall, wall - result.timings_ns["run_ns"]


def _interleaved(c: Client, duration_s: float, reps: int, rounds: int = 5) -> dict[str, dict[str, float]]:
    """``rounds`` rounds of ``reps`` calls to each path, alternating, after a warm-up: p50 and p99 per path."""
    samples: dict[str, dict[str, list[int]]] = {p: {"wall": [], "overhead": []} for p in ("runner", "inline")}
    for path in samples:
        for _ in range(3):
            _overhead_ns(c, path, duration_s)
    for _ in range(rounds):
        for path, got in samples.items():
            for _ in range(max(1, reps // rounds)):
                wall, overhead = _overhead_ns(c, path, duration_s)
                got["wall"].append(wall)
                got["overhead"].append(overhead)
    out = {path: {"wall_p50_ms": pct_ms(s["wall"], 0.5), "wall_p99_ms": pct_ms(s["wall"], 0.99),
                  "overhead_p50_ms": pct_ms(s["overhead"], 0.5), "calls": len(s["wall"])} for path, s in samples.items()}
    out["runner_minus_inline_p50_ms"] = {"wall": out["runner"]["wall_p50_ms"] - out["inline"]["wall_p50_ms"],
                                         "overhead": out["runner"]["overhead_p50_ms"] - out["inline"]["overhead_p50_ms"]}
    return out


def _cold_load(c: Client, model: str, reps: int) -> float:
    seconds = []
    for _ in range(reps):
        c.unload(model)
        t0 = time.perf_counter()
        c.load(model)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def _stream(c: Client, model: str, seconds: float) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    stream = c.stream(model, "a slow build", params={"duration": seconds, "seed": 3}, interval_s=min(1.0, seconds / 2))
    for _ in stream:
        if first is None:
            first = time.perf_counter() - t0
    stream.result()
    return {"first_chunk_s": round(first or 0.0, 3), "whole_s": round(time.perf_counter() - t0, 3)}


def _batch(address: str, model: str) -> dict[str, float]:
    rows: list[int] = []

    def one(i: int):
        def run() -> None:
            with Client(address) as c:
                rows.append(c.generate(model, f"prompt {i}", params={"duration": 2.0}).info["batch_rows"])
        return run

    wall = together([one(i) for i in range(4)])
    return {"wall_s": round(wall, 3), "max_rows": max(rows)}


def run(reps: int, results: list[float], stream_s: float) -> dict:
    from modelhost.host import random_weights as weights

    folder = short_tmp("mh-bench-runners-")
    musicgen = weights.write_audiocraft(folder / "musicgen", "musicgen", seed=1)
    host = start_host(_catalog(musicgen), folder=folder, timeout_s=300)
    try:
        with Client(host.address) as c:
            for model in ("runner", "inline", "mg-runner", "mg-inline"):
                c.load(model)
            report = {
                "machine": machine.describe(),
                "small_call": _interleaved(c, 0.001, reps),
                **{f"{s:g}s_result": _interleaved(c, s, max(5, reps // max(10, int(s) // 8)), rounds=5) for s in results},
                "cold_load_s": {path: round(_cold_load(c, path, 3), 3) for path in ("runner", "inline")},
                "stream_first_audio": {path: _stream(c, f"mg-{path}", stream_s) for path in ("runner", "inline")},
                "batch": {path: _batch(host.address, f"mg-{path}") for path in ("runner", "inline")},
                "shared_memory": c.shared_memory,
                "handed_over_without_copy": c.health()["shm"]["handed_over"],
            }
    finally:
        host.stop()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--results", default="10,300", help="result lengths in seconds, comma-separated")
    parser.add_argument("--stream", type=float, default=6.0, help="seconds of MusicGen audio to stream")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    lengths = [float(s) for s in args.results.split(",")]
    report = machine.finish(run(args.reps, lengths, args.stream), args.json)
    print(machine.line())
    for key in ("small_call", *(f"{s:g}s_result" for s in lengths)):
        r = report[key]
        print(f"{key:<12} runner p50 {r['runner']['wall_p50_ms']:8.3f} ms (overhead {r['runner']['overhead_p50_ms']:.3f})  "
              f"inline p50 {r['inline']['wall_p50_ms']:8.3f} ms (overhead {r['inline']['overhead_p50_ms']:.3f})  "
              f"runner - inline: {r['runner_minus_inline_p50_ms']['overhead']:+.3f} ms overhead")
    print(f"cold load    runner {report['cold_load_s']['runner']:.2f} s  inline {report['cold_load_s']['inline']:.2f} s")
    for path, s in report["stream_first_audio"].items():
        print(f"stream {path:<7} first chunk {s['first_chunk_s']:.2f} s, whole {s['whole_s']:.2f} s")
    for path, b in report["batch"].items():
        print(f"batch {path:<8} 4 requests in {b['wall_s']:.2f} s, up to {b['max_rows']} rows per pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
