"""The cost of the IPC path by payload size: through the host with shared memory (the default on
ipc://) and with ZeroMQ frames (``shm=False``, what TCP and old clients use) vs a direct in-process
call to the same backend, next to references measured in the same run: the raw pyzmq floor (the
same bytes echoed over the same transport, no serialization: in one process, and to an echo in a
second process, as the host is; and one way), a memcpy of the same
bytes each way into warm memory, and a Gradio HTTP API call through gradio_client carrying the same
audio as a 16-bit WAV file (what a WebUI process would otherwise use to reach another;
benchmarks/gradio_echo.py, run in .venv-py310 where Gradio is installed). Page faults per call
(minor faults, client and host process) show where fresh pages are touched.

Payloads are float32 audio sent as input and returned as output (an audio-to-audio call, like an
RVC conversion): empty (a call with no audio), 1 s of 16 kHz mono, 30 s and 5 min of 44.1 kHz
stereo; and ``10s_result``: no input, 10 s of 32 kHz stereo back (2.56 MB, a MusicGen result).
The model is a minimal synth (width 8), so the figures are dominated by moving the audio.

``small_call``: the empty call again, in interleaved rounds, the way a blocking call alone on a
client goes now (sent and received on the caller's thread) and through the client's I/O thread
($MODELHOST_DIRECT_CALLS=0), against both raw floors; with the host's CPU time per call.
Usage: python -m benchmarks.ipc [--reps N] [--payloads empty,1s_16k_mono,...] [--json OUT]
"""

from __future__ import annotations

import argparse

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import zmq

from benchmarks import machine
from benchmarks.timing import pct_ms, time_calls

MODEL = {"backend": "synth", "width": 8, "depth": 1, "hop": 4096, "channels": 2}
PAYLOADS = {"empty": None, "1s_16k_mono": (1, 16000), "10s_result": "result", "30s_44k_stereo": (2, 30 * 44100),
            "5min_44k_stereo": (2, 300 * 44100)}
RESULT_SECONDS = 10.0  # 10s_result: this much 32 kHz stereo comes back, nothing goes in


def _audio(shape: tuple[int, int] | None) -> np.ndarray | None:
    return None if shape is None else np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)


def _memcpy(nbytes: int, reps: int) -> list[int]:
    """The same bytes copied each way into warm (already touched) memory: what shared memory cannot go below."""
    src, dst = np.ones(nbytes, np.uint8), np.zeros(nbytes, np.uint8)

    def both_ways() -> None:
        np.copyto(dst, src)
        np.copyto(src, dst)

    return time_calls(both_ways, reps)


def _minflt(pid: int | None = None) -> int:
    """Minor page faults so far: this process (getrusage) or ``pid`` (/proc/PID/stat field 10)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def _faults_per_call(call, n: int, host_pid: int) -> tuple[float, float]:
    client0, host0 = _minflt(), _minflt(host_pid)
    for _ in range(n):
        call()
    return (_minflt() - client0) / n, (_minflt(host_pid) - host0) / n


@contextlib.contextmanager
def _pair() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    """A ROUTER and a DEALER connected over a fresh ipc:// socket: the raw transport, nothing of ours."""
    with tempfile.TemporaryDirectory() as tmp:
        ctx = zmq.Context()
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        router.bind(f"ipc://{tmp}/s")
        dealer.connect(f"ipc://{tmp}/s")
        try:
            yield router, dealer
        finally:
            router.close(0)
            dealer.close(0)
            ctx.term()


def _raw_floor(audio: np.ndarray | None, reps: int) -> list[int]:
    """DEALER -> ROUTER -> DEALER over ipc://, the array's bytes each way as one frame, no encoding."""
    payload = b"" if audio is None else memoryview(audio).cast("B")
    with _pair() as (router, dealer):
        def echo() -> None:
            dealer.send_multipart([b"h", payload], copy=False)
            peer, head, body = router.recv_multipart(copy=False)
            router.send_multipart([peer, head, body], copy=False)
            dealer.recv_multipart(copy=False)

        return time_calls(echo, reps)


_ECHO = """
import sys, zmq
ctx = zmq.Context()
router = ctx.socket(zmq.ROUTER)
router.bind(sys.argv[1])
print("ready", flush=True)
while True:
    frames = router.recv_multipart(copy=False)
    if len(frames) == 2 and frames[1].bytes == b"stop":
        break
    router.send_multipart(frames, copy=False)
"""


