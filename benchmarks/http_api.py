"""The HTTP API's cost beside the ZeroMQ client: one host serving both, the same model and payloads, in one run.

``latency``: a small call (10 ms of audio), 10 s and 5 min of 32 kHz stereo, each as ``Client.generate``
over ZeroMQ (shared memory on ipc://) and as ``POST /v1/audio/speech`` through the HTTP API (a kept-alive
httpx connection; the body read whole) in WAV and MP3, in interleaved rounds; the HTTP layer's added
latency is its median minus ZeroMQ's. The model is a minimal synth (width 8, hop 4096), so generating
costs little and the figures are the transport and the encoding. ``throughput``: requests per second for
the small call with 16 concurrent HTTP clients (16 keep-alive connections driven by asyncio) beside 16
ZeroMQ client threads (one connection each). Also the HTTP process's memory.

Each path is reported at its median and its 10th percentile: on a shared machine the median carries the
other work's noise, the low percentile shows what the path itself costs.

Usage: python -m benchmarks.http_api [--reps N] [--payloads small,10s,5min] [--json OUT]
(N rounds for the small call; 10 s and 5 min get fewer: N/10 and N/50, at least 2 and 1)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

from benchmarks import machine
from benchmarks.timing import together
from modelhost.client import Client
from tests.support.launch import start_host

CATALOG = """
[host]
heartbeat_s = 0.5

[models.synth]
backend = "synth"
width = 8
depth = 1
hop = 4096
channels = 2
"""
PAYLOADS = {"small": 0.01, "10s": 10.0, "5min": 300.0}
CONCURRENCY = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_child(host_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat, cmdline = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == host_pid and b"modelhost.host.http_api" in cmdline:
                return int(entry.name)
    return None


def latency(client: Client, http: httpx.Client, url: str, seconds: float, reps: int) -> dict[str, float]:
    """Median ms of each path for ``seconds`` of audio, interleaved (zmq, wav, mp3, zmq, ...), after a warm-up."""
    params = {"duration_s": seconds, "seed": 1}
    paths = {
        "zmq": lambda: client.generate("synth", "bench", params=params).audio.sum(),
        "http_wav": lambda: _post(http, url, "wav", params),
        "http_mp3": lambda: _post(http, url, "mp3", params),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for fn in paths.values():
        fn()
    for _ in range(reps):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    row = {}
    for name, t in times.items():
        t.sort()
        row[f"{name}_p50_ms"] = round(statistics.median(t), 3)
        row[f"{name}_p10_ms"] = round(t[len(t) // 10], 3)
    for fmt in ("wav", "mp3"):
        for q in ("p50", "p10"):
            row[f"http_{fmt}_added_{q}_ms"] = round(row[f"http_{fmt}_{q}_ms"] - row[f"zmq_{q}_ms"], 3)
    return row


def _post(http: httpx.Client, url: str, fmt: str, params: dict) -> int:
    reply = http.post(f"{url}/v1/audio/speech", json={"model": "synth", "input": "bench", "response_format": fmt, **params})
    reply.raise_for_status()
    return len(reply.content)


def zmq_rps(address: str, total: int) -> float:
    per_client = total // CONCURRENCY
    clients = [Client(address) for _ in range(CONCURRENCY)]
    try:
        for c in clients:
            c.generate("synth", "warm", params={"duration_s": PAYLOADS["small"]})

        def run(c: Client) -> None:
            for _ in range(per_client):
                c.generate("synth", "bench", params={"duration_s": PAYLOADS["small"]})

        return per_client * CONCURRENCY / together([lambda c=c: run(c) for c in clients])
    finally:
        for c in clients:
            c.close()


async def _http_rps(port: int, total: int) -> float:
    """16 keep-alive connections, each sending its requests one after another. The load generator is a few lines
    of asyncio streams rather than an HTTP client library, so its own CPU does not cap what is measured."""
    per_client = total // CONCURRENCY
    body = json.dumps({"model": "synth", "input": "bench", "response_format": "wav", "duration_s": PAYLOADS["small"]}).encode()
    request = (f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"the HTTP API answered {head[:60]!r}")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)

    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONCURRENCY)]
    try:
        for reader, writer in connections:
            await one(reader, writer)

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for _ in range(per_client):
                await one(reader, writer)

        start = time.perf_counter()
        await asyncio.gather(*(run(r, w) for r, w in connections))
        return per_client * CONCURRENCY / (time.perf_counter() - start)
    finally:
        for _, writer in connections:
            writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--payloads", default=",".join(PAYLOADS), help="which of small,10s,5min (default: all)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    payloads = [p for p in args.payloads.split(",") if p]
    if not set(payloads) <= set(PAYLOADS):
        parser.error(f"--payloads takes {', '.join(PAYLOADS)}")
    print(machine.line())
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    host = start_host(CATALOG, args=("--http", f"127.0.0.1:{port}"))
    report: dict = {"machine": machine.describe(), "reps": args.reps}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with Client(host.address) as client, httpx.Client(timeout=300) as http:
            for name in payloads:
                seconds = PAYLOADS[name]
                reps = {"small": args.reps, "10s": max(2, args.reps // 10), "5min": max(1, args.reps // 50)}[name]
                row = report.setdefault("latency", {})[name] = latency(client, http, url, seconds, reps)
                for q in ("p50", "p10"):
                    print(f"{name:>5} {q} ({reps} rounds): ZeroMQ {row[f'zmq_{q}_ms']:.2f} ms, HTTP wav "
                          f"{row[f'http_wav_{q}_ms']:.2f} ms (+{row[f'http_wav_added_{q}_ms']:.2f}), HTTP mp3 "
                          f"{row[f'http_mp3_{q}_ms']:.2f} ms (+{row[f'http_mp3_added_{q}_ms']:.2f})", flush=True)
        total = max(CONCURRENCY, args.reps * 4 // CONCURRENCY * CONCURRENCY)
        zmq = zmq_rps(host.address, total)
        http_rps = asyncio.run(_http_rps(port, total))
        report["throughput"] = {"concurrency": CONCURRENCY, "requests": total, "zmq_rps": round(zmq, 1),
                                "http_wav_rps": round(http_rps, 1)}
        print(f"{CONCURRENCY} concurrent clients, small call, {total} requests: ZeroMQ {zmq:.0f}/s, HTTP (wav) {http_rps:.0f}/s")
        child = _http_child(host.proc.pid)
        if child is not None:
            report["http_process_rss_bytes"] = machine.rss_bytes(child)
            print(f"the HTTP process: {report['http_process_rss_bytes'] / 2**20:.0f} MiB resident")
    finally:
        host.stop()
    machine.finish(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
