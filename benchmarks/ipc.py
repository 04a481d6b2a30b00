"""The cost of the IPC path by payload size: through the host vs a direct in-process call to the same
backend, next to two references measured in the same run: the raw pyzmq floor (the same bytes
echoed over the same transport, no serialization) and a Gradio HTTP API call through gradio_client
carrying the same audio as a 16-bit WAV file (what a WebUI process would otherwise use to reach
another; benchmarks/gradio_echo.py, run in .venv-py310 where Gradio is installed).

Payloads are float32 audio sent as input and returned as output (an audio-to-audio call, like an
RVC conversion): empty (a call with no audio), 1 s of 16 kHz mono, 30 s and 5 min of 44.1 kHz stereo.
The model is a minimal synth (width 8), so the figures are dominated by moving the audio.
Usage: python -m benchmarks.ipc [--reps N] [--json OUT]
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from benchmarks import machine
from benchmarks.timing import pct_ms, time_calls

MODEL = {"backend": "synth", "width": 8, "depth": 1, "hop": 4096, "channels": 2}
PAYLOADS = {"empty": None, "1s_16k_mono": (1, 16000), "30s_44k_stereo": (2, 30 * 44100), "5min_44k_stereo": (2, 300 * 44100)}


def _audio(shape: tuple[int, int] | None) -> np.ndarray | None:
    return None if shape is None else np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)


def _raw_floor(audio: np.ndarray | None, reps: int) -> list[int]:
    """DEALER -> ROUTER -> DEALER over ipc://, the array's bytes each way as one frame, no encoding."""
    payload = b"" if audio is None else memoryview(audio).cast("B")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = zmq.Context()
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        router.bind(f"ipc://{tmp}/s")
        dealer.connect(f"ipc://{tmp}/s")

        def echo() -> None:
            dealer.send_multipart([b"h", payload], copy=False)
            peer, head, body = router.recv_multipart(copy=False)
            router.send_multipart([peer, head, body], copy=False)
            dealer.recv_multipart(copy=False)

        try:
            return time_calls(echo, reps)
        finally:
            router.close(0)
            dealer.close(0)
            ctx.term()


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
        proc = subprocess.Popen([str(GRADIO_PYTHON), script, "serve", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return cls(proc, port)
            time.sleep(0.3)
        proc.kill()
        return None

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


def run(reps: int) -> dict:
    from modelhost.client import Client
    from modelhost.host.backends import GenerateRequest, RunContext, create_backend
    from modelhost.host.config import ModelSpec
    from modelhost.host.launch import start_host

    backend = create_backend(ModelSpec("bench", "synth", options={k: v for k, v in MODEL.items() if k != "backend"}))
    backend.load("cpu")
    ctx = RunContext.detached()
    host = start_host("[models.bench]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in MODEL.items()))
    gradio = GradioEcho.start()
    rows = {}
    try:
        with Client(host.address) as c:
            c.load("bench")
            for name, shape in PAYLOADS.items():
                audio = _audio(shape)
                n = reps if shape is None or shape[1] < 10**6 else max(3, reps // 10)
                if audio is None:
                    params = {"duration_s": 0.001, "seed": 1}
                    local = time_calls(lambda: backend.generate(GenerateRequest("x", params), ctx), n)
                    remote = time_calls(lambda: c.generate("bench", "x", params=params), n)
                else:
                    req = GenerateRequest(None, {"seed": 1}, audio, 44100)
                    local = time_calls(lambda: backend.generate(req, ctx), n)
                    remote = time_calls(lambda: c.generate("bench", audio=audio, sample_rate=44100, params={"seed": 1}), n)
                floor = _raw_floor(audio, n)
                via_gradio = gradio.call(audio, n) if gradio else None
                rows[name] = {
                    "gradio_p50_ms": pct_ms(via_gradio, 0.5) if via_gradio else None,
                    "gradio_p99_ms": pct_ms(via_gradio, 0.99) if via_gradio else None,
                    "bytes_each_way": 0 if audio is None else audio.nbytes, "reps": n,
                    "in_process_p50_ms": pct_ms(local, 0.5), "in_process_p99_ms": pct_ms(local, 0.99),
                    "host_p50_ms": pct_ms(remote, 0.5), "host_p99_ms": pct_ms(remote, 0.99),
                    "raw_zmq_p50_ms": pct_ms(floor, 0.5), "raw_zmq_p99_ms": pct_ms(floor, 0.99),
                    "host_overhead_p50_ms": pct_ms(remote, 0.5) - pct_ms(local, 0.5),
                }
    finally:
        host.stop()
        if gradio:
            gradio.stop()
    skipped = None if gradio else f"Gradio reference skipped: {GRADIO_PYTHON} has no gradio (./setup.sh --test installs it)"
    return {"machine": machine.describe(), "model": MODEL, "payloads": rows, "gradio_skipped": skipped}


def main(argv: list[str] | None = None) -> dict:
    args = machine.parse_args(__doc__, argv, default_reps=50)
    report = run(args.reps)
    print(machine.line())
    print(f"{'payload':<16} {'MB each way':>11} {'in-proc p50':>11} {'host p50':>9} {'p99':>8} {'overhead':>9} "
          f"{'raw zmq p50':>11} {'gradio p50':>10} {'p99':>8}  (ms)")
    for name, r in report["payloads"].items():
        g50 = f"{r['gradio_p50_ms']:>10.2f} {r['gradio_p99_ms']:>8.2f}" if r["gradio_p50_ms"] is not None else f"{'-':>10} {'-':>8}"
        print(f"{name:<16} {r['bytes_each_way'] / 1e6:>11.2f} {r['in_process_p50_ms']:>11.2f} {r['host_p50_ms']:>9.2f} "
              f"{r['host_p99_ms']:>8.2f} {r['host_overhead_p50_ms']:>9.2f} {r['raw_zmq_p50_ms']:>11.2f} {g50}")
    if report["gradio_skipped"]:
        print(report["gradio_skipped"])
    return machine.finish(report, args.json)


if __name__ == "__main__":
    main()