def _raw_floor_processes(audio: np.ndarray | None, reps: int) -> list[int]:
    """The same echo as ``_raw_floor``, but the ROUTER lives in a second process (pyzmq only), as the host does."""
    payload = b"" if audio is None else memoryview(audio).cast("B")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"ipc://{tmp}/echo"
        proc = subprocess.Popen([sys.executable, "-c", _ECHO, url], stdout=subprocess.PIPE)
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        try:
            if proc.stdout is None or proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("the raw echo process did not start")
            dealer.connect(url)

            def echo() -> None:
                dealer.send_multipart([b"h", payload], copy=False)
                dealer.recv_multipart(copy=False)

            return time_calls(echo, reps)
        finally:
            dealer.send_multipart([b"stop"])
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            dealer.close(0)
            ctx.term()


def _cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system, /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _small_call(address: str, host_pid: int, in_process, reps: int, rounds: int = 5) -> dict:
    """The empty call alone on a client, on the caller's thread vs through the I/O thread, and its references
    (in-process, both raw floors), each measured once per round, rounds interleaved: medians of the round p50s."""
    from modelhost.client import Client
    from modelhost.client.connection import DIRECT_CALLS_ENV

    params = {"duration_s": 0.001, "seed": 1}
    saved = os.environ.pop(DIRECT_CALLS_ENV, None)
    try:
        direct = Client(address)
        os.environ[DIRECT_CALLS_ENV] = "0"
        via_io = Client(address)
    finally:
        os.environ.pop(DIRECT_CALLS_ENV, None)
        if saved is not None:
            os.environ[DIRECT_CALLS_ENV] = saved
    ways = {"direct": direct, "io_thread": via_io}
    p50: dict[str, list[float]] = {name: [] for name in (*ways, "in_process", "raw", "raw_2proc")}
    cpu_us: dict[str, list[float]] = {way: [] for way in ways}
    try:
        for client in ways.values():
            time_calls(lambda c=client: c.generate("bench", "x", params=params), 20)
        for _ in range(rounds):
            for way, client in ways.items():
                before = _cpu_s(host_pid)
                times = time_calls(lambda c=client: c.generate("bench", "x", params=params), reps, warmup=0)
                cpu_us[way].append((_cpu_s(host_pid) - before) / reps * 1e6)
                p50[way].append(pct_ms(times, 0.5))
            p50["in_process"].append(pct_ms(time_calls(in_process, reps), 0.5))
            p50["raw"].append(pct_ms(_raw_floor(None, reps), 0.5))
            p50["raw_2proc"].append(pct_ms(_raw_floor_processes(None, reps), 0.5))
    finally:
        direct.close()
        via_io.close()
    med = {name: sorted(v)[len(v) // 2] for name, v in p50.items()}
    out: dict = {"rounds": rounds, "reps_per_round": reps, "rounds_p50_ms": p50,
                 "host_cpu_us_per_call": {way: round(sorted(v)[len(v) // 2]) for way, v in cpu_us.items()},
                 "in_process_p50_ms": med["in_process"], "raw_zmq_p50_ms": med["raw"], "raw_zmq_2proc_p50_ms": med["raw_2proc"]}
    for way in ways:
        overhead = med[way] - med["in_process"]
        out.update({f"{way}_p50_ms": med[way], f"{way}_overhead_p50_ms": overhead,
                    f"{way}_overhead_vs_raw": overhead / med["raw"], f"{way}_overhead_vs_raw_2proc": overhead / med["raw_2proc"]})
    return out


def _one_way(nbytes: int, reps: int) -> list[int]:
    """DEALER -> ROUTER over ipc://, ``nbytes`` as one frame, timed from send to the receiver holding it."""
    payload = np.ones(nbytes, np.uint8)
    with _pair() as (router, dealer):
        def once() -> None:
            dealer.send_multipart([b"h", memoryview(payload)], copy=False)
            router.recv_multipart(copy=False)

        return time_calls(once, reps)


GRADIO_PYTHON = Path(__file__).resolve().parent.parent / ".venv-py310" / "bin" / "python"


class GradioEcho:
    """The Gradio reference server, in its own environment; ``None`` from ``start`` if Gradio is not installed."""

    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc, self.port = proc, port

    @classmethod
    def start(cls) -> "GradioEcho | None":
        if not GRADIO_PYTHON.exists() or subprocess.run([str(GRADIO_PYTHON), "-c", "import gradio"], capture_output=True).returncode:
            return None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        script = str(Path(__file__).with_name("gradio_echo.py"))
        errors = tempfile.TemporaryFile()
        proc = subprocess.Popen([str(GRADIO_PYTHON), script, "serve", str(port)], stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    errors.close()
                    return cls(proc, port)
            time.sleep(0.3)
        proc.kill()
        proc.wait()
        errors.seek(0)
        tail = errors.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"the Gradio reference server did not start (exit {proc.returncode}):\n{tail}")

    def call(self, audio: np.ndarray | None, reps: int) -> list[int]:
        from modelhost.client.wavfile import write_wav

        with tempfile.TemporaryDirectory() as tmp:
            wav = write_wav(Path(tmp) / "in.wav", audio if audio is not None else np.zeros((1, 0), np.float32), 44100)
            script = str(Path(__file__).with_name("gradio_echo.py"))
            done = subprocess.run([str(GRADIO_PYTHON), script, "call", str(self.port), str(wav), str(reps)],
                                  capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def run(reps: int, payloads: list[str] | None = None) -> dict:
    from modelhost.client import Client
    from modelhost.host.backends import GenerateRequest, RunContext, create_backend
    from modelhost.host.backends import ModelSpec
    from tests.support.launch import start_host

    backend = create_backend(ModelSpec("bench", "synth", options={k: v for k, v in MODEL.items() if k != "backend"}))
    backend.load("cpu")
    ctx = RunContext.detached()
    host = start_host("[models.bench]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in MODEL.items()))
    gradio = GradioEcho.start()
    rows = {}
    try:
        with Client(host.address) as shm_client, Client(host.address, shm=False) as frames_client:
            shm_client.load("bench")
            shm_client.health()
            for name, shape in PAYLOADS.items():
                if payloads is not None and name not in payloads:
                    continue
                audio = _audio(shape) if shape != "result" else None
                big = audio is not None and audio.shape[1] >= 10**6
                n = max(3, reps // 10) if big else reps
                if shape is None or shape == "result":
                    params = {"duration_s": 0.001 if shape is None else RESULT_SECONDS, "seed": 1}
                    req = GenerateRequest("x", params)
                    calls = {way: (lambda c=c: c.generate("bench", "x", params=params))
                             for way, c in (("shm", shm_client), ("frames", frames_client))}
                else:
                    req = GenerateRequest(None, {"seed": 1}, audio, 44100)
                    calls = {way: (lambda c=c: c.generate("bench", audio=audio, sample_rate=44100, params={"seed": 1}))
                             for way, c in (("shm", shm_client), ("frames", frames_client))}
                local = time_calls(lambda: backend.generate(req, ctx), n)
                out = np.ascontiguousarray(backend.generate(req, ctx).audio)
                times = {way: time_calls(call, n) for way, call in calls.items()}
                faults = {way: _faults_per_call(call, max(3, n // 2), host.proc.pid) for way, call in calls.items()}
                sent = 0 if audio is None else audio.nbytes
                floor = _raw_floor(audio if audio is not None else (out if shape == "result" else None), n)
                floor_2proc = _raw_floor_processes(audio if audio is not None else (out if shape == "result" else None), n)
                one_way = _one_way(out.nbytes, n) if shape == "result" else None
                copy = _memcpy(max(sent, out.nbytes), n) if max(sent, out.nbytes) else None
                via_gradio = gradio.call(audio, n) if gradio and shape != "result" else None
                in_p50 = pct_ms(local, 0.5)
                rows[name] = {
                    "bytes_in": sent, "bytes_out": int(out.nbytes), "reps": n,
                    "in_process_p50_ms": in_p50, "in_process_p99_ms": pct_ms(local, 0.99),
                    "shm_p50_ms": pct_ms(times["shm"], 0.5), "shm_p99_ms": pct_ms(times["shm"], 0.99),
                    "frames_p50_ms": pct_ms(times["frames"], 0.5), "frames_p99_ms": pct_ms(times["frames"], 0.99),
                    "shm_overhead_p50_ms": pct_ms(times["shm"], 0.5) - in_p50,
                    "frames_overhead_p50_ms": pct_ms(times["frames"], 0.5) - in_p50,
                    "raw_zmq_p50_ms": pct_ms(floor, 0.5), "raw_zmq_p99_ms": pct_ms(floor, 0.99),
                    "raw_zmq_2proc_p50_ms": pct_ms(floor_2proc, 0.5), "raw_zmq_2proc_p99_ms": pct_ms(floor_2proc, 0.99),
                    "raw_zmq_one_way_p50_ms": pct_ms(one_way, 0.5) if one_way else None,
                    "memcpy_p50_ms": pct_ms(copy, 0.5) if copy else None,
                    "gradio_p50_ms": pct_ms(via_gradio, 0.5) if via_gradio else None,
                    "gradio_p99_ms": pct_ms(via_gradio, 0.99) if via_gradio else None,
                    "shm_faults_client": faults["shm"][0], "shm_faults_host": faults["shm"][1],
                    "frames_faults_client": faults["frames"][0], "frames_faults_host": faults["frames"][1],
                }
                del out
        tiny = GenerateRequest("x", {"duration_s": 0.001, "seed": 1})
        small = _small_call(host.address, host.proc.pid, lambda: backend.generate(tiny, ctx), max(reps, 20) * 4)
    finally:
        host.stop()
        if gradio:
            gradio.stop()
    skipped = None if gradio else f"Gradio reference skipped: {GRADIO_PYTHON} has no gradio (./setup.sh --test installs it)"
    return {"machine": machine.describe(), "model": MODEL, "payloads": rows, "small_call": small, "gradio_skipped": skipped}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--payloads", default=",".join(PAYLOADS), help=f"some of {','.join(PAYLOADS)}")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    payloads = [p for p in args.payloads.split(",") if p]
    if not payloads or not set(payloads) <= set(PAYLOADS):
        parser.error(f"--payloads: choose from {', '.join(PAYLOADS)}")
    report = run(args.reps, payloads)
    print(machine.line())
    print(f"{'payload':<16} {'MB in/out':>10} {'in-proc':>8} {'shm p50':>8} {'frames':>8} {'raw zmq':>8} {'raw 2p':>7} {'memcpy':>7} "
          f"{'gradio':>8} {'ovh shm':>8} {'ovh frm':>8} {'frm/shm':>7} {'grd/shm':>7} {'faults shm c/h':>15} {'frames c/h':>12}  (ms)")
    for name, r in report["payloads"].items():
        def f(v: float | None, w: int) -> str:
            return f"{v:>{w}.2f}" if v is not None else f"{'-':>{w}}"
        ratio = r["frames_overhead_p50_ms"] / r["shm_overhead_p50_ms"] if r["shm_overhead_p50_ms"] > 0 else None
        vs_gradio = r["gradio_p50_ms"] / r["shm_p50_ms"] if r["gradio_p50_ms"] else None
        mb = f"{r['bytes_in'] / 1e6:.2f}/{r['bytes_out'] / 1e6:.2f}"
        print(f"{name:<16} {mb:>10} {r['in_process_p50_ms']:>8.2f} {r['shm_p50_ms']:>8.2f} {r['frames_p50_ms']:>8.2f} "
              f"{r['raw_zmq_p50_ms']:>8.2f} {r['raw_zmq_2proc_p50_ms']:>7.2f} {f(r['memcpy_p50_ms'], 7)} {f(r['gradio_p50_ms'], 8)} "
              f"{r['shm_overhead_p50_ms']:>8.2f} {r['frames_overhead_p50_ms']:>8.2f} {f(ratio, 7)} {f(vs_gradio, 7)} "
              f"{r['shm_faults_client']:>7.0f}/{r['shm_faults_host']:<7.0f} {r['frames_faults_client']:>5.0f}/{r['frames_faults_host']:<6.0f}")
        if r["raw_zmq_one_way_p50_ms"] is not None:
            print(f"{'':<16} raw pyzmq one way of the result's bytes: {r['raw_zmq_one_way_p50_ms']:.2f} ms; "
                  f"shm overhead / one way = {r['shm_overhead_p50_ms'] / r['raw_zmq_one_way_p50_ms']:.2f}")
    s = report["small_call"]
    print(f"small call (medians of {s['rounds']} interleaved rounds of {s['reps_per_round']}): in-process {s['in_process_p50_ms']:.3f} ms, "
          f"raw round trip {s['raw_zmq_p50_ms']:.3f} ms (one process) / {s['raw_zmq_2proc_p50_ms']:.3f} ms (two processes)")
    for way, label in (("direct", "on the caller's thread"), ("io_thread", "through the I/O thread")):
        print(f"  {label:<24} p50 {s[f'{way}_p50_ms']:.3f} ms, overhead {s[f'{way}_overhead_p50_ms']:.3f} ms = "
              f"{s[f'{way}_overhead_vs_raw']:.1f}x / {s[f'{way}_overhead_vs_raw_2proc']:.1f}x the raw round trip, "
              f"host CPU {s['host_cpu_us_per_call'][way]} us per call")
    if report["gradio_skipped"]:
        print(report["gradio_skipped"])
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
